"""Every Hugging Face call whose spelling changed across the supported versions, in one place.

The rest of circuitlab goes through these functions, so that the next rename upstream is a
change to this file alone. What they cover:

- **The KV cache.** transformers 5.24 renamed the forward keyword ``past_key_values`` to
  ``cache`` (the old name is deprecated until 5.40) and returns the cache as ``output.cache``.
  TransformerLens 4.3's bridge still reads ``past_key_values`` in the attention it
  reimplements, so under the new name it silently ignored the cache and cached decoding
  produced wrong tokens. Here circuitlab builds the cache itself (the model extends it in
  place), passes it under the keyword the installed model takes, hands it on to the bridge's
  attention under the name the bridge reads, and checks that every cached forward extended it.
- **Cropping a cache.** ``crop(n)`` kept the first ``n`` tokens before 5.24 and refuses a
  positive ``n`` since; a negative ``n`` removes that many tokens in both.
- **Partial unembedding** (``logits_to_keep``), taken by most but not all models.
- **A LoRA adapter's state dict.** Older peft releases (0.18) list a tensor once under every
  name its module is reachable by, and the bridge makes each reachable under several aliases.
- **Skipping random initialisation** (``no_init_weights``) when building a model whose weights
  are all loaded afterwards.
- **Weights spread over devices** (``device_map``, `from_pretrained_placed`): accelerate
  places the modules; a map it cannot apply is one clear error.
- **Plain greedy generation** (``plain_greedy_ids``): ``generate`` merges the model's own
  generation config (sampling settings, several EOS ids) into the call differently across
  releases; an explicit greedy config with one EOS id gives the same decoding in all of them.

Example:
    >>> cache = new_kv_cache(model.hf_model)
    >>> logits = model.bridge(ids, **kv_cache_forward_kwargs(model.hf_model, cache))
    >>> kv_cache_length(cache) == ids.shape[1]
    True
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from transformers import DynamicCache
from transformers.initialization import no_init_weights

from circuitlab.errors import IncompatibleVersionError, InputError
from circuitlab.versions import installed_versions

__all__ = [
    "accepts_logits_to_keep",
    "adapt_bridge_to_cache_keyword",
    "bridge_has_hooks",
    "check_kv_cache_extended",
    "crop_kv_cache",
    "from_pretrained_placed",
    "kv_cache_forward_kwargs",
    "kv_cache_in",
    "kv_cache_keyword",
    "kv_cache_length",
    "new_kv_cache",
    "no_init_weights",
    "peft_adapter_state_dict",
    "plain_greedy_ids",
    "probe_kv_cache",
    "repeat_kv_cache",
]

_CACHE_KEYWORDS = ("cache", "past_key_values")
"""The KV-cache keyword of a model's forward: the new name (transformers >= 5.24) first."""

_BRIDGE_CACHE_KEYWORD = "past_key_values"
"""The keyword TransformerLens 4.3's reimplemented attention reads the cache from."""

_VERSIONED_PACKAGES = ("transformers", "transformer-lens", "torch", "peft")


def _versions_text() -> str:
    versions = installed_versions(_VERSIONED_PACKAGES)
    return ", ".join(f"{name} {version}" for name, version in versions.items())


@functools.cache
def _forward_parameters(model_class: type) -> frozenset[str]:
    return frozenset(inspect.signature(model_class.forward).parameters)


def kv_cache_keyword(hf_model: Any) -> str:
    """The keyword of ``hf_model.forward`` for a KV cache: ``cache`` or ``past_key_values``.

    Args:
        hf_model: the Hugging Face model (the one the bridge wraps).

    Raises:
        IncompatibleVersionError: the forward takes neither (a transformers release that
            renamed it again); the message names the installed versions.
    """
    parameters = _forward_parameters(type(hf_model))
    for keyword in _CACHE_KEYWORDS:
        if keyword in parameters:
            return keyword
    raise IncompatibleVersionError(
        f"{type(hf_model).__name__}.forward takes no KV cache under any name circuitlab knows "
        f"({', '.join(_CACHE_KEYWORDS)}); installed: {_versions_text()}. Install a transformers "
        f"release inside circuitlab's supported range (see docs/installation.md)."
    )


