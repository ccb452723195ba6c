"""Architecture facts: the numbers and the norm layout the rest of circuitlab relies on.

circuitlab supports the decoder-only families listed in `SUPPORTED_ARCHITECTURES`;
each is covered by a logits-parity test against plain ``transformers``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from circuitlab.errors import InputError, UnsupportedArchitectureError
from circuitlab.sites import Site, norm_scale

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "ArchitectureInfo",
    "NormSite",
    "architecture_class",
    "check_supported",
]

NormType = Literal["rmsnorm", "layernorm"]


@dataclass(frozen=True)
class NormSite:
    """One normalisation in the model.

    Attributes:
        name: TransformerLens component name (``ln1``, ``ln1_post``, ``attn.q_norm``, ``ln_final``).
        placement: what it normalises: ``attn_input``, ``attn_output`` (a branch norm before
            the residual add), ``mlp_input``, ``mlp_output``, ``query``, ``key`` or ``final``.
        per_layer: ``True`` for norms inside every block, ``False`` for the final norm.
    """

    name: str
    placement: str
    per_layer: bool = True

    def scale_site(self, layer: int | None = None) -> Site:
        """The site that holds this norm's scale ([batch, pos, 1]) for ``layer``.

        Args:
            layer: Layer of a per-layer norm; ``None`` for the final norm.
        """
        if self.per_layer and layer is None:
            raise InputError(
                f"Norm {self.name!r} sits in every block: pass layer= (0 .. n_layers - 1)."
            )
        return norm_scale(self.name, layer if self.per_layer else None)

    def scale_hook(self, layer: int | None = None) -> str:
        """The hook name of `scale_site` (for ``run_with_cache(names=...)`` and the like).

        Args:
            layer: Layer of a per-layer norm; ``None`` for the final norm.
        """
        return self.scale_site(layer).hook_name


_PRE_NORMS = (NormSite("ln1", "attn_input"), NormSite("ln2", "mlp_input"))
_QK_NORMS = (NormSite("attn.q_norm", "query"), NormSite("attn.k_norm", "key"))
_FINAL = NormSite("ln_final", "final", per_layer=False)
_SANDWICH = (
    NormSite("ln1", "attn_input"),
    NormSite("ln1_post", "attn_output"),
    NormSite("ln2", "mlp_input"),
    NormSite("ln2_post", "mlp_output"),
)


@dataclass(frozen=True)
class _Family:
    family: str
    norm_type: NormType
    norms: tuple[NormSite, ...]
    norm_weight_offset: float = 0.0


SUPPORTED_ARCHITECTURES: dict[str, _Family] = {
    "LlamaForCausalLM": _Family("llama", "rmsnorm", (*_PRE_NORMS, _FINAL)),
    "MistralForCausalLM": _Family("mistral", "rmsnorm", (*_PRE_NORMS, _FINAL)),
    "Qwen2ForCausalLM": _Family("qwen2", "rmsnorm", (*_PRE_NORMS, _FINAL)),
    "Qwen3ForCausalLM": _Family("qwen3", "rmsnorm", (*_PRE_NORMS, *_QK_NORMS, _FINAL)),
    "Gemma3ForCausalLM": _Family(
        "gemma3", "rmsnorm", (*_SANDWICH, *_QK_NORMS, _FINAL), norm_weight_offset=1.0
    ),
    "GPT2LMHeadModel": _Family("gpt2", "layernorm", (*_PRE_NORMS, _FINAL)),
}
"""Hugging Face classes circuitlab supports, with their family's norm layout."""


def architecture_class(hf_config: Any) -> str | None:
    """The Hugging Face class name recorded in a config (``None`` when it records none).

    Args:
        hf_config: A Hugging Face model config.
    """
    architectures = getattr(hf_config, "architectures", None) or []
    return architectures[0] if architectures else None


def check_supported(class_name: str | None, *, model_type: str | None = None) -> str:
    """Return ``class_name`` if circuitlab supports it, else raise a clear error.

    Args:
        class_name: The Hugging Face class name (``LlamaForCausalLM``, ...), or ``None``.
        model_type: The config's ``model_type``, named in the error when the class is unknown.
    """
    if class_name in SUPPORTED_ARCHITECTURES:
        return class_name
    shown = class_name or f"model_type={model_type!r} with no recorded architecture"
    raise UnsupportedArchitectureError(
        f"Unsupported architecture {shown}. circuitlab supports: "
        f"{', '.join(SUPPORTED_ARCHITECTURES)}. Load a model of one of these families, or "
        f"set config.architectures if your config leaves it empty."
    )


