"""Exact decomposition of the residual stream into per-component contributions.

For a chosen position in each prompt, the final residual stream (the input of the final norm)
is split into the embedding, every attention head, every attention-output bias (models that
have one) and every MLP:

    x(L) = x(0) + sum_l sum_h c_{l,h} + sum_l b_O(l) + sum_l m(l)

Per-head contributions come from ``hook_z`` and ``W_O`` (``z_h @ W_O[h]``); under grouped-query
attention ``hook_z`` already holds one value vector per *query* head, so no key/value expansion
is needed. Models with a norm on each branch output (Gemma 3's ``ln1_post``/``ln2_post``) are
exact too: that norm divides by a per-token scale and multiplies by a gain, so with the scale
frozen at its value for the whole branch it is linear, and each head's share is
``c_{l,h} = z_h W_O[h] * gain / scale``. Only the requested positions are kept while the forward
pass runs; no full activation cache is ever held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab import sites
from circuitlab.checks import checked_arguments
from circuitlab.collector import CapturedBatch, collect
from circuitlab.components import Component, all_components
from circuitlab.errors import InputError
from circuitlab.interventions.edits import ForwardState, position_mask
from circuitlab.model import ModelHandle, Prompts
from circuitlab.positions import Positions
from circuitlab.readers import RowChunks
from circuitlab.results import Result
from circuitlab.sites import Site
from circuitlab.tokenization import TokenBatch
from circuitlab.weights import norm_gain, output_projection

__all__ = [
    "DecompositionReader",
    "DecompositionWeights",
    "ResidualDecomposition",
    "decompose_batch",
    "decompose_residual",
]


@dataclass(frozen=True)
class ResidualDecomposition(Result):
    """The final residual stream at one position per prompt, split into components.

    Attributes:
        contributions: each component's write to the residual stream.
        components: the components, in the order of ``contributions``' second axis.
        residual: the final residual stream itself (input of the final norm).
        final_scale: the final norm's scale at that position (``sqrt(mean(x^2) + eps)`` for
            RMSNorm; the standard deviation for LayerNorm).
        positions: the decomposed position in each prompt.
        logits: the model's own logits at that position (from the same forward pass).
    """

    contributions: Float[Tensor, "batch component d_model"]
    components: tuple[Component, ...]
    residual: Float[Tensor, "batch d_model"]
    final_scale: Float[Tensor, " batch"]
    positions: Int[Tensor, " batch"]
    logits: Float[Tensor, "batch d_vocab"]

    def total(self) -> Float[Tensor, "batch d_model"]:
        """Sum of all contributions (equals ``residual`` up to float rounding)."""
        return self.contributions.sum(dim=1)

    def __len__(self) -> int:
        return int(self.contributions.shape[0])

    def __repr__(self) -> str:
        return (
            f"ResidualDecomposition({len(self)} prompts x {len(self.components)} components, "
            f"d_model {self.contributions.shape[-1]})"
        )

    def norms(self) -> Float[Tensor, "batch component"]:
        """The L2 norm of each component's write at each prompt's position."""
        return self.contributions.norm(dim=-1)

    def to_frame(self) -> Any:
        """One row per (prompt, component): position and the norm of the component's write."""
        import pandas as pd

        norms = self.norms()
        return pd.DataFrame(
            {
                "prompt": [row for row in range(len(self)) for _ in self.components],
                "position": [int(p) for p in self.positions for _ in self.components],
                "component": [str(c) for _ in range(len(self)) for c in self.components],
                "norm": norms.reshape(-1).numpy(),
            }
        )

    def plot(self, k: int = 15, *, title: str | None = None) -> Any:
        """Bar chart of the ``k`` components with the largest mean write norm (Figure).

        Args:
            k: How many components to draw (largest norms).
            title: Figure title.
        """
        from circuitlab.decomposition.plots import plot_bars

        mean = self.norms().mean(dim=0)
        order = torch.argsort(mean, descending=True)[:k]
        return plot_bars(
            [str(self.components[int(i)]) for i in order],
            [float(mean[i]) for i in order],
            title=title or f"largest writes to the final residual stream ({len(self)} prompts)",
            value_label="mean L2 norm of the write",
        )


@dataclass(frozen=True)
class _DecompositionSites:
    """The sites one decomposition reads, per layer where they are per layer."""

    embed: Site
    z: tuple[Site, ...]
    mlp: tuple[Site, ...]
    final_scale: Site
    residual: Site
    attn_out_scale: tuple[Site, ...] | None

    @classmethod
    def of(cls, model: ModelHandle) -> _DecompositionSites:
        layers = range(model.n_layers)
        attn_out_norm = model.arch.norm("attn_output")
        return cls(
            embed=sites.resid_pre(0),
            z=tuple(sites.z(layer) for layer in layers),
            mlp=tuple(sites.mlp_out(layer) for layer in layers),
            final_scale=model.arch.norm("final").scale_site(),
            residual=sites.resid_post(model.n_layers - 1),
            attn_out_scale=None
            if attn_out_norm is None
            else tuple(attn_out_norm.scale_site(layer) for layer in layers),
        )

    def all(self) -> tuple[Site, ...]:
        return (
            self.embed, *self.z, *self.mlp, self.final_scale, self.residual,
            *(self.attn_out_scale or ()),
        )  # fmt: skip