def accepts_logits_to_keep(hf_model: Any) -> bool:
    """Whether ``hf_model.forward`` can unembed chosen positions only (``logits_to_keep``).

    Args:
        hf_model: the Hugging Face model (the one the bridge wraps).
    """
    return "logits_to_keep" in _forward_parameters(type(hf_model))


def new_kv_cache(hf_model: Any) -> Any:
    """An empty KV cache for ``hf_model`` (sliding-window layers get sliding-window slots).

    Args:
        hf_model: the Hugging Face model (the one the bridge wraps).
    """
    return DynamicCache(config=hf_model.config)


def kv_cache_length(cache: Any) -> int:
    """Tokens the cache holds (for a sliding-window layer, every token seen, not just kept).

    Args:
        cache: a KV cache (from `new_kv_cache`).
    """
    return int(cache.get_seq_length())


def crop_kv_cache(cache: Any, length: int) -> bool:
    """Cut the cache back to its first ``length`` tokens, in place.

    Args:
        cache: a KV cache (from `new_kv_cache`).
        length: the number of leading tokens to keep.

    Returns:
        False when this cache cannot be cropped there (a sliding-window layer that has already
        dropped tokens before ``length``); the caller then recomputes the prefix.
    """
    surplus = kv_cache_length(cache) - length
    if surplus < 0:
        return False
    try:
        # A negative argument removes that many tokens in every supported release; a positive
        # one meant "keep this many" before transformers 5.24 and is refused since.
        cache.crop(-surplus)
    except (AttributeError, NotImplementedError, ValueError, RuntimeError):
        return False
    return kv_cache_length(cache) == length


def repeat_kv_cache(cache: Any, times: int) -> None:
    """Repeat every row of the cache ``times`` times, in place (batch of one -> ``times``).

    Args:
        cache: a KV cache (from `new_kv_cache`).
        times: how many copies of each row to make.
    """
    cache.batch_repeat_interleave(times)


def kv_cache_in(kwargs: dict[str, Any]) -> Any:
    """The KV cache among a forward call's keyword arguments, under either name (else None).

    Args:
        kwargs: the keyword arguments of a forward call.
    """
    for keyword in _CACHE_KEYWORDS:
        if kwargs.get(keyword) is not None:
            return kwargs[keyword]
    return None


def kv_cache_forward_kwargs(hf_model: Any, cache: Any) -> dict[str, Any]:
    """Keyword arguments that make a forward pass through the bridge read and extend ``cache``.

    Args:
        hf_model: the Hugging Face model (the one the bridge wraps).
        cache: the KV cache to read and extend (from `new_kv_cache`).
    """
    return {kv_cache_keyword(hf_model): cache, "use_cache": True}


