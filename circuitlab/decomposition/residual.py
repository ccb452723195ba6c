"""Exact decomposition of the residual stream into per-component contributions.

For a chosen position in each prompt, the final residual stream (the input of the final norm)
is split into the embedding, every attention head, every attention-output bias (models that
have one) and every MLP::

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

from collections.abc import Callable
from dataclasses import dataclass

import einops
import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.components import Component, all_components
from circuitlab.decomposition.positions import Positions, position_chunks, resolve_positions
from circuitlab.model import ModelHandle, Prompts
from circuitlab.tokenization import TokenBatch
from circuitlab.weights import norm_gain, output_projection

__all__ = ["DecompositionWeights", "ResidualDecomposition", "decompose_batch", "decompose_residual"]


@dataclass(frozen=True)
class ResidualDecomposition:
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


class _PositionRecorder:
    """Forward hooks that keep only the chosen position of each row."""

    def __init__(self, positions: Int[Tensor, " batch"]) -> None:
        self.positions = positions
        self.rows = torch.arange(positions.numel(), device=positions.device)
        self.values: dict[str, Tensor] = {}

    def hook(self, name: str) -> tuple[str, Callable[..., None]]:
        def record(activation: Tensor, hook: object) -> None:
            self.values[name] = activation[self.rows, self.positions].detach()

        return name, record


def _hook_names(model: ModelHandle) -> dict[str, list[str] | str]:
    layers = range(model.n_layers)
    names: dict[str, list[str] | str] = {
        "embed": "blocks.0.hook_resid_pre",
        "z": [f"blocks.{layer}.attn.hook_z" for layer in layers],
        "mlp": [f"blocks.{layer}.hook_mlp_out" for layer in layers],
        "final_scale": model.arch.norm("final").scale_hook(),
        "residual": f"blocks.{model.n_layers - 1}.hook_resid_post",
    }
    attn_out_norm = model.arch.norm("attn_output")
    if attn_out_norm is not None:
        names["attn_out_scale"] = [attn_out_norm.scale_hook(layer) for layer in layers]
    return names


@dataclass(frozen=True)
class DecompositionWeights:
    """The weights one decomposition pass needs, read once per call rather than per batch.

    Attributes:
        w_o: every layer's attention output projection.
        b_o: every layer's output-projection bias, or ``None``.
        branch_gains: gain of each layer's attention-output norm (sandwich norms), or ``None``.
    """

    w_o: Float[Tensor, "layer head_index d_head d_model"]
    b_o: Float[Tensor, "layer d_model"] | None
    branch_gains: Float[Tensor, "layer d_model"] | None

    @classmethod
    def read(cls, model: ModelHandle) -> DecompositionWeights:
        """Read the current weights of ``model`` (unmodified HF weights)."""
        w_o, b_o = output_projection(model)
        site = model.arch.norm("attn_output")
        gains = None
        if site is not None:
            gains = torch.stack([norm_gain(model, site, layer) for layer in range(model.n_layers)])
        return cls(w_o, b_o, gains)


def decompose_batch(
    model: ModelHandle,
    batch: TokenBatch,
    positions: Positions = None,
    weights: DecompositionWeights | None = None,
) -> ResidualDecomposition:
    """Decompose one tokenized batch (see :func:`decompose_residual`).

    ``weights`` (from :meth:`DecompositionWeights.read`) saves re-reading them per batch.
    """
    weights = weights or DecompositionWeights.read(model)
    batch = batch.to(model.device)
    chosen = resolve_positions(batch, positions)
    recorder = _PositionRecorder(chosen)
    names = _hook_names(model)
    flat = [n for value in names.values() for n in ([value] if isinstance(value, str) else value)]
    with torch.no_grad():
        logits = model.bridge.run_with_hooks(
            batch.input_ids,
            fwd_hooks=[recorder.hook(name) for name in flat],
            attention_mask=batch.attention_mask,
        )
    seen = recorder.values
    w_o, b_o = weights.w_o, weights.b_o
    z = torch.stack([seen[name] for name in names["z"]], dim=1)  # [batch, layer, head, d_head]
    heads = einops.einsum(z, w_o, "b l h d, l h d m -> b l h m")
    biases = None if b_o is None else einops.repeat(b_o, "l m -> b l m", b=len(chosen))
    if weights.branch_gains is not None:
        gains = weights.branch_gains
        scales = torch.stack([seen[name] for name in names["attn_out_scale"]], dim=1)  # [b, l, 1]
        factor = gains / scales  # [batch, layer, d_model]
        heads = heads * factor[:, :, None, :]
        biases = None if biases is None else biases * factor
    mlps = torch.stack([seen[name] for name in names["mlp"]], dim=1)  # [batch, layer, d_model]
    per_layer = [heads] if biases is None else [heads, biases[:, :, None, :]]
    per_layer.append(mlps[:, :, None, :])
    layered = einops.rearrange(torch.cat(per_layer, dim=2), "b l c m -> b (l c) m")
    contributions = torch.cat([seen[names["embed"]][:, None, :], layered], dim=1)
    return ResidualDecomposition(
        contributions=contributions,
        components=all_components(model.arch, attn_bias=b_o is not None),
        residual=seen[names["residual"]],
        final_scale=seen[names["final_scale"]].reshape(-1),
        positions=chosen,
        logits=logits[recorder.rows, chosen],
    )


def decompose_residual(
    model: ModelHandle,
    prompts: Prompts,
    positions: Positions = None,
    *,
    batch_size: int = 8,
    progress: bool = False,
) -> ResidualDecomposition:
    """Split the final residual stream into per-component contributions.

    Args:
        model: the model handle.
        prompts: prompts (or a tokenized batch).
        positions: ``None`` for each prompt's last real token (default), an int for the same
            position in every prompt (negative: counted back from the last real token), or one
            int per prompt.
        batch_size: prompts per forward pass.
        progress: show a progress bar.

    Returns:
        A :class:`ResidualDecomposition` with ``contributions`` of shape
        [batch, 1 + n_layers * (n_heads + 1) (+ n_layers with attention biases), d_model].

    Example:
        >>> parts = decompose_residual(model, ["The capital of France is"])
        >>> torch.allclose(parts.total(), parts.residual, atol=1e-4)
        True
    """
    if isinstance(prompts, TokenBatch):
        return decompose_batch(model, prompts, positions)
    weights = DecompositionWeights.read(model)
    texts = [prompts] if isinstance(prompts, str) else list(prompts)
    chunks = position_chunks(positions, len(texts), batch_size)
    parts = [
        decompose_batch(model, batch, chunk, weights)
        for batch, chunk in zip(
            model.batches(texts, batch_size, progress=progress), chunks, strict=True
        )
    ]
    return ResidualDecomposition(
        contributions=torch.cat([part.contributions for part in parts]),
        components=parts[0].components,
        residual=torch.cat([part.residual for part in parts]),
        final_scale=torch.cat([part.final_scale for part in parts]),
        positions=torch.cat([part.positions for part in parts]),
        logits=torch.cat([part.logits for part in parts]),
    )
