"""Tiny random-init models for fast tests: no download, built in milliseconds.

Every builder returns a Hugging Face model in eval mode with eager attention and
non-trivial norm weights (random, not all ones), plus a word-level tokenizer built in memory.

Example:
    >>> from circuitlab.testing import tiny_model
    >>> model = tiny_model("gemma3")
    >>> model.n_layers, model.n_heads, model.n_kv_heads
    (2, 4, 1)
"""

from __future__ import annotations

from typing import Any

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from circuitlab.errors import InputError
from circuitlab.model import ModelHandle

__all__ = ["TINY_ARCHITECTURES", "TINY_VOCABULARY", "tiny_hf_model", "tiny_model", "tiny_tokenizer"]

_SPECIAL = ["<unk>", "<pad>", "<bos>", "<eos>"]
TINY_VOCABULARY: tuple[str, ...] = (
    *_SPECIAL,
    *(
        "the a an of is was and or to in on it this that capital city france paris london "
        "berlin rome good bad great terrible movie film review positive negative yes no "
        "question answer sky blue green red cat dog sat mat very not really , . ? !"
    ).split(),
)
"""Words the tiny tokenizer knows; anything else becomes ``<unk>``."""

_UNK, _PAD, _BOS, _EOS = range(4)


def tiny_tokenizer(*, add_bos: bool = False) -> PreTrainedTokenizerFast:
    """A whitespace word-level tokenizer over `TINY_VOCABULARY`.

    Words are separated by spaces and decoded with spaces between them.
    ``add_bos=True`` makes it prepend ``<bos>`` like Gemma's tokenizer.

    Args:
        add_bos: prepend ``<bos>`` to every encoded text.
    """
    vocab = {word: index for index, word in enumerate(TINY_VOCABULARY)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    if add_bos:
        from tokenizers.processors import TemplateProcessing

        backend.post_processor = TemplateProcessing(
            single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", _BOS)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<eos>",
        name_or_path="circuitlab-tiny",
    )


_COMMON: dict[str, Any] = {
    "vocab_size": len(TINY_VOCABULARY),
    "pad_token_id": _PAD,
    "bos_token_id": _BOS,
    "eos_token_id": _EOS,
    "initializer_range": 0.15,
}
_DECODER: dict[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
}

# architecture -> (config class, model class, config keywords), all in ``transformers``.
_RECIPES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", _DECODER),
    "gemma3": (
        "Gemma3TextConfig",
        "Gemma3ForCausalLM",
        {
            **_DECODER,
            "num_key_value_heads": 1,
            "head_dim": 16,
            "sliding_window": 4,
            "layer_types": ["sliding_attention", "full_attention"],
            "query_pre_attn_scalar": 16,
        },
    ),
    "gpt2": (
        "GPT2Config",
        "GPT2LMHeadModel",
        {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128, "n_inner": 128},
    ),
    "mistral": ("MistralConfig", "MistralForCausalLM", _DECODER),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", _DECODER),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {**_DECODER, "head_dim": 16}),
}

TINY_ARCHITECTURES: tuple[str, ...] = tuple(_RECIPES)
"""Families `tiny_hf_model` can build: Llama-style (RMSNorm, GQA, no biases), Gemma-3-style
(sandwich and q/k norms, GQA), GPT-2-style (LayerNorm, biases), Mistral, Qwen2 (q/k/v biases)
and Qwen3 (q/k norms)."""


def tiny_hf_model(
    architecture: str = "llama", *, seed: int = 0
) -> tuple[Any, PreTrainedTokenizerFast]:
    """A tiny random Hugging Face model (eval mode, eager attention) and its tokenizer.

    Norm weights and biases are randomised too, so tests that forget a norm weight or a bias
    fail. Same ``seed``, same weights.

    Args:
        architecture: one of `TINY_ARCHITECTURES` (``"llama"``, ...).
        seed: the random seed of the weights.
    """
    if architecture not in _RECIPES:
        raise InputError(
            f"Unknown tiny architecture {architecture!r}. "
            f"Choose one of {', '.join(TINY_ARCHITECTURES)}."
        )
    torch.manual_seed(seed)
    config_class, model_class, keywords = _RECIPES[architecture]
    config = getattr(transformers, config_class)(**keywords, **_COMMON)
    model = getattr(transformers, model_class)(config)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim == 1:  # norm weights and biases
                noise = torch.randn(parameter.shape, generator=generator) * 0.2
                parameter.add_(noise.to(parameter.dtype))
    model.config._attn_implementation = "eager"
    model.config.architectures = [type(model).__name__]
    model.eval()
    return model, tiny_tokenizer(add_bos=architecture == "gemma3")


def tiny_model(architecture: str = "llama", *, seed: int = 0, **kwargs: Any) -> ModelHandle:
    """A `ModelHandle` over `tiny_hf_model` (boots in ~0.1 s).

    Args:
        architecture: one of `TINY_ARCHITECTURES` (``"llama"``, ...).
        seed: the random seed of the weights.
        **kwargs: passed on to `ModelHandle` (e.g. ``prepend_bos``).
    """
    model, tokenizer = tiny_hf_model(architecture, seed=seed)
    return ModelHandle(
        model, tokenizer, name=f"tiny-{architecture}", source="circuitlab.testing", **kwargs
    )