@dataclass(frozen=True)
class ArchitectureInfo:
    """What the toolkit needs to know about a model's shape and norms.

    Attributes:
        hf_class: Hugging Face class (``LlamaForCausalLM``).
        family: short family name (``llama``, ``gemma3``, ``gpt2``, ...).
        n_layers, n_heads, n_kv_heads, d_model, d_head, d_mlp, d_vocab: sizes.
        n_ctx: longest context the model accepts, in tokens.
        norm_type: ``rmsnorm`` or ``layernorm``.
        norm_eps: epsilon inside every norm.
        norm_weight_offset: the norm multiplies by ``offset + weight`` (1.0 for Gemma).
        norms: every norm, in forward order within a block, then the final norm.
        positional: ``rotary`` or ``learned``.
        embedding_scale: factor applied to token embeddings (``sqrt(d_model)`` for Gemma).
        tied_embeddings: unembedding shares the embedding matrix.
        n_layers: Number of transformer blocks.
        n_heads: Query heads per layer.
        n_kv_heads: Key/value heads per layer (fewer than ``n_heads`` under grouped-query
            attention).
        d_model: Width of the residual stream.
        d_head: Width of one attention head.
        d_mlp: Hidden width of the MLP.
        d_vocab: Vocabulary size (rows of the unembedding).
    """

    hf_class: str
    family: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    norm_type: NormType
    norm_eps: float
    norm_weight_offset: float
    norms: tuple[NormSite, ...]
    positional: Literal["rotary", "learned"]
    embedding_scale: float
    tied_embeddings: bool

    @property
    def uses_gqa(self) -> bool:
        """Whether several query heads share one key/value head."""
        return self.n_kv_heads < self.n_heads

    @property
    def has_branch_norms(self) -> bool:
        """Whether branch outputs are normalised before the residual add (sandwich norms)."""
        return any(site.placement in ("attn_output", "mlp_output") for site in self.norms)

    def norm(self, placement: str) -> NormSite | None:
        """The norm at ``placement`` (``attn_input``, ``final``, ...) or ``None``.

        Args:
            placement: Where the norm sits: ``attn_input``, ``mlp_input``, ``final``, ...
        """
        return next((site for site in self.norms if site.placement == placement), None)

    @classmethod
    def from_bridge(cls, bridge: Any, hf_model: Any) -> ArchitectureInfo:
        """Read the facts off a booted ``TransformerBridge`` and the HF model under it.

        Args:
            bridge: The booted TransformerLens ``TransformerBridge``.
            hf_model: The Hugging Face model under the bridge.
        """
        hf_class = check_supported(
            type(hf_model).__name__, model_type=getattr(hf_model.config, "model_type", None)
        )
        family = SUPPORTED_ARCHITECTURES[hf_class]
        cfg = bridge.cfg
        embed = hf_model.get_input_embeddings()
        scale = getattr(embed, "embed_scale", 1.0)
        scale = float(scale.item() if hasattr(scale, "item") else scale)
        positional = "rotary" if cfg.positional_embedding_type == "rotary" else "learned"
        return cls(
            hf_class=hf_class,
            family=family.family,
            n_layers=int(cfg.n_layers),
            n_heads=int(cfg.n_heads),
            n_kv_heads=int(getattr(cfg, "n_key_value_heads", None) or cfg.n_heads),
            d_model=int(cfg.d_model),
            d_head=int(cfg.d_head),
            d_mlp=int(cfg.d_mlp),
            d_vocab=int(cfg.d_vocab),
            n_ctx=int(cfg.n_ctx),
            norm_type=family.norm_type,
            norm_eps=float(cfg.eps),
            norm_weight_offset=family.norm_weight_offset,
            norms=family.norms,
            positional=positional,
            embedding_scale=scale,
            tied_embeddings=bool(getattr(hf_model.config, "tie_word_embeddings", False)),
        )

    def describe(self) -> str:
        """A few lines for model cards and reprs."""
        gqa = f" ({self.n_kv_heads} KV heads)" if self.uses_gqa else ""
        norms = ", ".join(site.name for site in self.norms)
        lines = [
            f"{self.hf_class} ({self.family}): {self.n_layers} layers, {self.n_heads} heads{gqa}, "
            f"d_model {self.d_model}, d_head {self.d_head}, d_mlp {self.d_mlp}",
            f"vocab {self.d_vocab}, context {self.n_ctx}, {self.positional} positions, "
            f"{self.norm_type} (eps {self.norm_eps:g}"
            + (f", weight offset {self.norm_weight_offset:g}" if self.norm_weight_offset else "")
            + ")",
            f"norms: {norms}",
        ]
        if not math.isclose(self.embedding_scale, 1.0):
            lines.append(f"embeddings scaled by {self.embedding_scale:.4g}")
        return "\n".join(lines)