def _hand_cache_to_bridge(module: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    """Forward pre-hook: give the bridge's attention the cache under the name it reads."""
    if kwargs.get(_BRIDGE_CACHE_KEYWORD) is None and kwargs.get("cache") is not None:
        return args, {**kwargs, _BRIDGE_CACHE_KEYWORD: kwargs["cache"]}
    return None


def adapt_bridge_to_cache_keyword(bridge: Any, hf_model: Any) -> int:
    """Let the bridge's attention read a cache that the model hands its layers as ``cache``.

    Called once when a bridge is booted. Does nothing where the model still uses the bridge's
    own keyword. The pre-hooks belong to the bridge for its lifetime, like the bridge itself.

    Args:
        bridge: the TransformerLens bridge booted on ``hf_model``.
        hf_model: the Hugging Face model (the one the bridge wraps).

    Returns:
        The number of attention modules adapted (0 when none needed it).
    """
    if kv_cache_keyword(hf_model) == _BRIDGE_CACHE_KEYWORD:
        return 0
    from transformer_lens.model_bridge.generalized_components.attention import AttentionBridge

    adapted = 0
    for module in bridge.modules():
        if isinstance(module, AttentionBridge):
            module.register_forward_pre_hook(_hand_cache_to_bridge, with_kwargs=True)
            adapted += 1
    return adapted


def check_kv_cache_extended(cache: Any, before: int, added: int) -> None:
    """Raise unless a forward pass over ``added`` new tokens grew the cache from ``before`` by that.

    A cache the model silently ignored stays as it was; continuing would compute every later
    token without its context.

    Args:
        cache: the KV cache after the forward pass.
        before: tokens it held before the pass.
        added: new tokens the pass ran.

    Raises:
        IncompatibleVersionError: naming the installed versions and the fix.
    """
    after = kv_cache_length(cache)
    if after != before + added:
        raise IncompatibleVersionError(
            f"The KV cache was not used: it held {before} tokens before a forward pass over "
            f"{added} new tokens and {after} after it (expected {before + added}). The "
            f"installed libraries pass the cache in a way circuitlab does not handle "
            f"({_versions_text()}). Install versions inside circuitlab's supported range "
            f"(docs/installation.md lists them and a constraints file that reproduces them)."
        )


def bridge_has_hooks(bridge: Any) -> bool:
    """Whether any hook point of the bridge has a forward hook attached right now.

    Args:
        bridge: the TransformerLens bridge.
    """
    return any(point._forward_hooks for point in bridge.hook_dict.values())


@torch.no_grad()
def probe_kv_cache(bridge: Any, hf_model: Any, *, n_tokens: int = 6) -> str | None:
    """Check on a few tokens that a cached continuation equals the uncached forward pass.

    Runs ``n_tokens`` tokens in one pass, then the same tokens as a prefix plus one cached step,
    and compares the last position's logits. Run it while no hooks are attached
    (`bridge_has_hooks`): a hook that is not position-aware would tell the two apart.

    Args:
        bridge: the TransformerLens bridge booted on ``hf_model``.
        hf_model: the Hugging Face model (the one the bridge wraps).
        n_tokens: length of the probe sequence (at least 2).

    Returns:
        None when they agree, otherwise a description of the problem naming the versions.
    """
    vocab = int(hf_model.config.get_text_config().vocab_size)
    device = next(hf_model.parameters()).device
    ids = (torch.arange(n_tokens, device=device) * 7 + 3)[None] % vocab
    full = bridge(ids, return_type="logits")[0, -1].float()
    cache = new_kv_cache(hf_model)
    kwargs = kv_cache_forward_kwargs(hf_model, cache)
    bridge(ids[:, :-1], return_type="logits", **kwargs)
    try:
        check_kv_cache_extended(cache, 0, n_tokens - 1)
        step = bridge(ids[:, -1:], return_type="logits", **kwargs)[0, -1].float()
        check_kv_cache_extended(cache, 0, n_tokens)
    except IncompatibleVersionError as error:
        return str(error)
    exact = hf_model.dtype == torch.float32
    tolerance = (1e-3 if exact else 5e-2) * max(1.0, float(full.abs().max()))
    difference = float((step - full).abs().max())
    if difference > tolerance:
        return (
            f"A cached continuation differs from the uncached forward pass on the same tokens "
            f"by {difference:.3g} logits (tolerance {tolerance:.3g}): the installed libraries "
            f"({_versions_text()}) compute KV-cached passes differently from what circuitlab "
            f"expects. Install versions inside circuitlab's supported range "
            f"(docs/installation.md)."
        )
    return None


def peft_adapter_state_dict(hf_model: Any, adapter_name: str = "default") -> dict[str, Any]:
    """The adapter's tensors under peft's names, each tensor once (under its module's own path).

    The bridge makes every wrapped module reachable under aliases (``attn.q`` beside
    ``self_attn.q_proj``); peft 0.18 lists a tensor under each of them. Only the path
    ``named_parameters`` reports (one per tensor) is kept.

    Args:
        hf_model: the peft-wrapped Hugging Face model.
        adapter_name: the LoRA adapter's name.
    """
    canonical = {
        name.replace(f".{adapter_name}.", ".")
        for name, _ in hf_model.named_parameters()
        if "lora_" in name
    }
    from peft import get_peft_model_state_dict  # imported late: only LoRA work needs peft

    raw = get_peft_model_state_dict(hf_model, adapter_name=adapter_name)
    return {key: value for key, value in raw.items() if key in canonical}


@torch.no_grad()
def plain_greedy_ids(
    hf_model: Any,
    input_ids: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_token_id: int | None,
    pad_token_id: int | None,
) -> list[list[int]]:
    """Greedy continuation ids of each row of ``input_ids`` [batch, pos] (unpadded rows of one
    length) by plain ``generate``, each cut after ``eos_token_id`` (the EOS id kept).

    Args:
        hf_model: the Hugging Face model (no hooks, no interventions).
        input_ids: prompt token ids [batch, pos], every row of the same length (no padding).
        max_new_tokens: the most tokens generated per row.
        eos_token_id: the id that ends a row (``None``: rows run to ``max_new_tokens``).
        pad_token_id: the id ``generate`` pads finished rows with (default: ``eos_token_id``).
    """
    from transformers import GenerationConfig

    config = GenerationConfig(
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id if pad_token_id is not None else eos_token_id,
    )
    output = hf_model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        generation_config=config,
    )
    rows = []
    for row in output[:, input_ids.shape[1] :].tolist():
        if eos_token_id is not None and eos_token_id in row:
            row = row[: row.index(eos_token_id) + 1]
        rows.append(row)
    return rows