@dataclass(frozen=True)
class DecompositionWeights:
    """The weights one decomposition pass needs, read once per call rather than per batch.

    Attributes:
        w_o: each layer's attention output projection (views of the HF weights, no copies;
            a layer whose projection carries a LoRA adapter gets base + adapter update).
        b_o: each layer's output-projection bias, or ``None`` for models without one.
        branch_gains: gain of each layer's attention-output norm (sandwich norms), or ``None``.
    """

    w_o: tuple[Float[Tensor, "head_index d_head d_model"], ...]
    b_o: tuple[Float[Tensor, " d_model"], ...] | None
    branch_gains: tuple[Float[Tensor, " d_model"], ...] | None

    @classmethod
    def read(cls, model: ModelHandle) -> DecompositionWeights:
        """Read the current weights of ``model`` (unmodified HF weights).

        Args:
            model: The model whose weights are read.
        """
        projections = [output_projection(model, layer) for layer in range(model.n_layers)]
        biases = [bias for _, bias in projections]
        site = model.arch.norm("attn_output")
        gains = None
        if site is not None:
            gains = tuple(norm_gain(model, site, layer) for layer in range(model.n_layers))
        return cls(
            w_o=tuple(w_o for w_o, _ in projections),
            b_o=None if any(bias is None for bias in biases) else tuple(biases),
            branch_gains=gains,
        )


def _attention_write_factors(
    model: ModelHandle, batch: TokenBatch, chosen: Int[Tensor, " batch"]
) -> Float[Tensor, "batch layer"] | None:
    """Per row and layer, the factor active interventions put on the attention branch's write.

    Head-level and MLP edits need nothing here: the hooks record their edited values. An edit
    that adds a vector no component owns (steering, mean or resampled branch writes) cannot be
    attributed and is refused.
    """
    factors = None
    rows = torch.arange(len(chosen))
    for resolved in model.active_interventions:
        for edit in resolved.edits:
            kind = edit.site.kind
            if kind in ("z", "mlp_out"):
                continue
            if (
                kind != "attn_out"
                or edit.constant is not None
                or edit.resample is not None
                or (edit.positional is not None)
            ):
                raise InputError(
                    f"The decomposition cannot attribute the active intervention "
                    f"{edit.source!r}: it adds to the residual stream something that belongs "
                    f"to no component. Decompose outside that intervention, or express it per "
                    f"head (e.g. Ablate('L3H0', 'mean')) and per MLP."
                )
            if factors is None:
                factors = torch.ones(len(chosen), model.n_layers, dtype=model.dtype)
            mask = position_mask(
                edit.positions,
                ForwardState(attention_mask=batch.attention_mask),
                len(chosen),
                batch.input_ids.shape[1],
            )
            applies = torch.ones(len(chosen), dtype=torch.bool)
            if mask is not None:
                applies = mask.cpu()[rows, chosen.cpu()]
            factors[applies, edit.layer] *= edit.multiplier
    return None if factors is None else factors.to(model.device)


class DecompositionReader(RowChunks):
    """A `circuitlab.readers.Reader` that decomposes each batch as it streams past.

    Result: a `ResidualDecomposition` of every prompt, in data order. Subclasses that reduce
    each batch's decomposition further (direct logit attribution) override `update` and call
    `decompose`, so the [batch, component, d_model] contributions never outlive their batch.

    Args:
        model: The model whose final residual stream is decomposed.
        weights: Weights read once with `DecompositionWeights.read` (default: read now).
    """

    needs_logits = True

    def __init__(self, model: ModelHandle, weights: DecompositionWeights | None = None) -> None:
        super().__init__()
        self.model = model
        self.weights = weights or DecompositionWeights.read(model)
        self.names = _DecompositionSites.of(model)
        self.sites = self.names.all()

    def decompose(self, batch: CapturedBatch) -> ResidualDecomposition:
        """The decomposition of one captured batch (its rows in batch order).

        Args:
            batch: The batch the collector captured.
        """
        if batch.every_token:
            raise InputError("The decomposition reads one position per prompt, not 'all'.")
        return _decompose_captured(self.model, batch, self.weights, self.names)

    def update(self, batch: CapturedBatch) -> None:
        """Decompose one batch and keep it.

        Args:
            batch: The batch the collector captured (one position per prompt).
        """
        self.keep(batch.rows, self.decompose(batch))

    def result(self) -> ResidualDecomposition:
        """The `ResidualDecomposition` of every prompt seen, in data order."""
        order, chunks = self.ordered()
        order = order.to(chunks[0].contributions.device)
        return ResidualDecomposition(
            contributions=torch.cat([part.contributions for part in chunks])[order],
            components=chunks[0].components,
            residual=torch.cat([part.residual for part in chunks])[order],
            final_scale=torch.cat([part.final_scale for part in chunks])[order],
            positions=torch.cat([part.positions for part in chunks])[order],
            logits=torch.cat([part.logits for part in chunks])[order],
        )


