"""The model handle: one freshly loaded Hugging Face model and exactly one bridge on it."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import ActivationCache
from transformer_lens.model_bridge import TransformerBridge

from circuitlab import hf_compat
from circuitlab.architecture import ArchitectureInfo, check_supported
from circuitlab.checks import check_integer, check_prompts, checked_arguments
from circuitlab.collector import EVERY_TOKEN, collect, plan_batches
from circuitlab.decoding import greedy_decode
from circuitlab.errors import (
    CircuitlabError,
    IncompatibleVersionError,
    InputError,
    NumericalError,
)
from circuitlab.progress import progress_bar
from circuitlab.readers import Keep, Logits, Reader
from circuitlab.sites import Site, hook_name_of
from circuitlab.tokenization import TokenBatch, encode_prompts, single_token_id

if TYPE_CHECKING:
    from circuitlab.interventions.edits import ResolvedInterventions

__all__ = ["ModelHandle", "Prompts", "TokenPrediction"]

Prompts = str | Sequence[str] | TokenBatch
"""One prompt, several prompts, or an already tokenized batch."""

HookFn = Callable[..., Any]
HookSite = Site | str | Callable[[str], bool]
"""Where a hook attaches: a `circuitlab.sites.Site`, a hook name, or a filter on names."""
_BOOTED_FLAG = "_circuitlab_bridge_booted"
_LOGITS = "\0logits"  # the reader key of run_with_cache's logits (no hook is named so)


def _bridge_tokenizer(tokenizer: Any) -> Any:
    """A private copy of the tokenizer for the bridge.

    The bridge reloads a tokenizer from ``name_or_path`` unless it already adds BOS; giving it
    a copy marked that way keeps it offline and leaves circuitlab's tokenizer untouched.
    circuitlab itself never lets the bridge tokenize. The bridge registers missing pad/eos/bos
    tokens in the shared backend, so a tokenizer lacking one gets a deep copy (slower for
    large vocabularies); otherwise a shallow copy suffices.
    """
    complete = all(
        token_id is not None
        for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id)
    )
    if complete:
        bridge_copy = tokenizer.__class__.__new__(tokenizer.__class__)
        bridge_copy.__dict__.update(tokenizer.__dict__)
    else:
        bridge_copy = copy.deepcopy(tokenizer)
    bridge_copy.init_kwargs = {**tokenizer.init_kwargs, "add_bos_token": True}
    bridge_copy.init_kwargs.setdefault("name_or_path", getattr(tokenizer, "name_or_path", ""))
    return bridge_copy


class ModelHandle:
    """A Hugging Face causal LM, its tokenizer, and the TransformerLens bridge booted on it.

    Build one with `circuitlab.load` (or `from_hf` for a model already in memory).
    The handle owns its HF model: it boots exactly one ``TransformerBridge`` on it and refuses
    to boot a second one on the same object.

    Args:
        hf_model: a Hugging Face causal LM of a supported architecture, with no bridge booted on it
            yet (put in eval mode).
        tokenizer: its tokenizer.
        name: the model's name in reprs, model cards and result headers.
        source: where the model came from, in words (``"hub"``, a folder, ``"memory"``).
        prepend_bos: BOS policy: ``None`` keeps the tokenizer's own special tokens (as plain
            ``transformers`` does), ``True`` always starts prompts with BOS, ``False`` never.

    Example:
        >>> model = circuitlab.load()                       # SmolLM2-135M-Instruct
        >>> model.top_next_tokens("The capital of France is", k=1)[0].token
        ' Paris'
    """

    def __init__(
        self,
        hf_model: Any,
        tokenizer: Any,
        *,
        name: str,
        source: str = "memory",
        prepend_bos: bool | None = None,
    ) -> None:
        if getattr(hf_model, _BOOTED_FLAG, False):
            raise CircuitlabError(
                "This Hugging Face model object already has a bridge booted on it; a second "
                "bridge silently breaks per-head hooks. Load a fresh copy (circuitlab.load or "
                "from_pretrained), or copy.deepcopy the model before its first ModelHandle."
            )
        class_name = type(hf_model).__name__
        check_supported(class_name, model_type=getattr(hf_model.config, "model_type", None))
        if not getattr(hf_model.config, "architectures", None):
            hf_model.config.architectures = [class_name]
        hf_model.eval()
        self.hf_model = hf_model
        self.tokenizer = tokenizer
        self.name = name
        self.source = source
        self.prepend_bos = prepend_bos
        self.bridge: TransformerBridge = TransformerBridge.boot_transformers(
            class_name,
            hf_model=hf_model,
            tokenizer=_bridge_tokenizer(tokenizer),
            device=hf_model.device,
            dtype=hf_model.dtype,
        )
        setattr(hf_model, _BOOTED_FLAG, True)
        self.bridge.eval()
        hf_compat.adapt_bridge_to_cache_keyword(self.bridge, hf_model)
        self._kv_cache_verdict: str | None = None  # "ok" or the problem, once probed
        self._interventions: list[ResolvedInterventions] = []  # in force, innermost last
        self.arch = ArchitectureInfo.from_bridge(self.bridge, hf_model)
        self.pad_token_id = self._pick_pad_id()

    @classmethod
    def from_hf(
        cls, hf_model: Any, tokenizer: Any, *, name: str | None = None, **kwargs: Any
    ) -> ModelHandle:
        """Wrap a Hugging Face model already in memory (it must not have a bridge yet).

        Args:
            hf_model: the Hugging Face causal LM (no bridge booted on it yet).
            tokenizer: its tokenizer.
            name: the model's name (default: the model's class name).
            **kwargs: passed on to `ModelHandle` (``source``, ``prepend_bos``).
        """
        return cls(hf_model, tokenizer, name=name or type(hf_model).__name__, **kwargs)

    # ----------------------------------------------------------------- facts
    @property
    def device(self) -> torch.device:
        """Device of the model's weights."""
        return self.hf_model.device

    @property
    def device_map(self) -> dict[str, Any] | None:
        """Where each module's weights are when loaded with a ``device_map`` (module name →
        device, as Hugging Face records it), else ``None`` (everything on `device`)."""
        placed = getattr(self.hf_model, "hf_device_map", None)
        return dict(placed) if placed else None

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the model's weights."""
        return self.hf_model.dtype

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return self.arch.n_layers

    @property
    def n_heads(self) -> int:
        """Query heads per attention layer."""
        return self.arch.n_heads

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads per layer (fewer than n_heads under GQA)."""
        return self.arch.n_kv_heads

    @property
    def d_model(self) -> int:
        """Width of the residual stream."""
        return self.arch.d_model

    @property
    def d_head(self) -> int:
        """Width of one attention head."""
        return self.arch.d_head

    @property
    def d_vocab(self) -> int:
        """Vocabulary size (rows of the unembedding)."""
        return self.arch.d_vocab

    @property
    def supports_logits_to_keep(self) -> bool:
        """Whether the HF forward can unembed chosen positions only (``logits_to_keep``)."""
        return hf_compat.accepts_logits_to_keep(self.hf_model)

    # ------------------------------------------------------------- KV cache
    def new_kv_cache(self) -> Any:
        """An empty key/value cache for `forward_with_kv_cache` (the model extends it in place).

        The first call with no hooks active checks on a few tokens that a cached continuation
        equals the uncached forward pass (`circuitlab.hf_compat.probe_kv_cache`, ~0.4 s on
        SmolLM2); until then every cached pass is still checked to extend its cache.

        Raises:
            IncompatibleVersionError: the installed libraries compute cached passes
                differently from full ones.
        """
        if self._kv_cache_verdict is None and not hf_compat.bridge_has_hooks(self.bridge):
            problem = hf_compat.probe_kv_cache(self.bridge, self.hf_model)
            self._kv_cache_verdict = "ok" if problem is None else problem
        if self._kv_cache_verdict not in (None, "ok"):
            raise IncompatibleVersionError(self._kv_cache_verdict)
        return hf_compat.new_kv_cache(self.hf_model)

    def kv_cache_kwargs(self, cache: Any) -> dict[str, Any]:
        """Forward keyword arguments that make a bridge forward pass read and extend ``cache``.

        Args:
            cache: a KV cache (from `new_kv_cache`).
        """
        return hf_compat.kv_cache_forward_kwargs(self.hf_model, cache)

    def forward_with_kv_cache(
        self, input_ids: Int[Tensor, "batch pos"], cache: Any, **kwargs: Any
    ) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits of ``input_ids`` continuing the tokens in ``cache``, which grows by them.

        Hooks and interventions active on the model apply. ``kwargs`` go to the bridge
        (``attention_mask`` covering cached plus new tokens, ``logits_to_keep``).

        Args:
            input_ids: the new tokens' ids [batch, pos] (on the model's device).
            cache: a KV cache (from `new_kv_cache`) holding the earlier tokens; extended in place.
            **kwargs: passed on to the bridge (``attention_mask``, ``logits_to_keep``).

        Raises:
            IncompatibleVersionError: the forward pass did not extend the cache (the installed
                transformers ignored it); continuing would lose the context.
        """
        before = hf_compat.kv_cache_length(cache)
        logits = self.bridge(input_ids, **self.kv_cache_kwargs(cache), **kwargs)
        hf_compat.check_kv_cache_extended(cache, before, input_ids.shape[1])
        return logits

    @property
    def bos_policy(self) -> str:
        """The BOS rule in words."""
        if self.prepend_bos is None:
            return "tokenizer default (as plain transformers)"
        return "always prepend BOS" if self.prepend_bos else "never a leading BOS"

    def _pick_pad_id(self) -> int:
        for candidate in (self.tokenizer.pad_token_id, self.tokenizer.eos_token_id, 0):
            if candidate is not None:
                return int(candidate)
        return 0

    # ---------------------------------------------------------- tokenization
    @checked_arguments
    def tokenize(self, prompts: Prompts) -> TokenBatch:
        """Tokenize prompts with the handle's BOS policy into a right-padded batch.

        Args:
            prompts: one prompt, a list of prompts, or a `TokenBatch` (used as it is).
        """
        if isinstance(prompts, TokenBatch):
            return prompts
        return encode_prompts(
            self.tokenizer,
            prompts,
            prepend_bos=self.prepend_bos,
            pad_id=self.pad_token_id,
            max_length=self.arch.n_ctx,
        )

    @checked_arguments
    def to_str_tokens(self, prompt: str) -> list[str]:
        """The prompt's tokens as strings, under the handle's BOS policy.

        Args:
            prompt: one prompt text.
        """
        return [self.tokenizer.decode([token]) for token in self.tokenize(prompt).row(0).tolist()]

    @checked_arguments
    def token_id(self, word: str, *, what: str = "Token") -> int:
        """Id of a word that must be a single token (``" Paris"``); clear error otherwise.

        ``what`` names the word in the error (``"Token"``, ``"Label word"``, ``"Target token"``).

        Args:
            word: the word, with its leading space where the text has one (``" Paris"``).
            what: what the word is, for the error message.
        """
        return single_token_id(self.tokenizer, word, what=what)

    @checked_arguments
    def token_ids(self, words: Sequence[str]) -> list[int]:
        """Ids of several single-token words (label words), in order.

        Args:
            words: the words (one string counts as a list of one).
        """
        if isinstance(words, str):
            words = [words]
        if len(words) == 0:
            raise InputError("No label words were given. Pass at least one word.")
        return [self.token_id(word, what="Label word") for word in words]

    @checked_arguments
    def batches(
        self, prompts: Sequence[str], batch_size: int = 8, *, progress: bool = False
    ) -> Iterator[TokenBatch]:
        """Tokenized batches of ``batch_size`` prompts, in order, with an optional progress bar.

        For your own loops; circuitlab's analyses stream through `circuitlab.collector.collect`.

        Args:
            prompts: the prompt texts.
            batch_size: prompts per batch.
            progress: show a progress bar.
        """
        plan = plan_batches(self, prompts, batch_size=batch_size, sort=False)
        for planned in progress_bar(plan, desc="batches", unit="batch", progress=progress):
            yield planned.tokens

    # -------------------------------------------------------------- forward
    def _inputs(self, prompts: Prompts) -> TokenBatch:
        return self.tokenize(prompts).to(self.device)

    @checked_arguments
    def logits(self, prompts: Prompts, *, grad: bool = False) -> Float[Tensor, "batch pos d_vocab"]:
        """Logits at every position (padding positions hold meaningless values).

        ``grad=True`` keeps the autograd graph, to train through the model (a LoRA adapter,
        say) with hooks and interventions in force.

        Args:
            prompts: one prompt, a list of prompts, or a `TokenBatch` (used as it is).
            grad: keep the autograd graph (default: no gradients).
        """
        batch = self._inputs(prompts)
        with torch.set_grad_enabled(grad):
            return self.check_finite(
                self.bridge(batch.input_ids, attention_mask=batch.attention_mask)
            )

    @torch.no_grad()
    @checked_arguments
    def next_token_logits(self, prompts: Prompts) -> Float[Tensor, "batch d_vocab"]:
        """Logits after each prompt's last real token.

        Only the last positions are unembedded (``logits_to_keep`` where the HF model takes
        it), so the [batch, pos, d_vocab] tensor of a full forward pass is never built.

        Args:
            prompts: one prompt, a list of prompts, or a `TokenBatch` (used as it is).
        """
        batch = self.tokenize(prompts)
        readers = {"logits": Logits()}
        return collect(self, batch, readers, batch_size=len(batch), sort=False, share_prefix=False)[
            "logits"
        ]

    @overload
    def top_next_tokens(self, prompt: str, k: int = 5) -> list[TokenPrediction]: ...

    @overload
    def top_next_tokens(self, prompt: Sequence[str], k: int = 5) -> list[list[TokenPrediction]]: ...

    @checked_arguments
    def top_next_tokens(
        self, prompt: str | Sequence[str], k: int = 5
    ) -> list[TokenPrediction] | list[list[TokenPrediction]]:
        """The ``k`` most likely next tokens after ``prompt``, with probabilities.

        One prompt gives one list of predictions; a list of prompts gives one list per prompt.

        Args:
            prompt: one prompt text or a list of them.
            k: how many tokens per prompt (at least 1).
        """
        k = check_integer("k", k, minimum=1)
        texts = check_prompts(prompt)
        all_logits = self.next_token_logits(texts).float()
        predictions = []
        for logits in all_logits:
            probs = logits.softmax(dim=-1)
            top = torch.topk(probs, k=min(k, probs.shape[-1]))
            predictions.append(
                [
                    TokenPrediction(
                        token=self.tokenizer.decode([int(token)]),
                        token_id=int(token),
                        probability=float(prob),
                        logit=float(logits[token]),
                    )
                    for prob, token in zip(top.values, top.indices, strict=True)
                ]
            )
        return predictions[0] if isinstance(prompt, str) else predictions

    @checked_arguments
    def run_with_hooks(
        self, prompts: Prompts, fwd_hooks: Sequence[tuple[HookSite, HookFn]]
    ) -> Float[Tensor, "batch pos d_vocab"]:
        """Forward pass with temporary hooks (removed afterwards, even on error); returns logits.

        Each hook is ``(site, function)``: a `circuitlab.sites.Site`, a hook name or a filter.

        Args:
            prompts: one prompt, a list of prompts, or a `TokenBatch` (used as it is).
            fwd_hooks: ``(site, function)`` pairs: the site a `circuitlab.sites.Site`, a hook
                name or a filter on names; the function a TransformerLens hook
                ``function(activation, hook)`` (returning a replacement or ``None``).
        """
        hooks = self._resolved_hooks(fwd_hooks)
        batch = self._inputs(prompts)
        return self.bridge.run_with_hooks(
            batch.input_ids, fwd_hooks=hooks, attention_mask=batch.attention_mask
        )

    @checked_arguments
    def run_with_cache(
        self,
        prompts: Prompts,
        names: HookSite | Sequence[Site | str] | None = None,
    ) -> tuple[Float[Tensor, "batch pos d_vocab"], Any]:
        """Forward pass that records activations; pass ``names`` to cache only those hooks.

        ``names`` are `circuitlab.sites.Site` values or hook names (the cache, a
        TransformerLens ``ActivationCache``, is keyed by hook name: ``cache[site.hook_name]``),
        or a filter on names. Activations and logits are [batch, pos, ...]; at padding
        positions they are meaningless. A full cache holds ~1,400 tensors on a
        30-layer model: prefer a list. Stream data sets through `circuitlab.collector.collect`.

        Args:
            prompts: one prompt, a list of prompts, or a `TokenBatch` (used as it is).
            names: the sites or hook names to record (one or a list), a filter on hook names, or
                ``None`` for every hook point.
        """
        batch = self.tokenize(prompts)
        listed = [names] if isinstance(names, (str, Site)) else names
        if listed is None or callable(listed):  # every hook point that fires: TL's own sweep
            batch = batch.to(self.device)
            with torch.no_grad():
                logits, cache = self.bridge.run_with_cache(
                    batch.input_ids, attention_mask=batch.attention_mask, names_filter=listed
                )
            return self.check_finite(logits), cache
        hook_names = list(dict.fromkeys(hook_name_of(name) for name in listed))
        self._check_hook_names(hook_names)
        readers: dict[str, Reader] = {name: Keep(name) for name in hook_names}
        readers[_LOGITS] = Logits()
        out = collect(
            self, batch, readers, positions=EVERY_TOKEN, batch_size=len(batch), sort=False
        )
        logits = out.pop(_LOGITS)
        cache = {name: kept.values for name, kept in out.items()}
        return logits, ActivationCache(cache, self.bridge)

    def hook_names(self) -> list[str]:
        """Every hook point name of the bridge."""
        return list(self.bridge.hook_dict)

    def _check_hook_names(self, names: Sequence[str | Callable[[str], bool]]) -> None:
        unknown = [n for n in names if isinstance(n, str) and n not in self.bridge.hook_dict]
        if unknown:
            raise InputError(
                f"Unknown hook name(s) {unknown}. Valid names look like 'blocks.0.attn.hook_z' "
                f"or 'ln_final.hook_scale' (layers 0 .. {self.n_layers - 1}); see "
                f"model.hook_names() for all of them."
            )

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[HookSite, HookFn]]) -> Iterator[ModelHandle]:
        """Context manager: hooks stay on for every forward pass inside, and are removed after.

        Each hook is ``(site, function)``: a `circuitlab.sites.Site`, a hook name or a filter.

        Args:
            fwd_hooks: ``(site, function)`` pairs: the site a `circuitlab.sites.Site`, a hook
                name or a filter on names; the function a TransformerLens hook
                ``function(activation, hook)`` (returning a replacement or ``None``).
        """
        with self.bridge.hooks(fwd_hooks=self._resolved_hooks(fwd_hooks)):
            yield self

    def _resolved_hooks(
        self, fwd_hooks: Sequence[tuple[HookSite, HookFn]]
    ) -> list[tuple[str | Callable[[str], bool], HookFn]]:
        """Hooks keyed by hook name (sites spelled out), every name checked."""
        resolved = [(hook_name_of(site), function) for site, function in fwd_hooks]
        self._check_hook_names([name for name, _ in resolved])
        return resolved

    def check_finite(self, logits: Tensor) -> Tensor:
        """``logits`` if every value is finite; otherwise a `NumericalError` naming the
        interventions in force (or the dtype) as the likely cause.

        Args:
            logits: the logits to check (any shape).
        """
        if bool(torch.isfinite(logits).all()):
            return logits
        bad = int((~torch.isfinite(logits)).sum())
        interventions = [repr(item) for r in self._interventions for item in r.interventions]
        if interventions:
            cause = (
                f"with the interventions {', '.join(interventions)} in force; an intervention "
                f"this large overflows {str(self.dtype).removeprefix('torch.')}. Use a smaller "
                f"factor or vector, or check the intervention values"
            )
        else:
            cause = (
                f"with no intervention in force (dtype {str(self.dtype).removeprefix('torch.')}); "
                f"in float16 load the model with dtype='float32' or 'bf16'"
            )
        raise NumericalError(f"The model produced {bad} non-finite logits (NaN or inf) {cause}.")

    @property
    def active_interventions(self) -> tuple[ResolvedInterventions, ...]:
        """The resolved interventions in force on this model, innermost last (see `intervene`)."""
        return tuple(self._interventions)

    @contextlib.contextmanager
    def interventions_in_force(self, resolved: ResolvedInterventions) -> Iterator[None]:
        """Record ``resolved`` as in force for the block (its hooks are `applied`'s job).

        Args:
            resolved: the resolved interventions applied inside the block.
        """
        self._interventions.append(resolved)
        try:
            yield
        finally:
            self._interventions.remove(resolved)

    def intervene(self, *interventions: Any) -> contextlib.AbstractContextManager[Any]:
        """Context manager: apply interventions (Ablate, Scale, ...) inside, undo them after.

        See `circuitlab.interventions.intervene`.

        Args:
            *interventions: the interventions (``Ablate``, ``Scale``, ...), applied in order.
        """
        from circuitlab.interventions.apply import intervene

        return intervene(self, *interventions)

    # ------------------------------------------------------------ generation
    @checked_arguments
    def generate_ids(
        self, prompts: str | Sequence[str], max_new_tokens: int = 20, *, stop_at_eos: bool = True
    ) -> list[list[int]]:
        """Greedy continuation token ids for each prompt (KV-cached, one prompt at a time).

        With ``stop_at_eos`` a row ends with the end-of-sequence token (included). Hooks active
        on the bridge (e.g. inside `hooks`) apply to every step. See
        `circuitlab.decoding.greedy_decode`, the decoder this uses.

        Args:
            prompts: one prompt text or a list of them.
            max_new_tokens: the most tokens generated per prompt.
            stop_at_eos: end a row at the end-of-sequence token.
        """
        return greedy_decode(
            self,
            prompts,
            max_new_tokens=max_new_tokens,
            stop_at_eos=stop_at_eos,
            keep_eos=True,
            batch_size=1,
            share_prefix=False,
        )

    @checked_arguments
    def generate(
        self, prompts: str | Sequence[str], max_new_tokens: int = 20, *, stop_at_eos: bool = True
    ) -> str | list[str]:
        """Greedy continuation text; a string for one prompt, a list for several.

        Args:
            prompts: one prompt text or a list of them.
            max_new_tokens: the most tokens generated per prompt.
            stop_at_eos: end a row at the end-of-sequence token.
        """
        ids = self.generate_ids(prompts, max_new_tokens, stop_at_eos=stop_at_eos)
        texts = [self.tokenizer.decode(row, skip_special_tokens=True) for row in ids]
        return texts[0] if isinstance(prompts, str) else texts

    # ---------------------------------------------------------- presentation
    def model_card(self) -> dict[str, Any]:
        """The model's facts as plain data (JSON-serialisable)."""
        n_params = sum(parameter.numel() for parameter in self.hf_model.parameters())
        arch = self.arch
        return {
            "name": self.name,
            "source": self.source,
            "architecture": arch.hf_class,
            "family": arch.family,
            "parameters": n_params,
            "n_layers": arch.n_layers,
            "n_heads": arch.n_heads,
            "n_kv_heads": arch.n_kv_heads,
            "d_model": arch.d_model,
            "d_head": arch.d_head,
            "d_mlp": arch.d_mlp,
            "d_vocab": arch.d_vocab,
            "n_ctx": arch.n_ctx,
            "norm_type": arch.norm_type,
            "norms": [site.name for site in arch.norms],
            "positional": arch.positional,
            "bos_policy": self.bos_policy,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def __repr__(self) -> str:
        arch = self.arch
        gqa = f"/{arch.n_kv_heads}kv" if arch.uses_gqa else ""
        return (
            f"ModelHandle({self.name!r}: {arch.family}, {arch.n_layers} layers x "
            f"{arch.n_heads}{gqa} heads, d_model={arch.d_model}, vocab={arch.d_vocab}, "
            f"{str(self.dtype).removeprefix('torch.')} on {self.device})"
        )

    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {key} | {value} |" for key, value in self.model_card().items())
        return f"**circuitlab ModelHandle**\n\n| fact | value |\n|---|---|\n{rows}\n"


@dataclass(frozen=True)
class TokenPrediction:
    """One predicted next token.

    Attributes:
        token: the token as text (``" Paris"``).
        token_id: its id.
        probability: softmax probability over the whole vocabulary.
        logit: the raw logit.
    """

    token: str
    token_id: int
    probability: float
    logit: float
