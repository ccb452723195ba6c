"""Hook sites as values: what is read or edited, and at which layer.

A `Site` names one TransformerLens hook point without a raw string. Interventions, layer
scoring and the decomposition all say where they act with these values; only `Site.hook_name`
spells the bridge's hook name, so nobody builds or parses hook-name strings.

Example:
    >>> resid_post(3)
    Site('resid_post', layer=3)
    >>> resid_post(3).hook_name
    'blocks.3.hook_resid_post'
    >>> norm_scale("ln_final").hook_name
    'ln_final.hook_scale'
    >>> model.run_with_cache("The capital of France is", names=[head_z(20)])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from circuitlab.errors import InputError

__all__ = [
    "SITE_KINDS",
    "Site",
    "SiteKind",
    "attn_out",
    "hook_name_of",
    "mlp_out",
    "norm_scale",
    "o_out",
    "pattern",
    "resid_mid",
    "resid_post",
    "resid_pre",
    "z",
]

SiteKind = Literal[
    "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "o_out", "pattern",
    "norm_scale",
]  # fmt: skip

_TEMPLATES: dict[str, str] = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "z": "blocks.{layer}.attn.hook_z",
    "o_out": "blocks.{layer}.attn.o.hook_out",
    "pattern": "blocks.{layer}.attn.hook_pattern",
    "norm_scale": "blocks.{layer}.{norm}.hook_scale",
}

SITE_KINDS: dict[str, str] = {
    "resid_pre": "the residual stream entering a block [batch, pos, d_model]",
    "resid_mid": "the residual stream between a block's attention and its MLP",
    "resid_post": "the residual stream leaving a block (what the next block reads)",
    "attn_out": "what a block's attention writes into the residual stream (after any branch norm)",
    "mlp_out": "what a block's MLP writes into the residual stream (after any branch norm)",
    "z": "each head's value-weighted output [batch, pos, head_index, d_head]",
    "o_out": "the attention's output projection, before any branch norm [batch, pos, d_model]",
    "pattern": "attention probabilities [batch, head_index, query_pos, key_pos]",
    "norm_scale": "a normalisation's scale, sqrt(mean(x^2) + eps) for RMSNorm [batch, pos, 1]",
}
"""Each site kind and what its activation holds."""


@dataclass(frozen=True)
class Site:
    """One hook point: a kind, the layer (``None`` for the final norm) and, for a norm scale,
    the norm's TransformerLens name (``ln1``, ``ln1_post``, ``ln2``, ``ln2_post``,
    ``ln_final``). Sites compare and hash by value.

    Attributes:
        kind: what the site holds (one of `SITE_KINDS`).
        layer: the block index (0-based); ``None`` only for the final norm's scale.
        norm: for a ``norm_scale`` site, the norm's TransformerLens name; ``None`` otherwise.
    """

    kind: SiteKind
    layer: int | None = None
    norm: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _TEMPLATES:
            raise InputError(
                f"Unknown site kind {self.kind!r}; use one of {', '.join(_TEMPLATES)}."
            )
        if self.kind == "norm_scale":
            if not self.norm:
                raise InputError("A norm_scale site needs the norm's name (e.g. 'ln1').")
        elif self.norm is not None:
            raise InputError(f"Only norm_scale sites name a norm; {self.kind!r} got {self.norm!r}.")
        per_block = self.kind != "norm_scale" or self.norm != "ln_final"
        if per_block and not (isinstance(self.layer, int) and self.layer >= 0):
            raise InputError(
                f"A {self.kind} site sits in every block: give a layer index >= 0, "
                f"not {self.layer!r}."
            )

    @property
    def hook_name(self) -> str:
        """The bridge's hook-point name for this site."""
        if self.kind == "norm_scale" and self.layer is None:
            return f"{self.norm}.hook_scale"
        return _TEMPLATES[self.kind].format(layer=self.layer, norm=self.norm)

    def check(self, n_layers: int) -> Site:
        """Return the site if its layer exists in a model of ``n_layers`` layers, else raise.

        Args:
            n_layers: the model's number of layers.
        """
        if self.layer is not None and not 0 <= self.layer < n_layers:
            raise InputError(
                f"{self!r} refers to layer {self.layer}, but the model has {n_layers} layers "
                f"(0 .. {n_layers - 1})."
            )
        return self

    def __repr__(self) -> str:
        norm = f", norm={self.norm!r}" if self.norm is not None else ""
        layer = f", layer={self.layer}" if self.layer is not None else ""
        return f"Site({self.kind!r}{layer}{norm})"


def resid_pre(layer: int) -> Site:
    """The residual stream entering block ``layer``.

    Args:
        layer: the block index (0-based).
    """
    return Site("resid_pre", layer)


def resid_mid(layer: int) -> Site:
    """The residual stream between block ``layer``'s attention and its MLP.

    Args:
        layer: the block index (0-based).
    """
    return Site("resid_mid", layer)


def resid_post(layer: int) -> Site:
    """The residual stream leaving block ``layer``.

    Args:
        layer: the block index (0-based).
    """
    return Site("resid_post", layer)


def attn_out(layer: int) -> Site:
    """What block ``layer``'s attention writes into the residual stream.

    Args:
        layer: the block index (0-based).
    """
    return Site("attn_out", layer)


def mlp_out(layer: int) -> Site:
    """What block ``layer``'s MLP writes into the residual stream.

    Args:
        layer: the block index (0-based).
    """
    return Site("mlp_out", layer)


def z(layer: int) -> Site:
    """Each head's value-weighted output in block ``layer`` (``hook_z``).

    Args:
        layer: the block index (0-based).
    """
    return Site("z", layer)


def o_out(layer: int) -> Site:
    """Block ``layer``'s attention output projection, before any branch norm.

    Args:
        layer: the block index (0-based).
    """
    return Site("o_out", layer)


def pattern(layer: int) -> Site:
    """Block ``layer``'s attention probabilities.

    Args:
        layer: the block index (0-based).
    """
    return Site("pattern", layer)


def norm_scale(norm: str, layer: int | None = None) -> Site:
    """The scale of norm ``norm`` (``ln1`` ... in block ``layer``; ``ln_final`` alone).

    Args:
        norm: the norm's TransformerLens name (``ln1``, ``ln1_post``, ``ln2``, ``ln2_post``,
            ``ln_final``).
        layer: the block index (0-based); ``None`` for ``ln_final``.
    """
    return Site("norm_scale", layer, norm)


def hook_name_of(site: Site | str | Any) -> Any:
    """The hook name of a `Site`; strings and name filters pass through unchanged.

    Args:
        site: a `Site`, a hook name, or a hook-name filter (e.g. a callable).
    """
    return site.hook_name if isinstance(site, Site) else site