def _decompose_captured(
    model: ModelHandle,
    captured: CapturedBatch,
    weights: DecompositionWeights,
    names: _DecompositionSites,
) -> ResidualDecomposition:
    """Decompose one captured batch (activations at one position per row)."""
    chosen = captured.positions
    assert chosen is not None and captured.logits is not None
    write_factors = _attention_write_factors(model, captured.tokens, chosen)
    n_heads, has_bias = model.n_heads, weights.b_o is not None
    stride = n_heads + int(has_bias) + 1  # heads, bias, MLP: one layer's components
    embed = captured[names.embed]
    contributions = embed.new_empty(len(chosen), 1 + model.n_layers * stride, model.d_model)
    contributions[:, 0] = embed
    for layer in range(model.n_layers):
        start = 1 + layer * stride
        heads = einops.einsum(captured[names.z[layer]], weights.w_o[layer], "b h d, h d m -> b h m")
        bias = None if weights.b_o is None else weights.b_o[layer].expand(len(chosen), -1)
        if weights.branch_gains is not None and names.attn_out_scale is not None:
            factor = weights.branch_gains[layer] / captured[names.attn_out_scale[layer]]
            heads = heads * factor[:, None, :]  # frozen scale of the attention-output norm
            bias = None if bias is None else bias * factor
        if write_factors is not None:
            heads = heads * write_factors[:, layer, None, None]
            bias = None if bias is None else bias * write_factors[:, layer, None]
        contributions[:, start : start + n_heads] = heads
        if bias is not None:
            contributions[:, start + n_heads] = bias
        contributions[:, start + stride - 1] = captured[names.mlp[layer]]
    return ResidualDecomposition(
        contributions=contributions,
        components=all_components(model.arch, attn_bias=has_bias),
        residual=captured[names.residual],
        final_scale=captured[names.final_scale].reshape(-1),
        positions=chosen,
        logits=captured.logits,
    )


def decompose_batch(
    model: ModelHandle,
    batch: TokenBatch,
    positions: Positions = None,
    weights: DecompositionWeights | None = None,
) -> ResidualDecomposition:
    """Decompose one tokenized batch in a single forward pass (see `decompose_residual`).

    ``weights`` (from `DecompositionWeights.read`) saves re-reading them.

    Args:
        model: The model.
        batch: Tokenized prompts.
        positions: Position of each prompt to decompose (default: each last real token).
        weights: Weights read once with `DecompositionWeights.read` (default: read now).
    """
    reader = DecompositionReader(model, weights)
    return collect(
        model, batch, {"parts": reader}, positions=positions, batch_size=len(batch), sort=False
    )["parts"]


@checked_arguments
def decompose_residual(
    model: ModelHandle,
    prompts: Prompts,
    positions: Positions = None,
    *,
    batch_size: int = 8,
    progress: bool | None = None,
) -> ResidualDecomposition:
    """Split the final residual stream into per-component contributions.

    Prompts stream through `circuitlab.collector.collect` in length-sorted batches (a prefix
    every prompt of a batch shares runs once); results come back in prompt order.

    Args:
        model: the model handle.
        prompts: prompts (or a tokenized batch).
        positions: ``None`` for each prompt's last real token (default), an int for the same
            position in every prompt (negative: counted back from the last real token), or one
            int per prompt.
        batch_size: prompts per forward pass.
        progress: progress bar (default: shown once the call
            runs past 2 s; ``False`` never; see `circuitlab.progress`).

    Returns:
        A `ResidualDecomposition` with ``contributions`` of shape
        [batch, 1 + n_layers * (n_heads + 1) (+ n_layers with attention biases), d_model].

    Example:
        >>> parts = decompose_residual(model, ["The capital of France is"])
        >>> torch.allclose(parts.total(), parts.residual, atol=1e-4)
        True
    """
    readers = {"parts": DecompositionReader(model)}
    return collect(
        model,
        prompts,
        readers,
        positions=positions,
        batch_size=batch_size,
        progress=progress,
        desc="decomposing",
    )["parts"]