def chat_prompt(tokenizer: Any, instruction: str) -> str | None:
    """The tokenizer's chat template applied to one user turn, ending where the assistant's
    reply starts (``add_generation_prompt``), as text; ``None`` for a tokenizer without one."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
    )
    return str(text)


def from_pretrained_placed(model_class: Any, source: str, device_map: Any, **kwargs: Any) -> Any:
    """``model_class.from_pretrained(source, **kwargs)`` with its weights placed by
    ``device_map`` (a strategy such as ``"auto"``, one device, or module name → device);
    ``None`` loads on the CPU as usual.

    Args:
        model_class: a transformers model class (e.g. ``AutoModelForCausalLM``).
        source: a Hub id or local folder.
        device_map: ``None``, a strategy such as ``"auto"``, one device, or a dict of module name →
            device.
        **kwargs: passed on to ``from_pretrained`` (``torch_dtype``, ``revision``, ...).

    Raises:
        InputError: accelerate is missing, or the map cannot be applied (a module name the
            model lacks, a device too small, ...).
    """
    if device_map is None:
        return model_class.from_pretrained(source, **kwargs)
    try:
        import accelerate  # noqa: F401  (transformers dispatches through it)
    except ImportError:
        raise InputError(
            "device_map needs the accelerate package: pip install accelerate (or load on one "
            "device with device=...)."
        ) from None
    try:
        loaded = model_class.from_pretrained(source, device_map=device_map, **kwargs)
    except (ValueError, KeyError, RuntimeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(
            f"device_map={device_map!r} cannot place the weights of {source} ({first}). Use "
            f"'auto', or a dict that gives every module a device, e.g. {{'': 'cpu'}}."
        ) from error
    model = loaded[0] if isinstance(loaded, tuple) else loaded
    if isinstance(device_map, dict):  # transformers quietly ignores names it does not know
        unknown = [name for name in device_map if not _has_submodule(model, name)]
        if unknown:
            raise InputError(
                f"device_map names no module {unknown[0]!r} of {source}; use module names "
                f"such as 'model.embed_tokens', 'model.layers.0', 'lm_head' ('' for the whole "
                f"model)."
            )
    return loaded


def _has_submodule(model: Any, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True
