"""Direct logit attribution through the final norm, with its scale frozen.

The final norm divides the residual stream by a per-token scale ``s`` and multiplies by a gain
``g`` (RMSNorm: ``x / s * g``; LayerNorm additionally centres ``x`` and adds a bias ``b``).
With ``s`` frozen at its value for the *full* residual stream, the norm is linear in ``x``,
so the logits split exactly over the components of `circuitlab.decomposition.residual`:

    logit_t = sum_j  (center(c_j) / s * g) . W_U[:, t]   +   (b . W_U[:, t] + b_U[t])
              `---------- attribution of c_j ---------'       `----- constant ------'

Everything is computed on the model's own, unmodified weights (never TransformerLens's
compatibility mode, which folds and centres weights in place).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab.decomposition.positions import Positions, position_chunks
from circuitlab.decomposition.residual import (
    DecompositionWeights,
    ResidualDecomposition,
    decompose_batch,
)
from circuitlab.decomposition.results import Attribution
from circuitlab.decomposition.targets import Target, TargetSpec, readout_matrix, resolve_targets
from circuitlab.model import ModelHandle, Prompts
from circuitlab.prefix import SharedPrefix
from circuitlab.tokenization import TokenBatch
from circuitlab.weights import norm_bias, norm_gain, unembedding

__all__ = ["attribute_decomposition", "direct_logit_attribution"]


def attribute_decomposition(
    model: ModelHandle, parts: ResidualDecomposition, targets: list[Target]
) -> tuple[Float[Tensor, "batch component target"], Float[Tensor, "batch target"]]:
    """Attributions of each component and the constant term, for a decomposed batch."""
    final = model.arch.norm("final")
    w_u, b_u = unembedding(model)
    readout = readout_matrix(targets, model.d_vocab, device=w_u.device, dtype=w_u.dtype)
    used = readout.abs().sum(dim=1).nonzero().flatten()
    directions = w_u[:, used] @ readout[used]  # [d_model, target]
    contributions = parts.contributions
    if model.arch.norm_type == "layernorm":
        contributions = contributions - contributions.mean(dim=-1, keepdim=True)
    gain = norm_gain(model, final)
    scaled = contributions * (gain / parts.final_scale[:, None, None])
    values = scaled @ directions
    constant = torch.zeros(len(parts), len(targets), device=values.device, dtype=values.dtype)
    bias = norm_bias(model, final)
    if bias is not None:
        constant = constant + bias @ directions
    if b_u is not None:
        constant = constant + b_u[used] @ readout[used]
    return values, constant


def direct_logit_attribution(
    model: ModelHandle,
    prompts: Prompts,
    targets: TargetSpec,
    *,
    positions: Positions = None,
    batch_size: int = 8,
    progress: bool = False,
) -> Attribution:
    """How much each component writes directly into the logits of the targets.

    Streams the prompts in batches, keeping only the chosen positions; memory stays at
    about one forward pass.

    Args:
        model: the model handle.
        prompts: prompt texts (or a tokenized batch).
        targets: a token (``" Paris"``), a token id, a `LogitDiff`, or a list of these.
        positions: which token to read in each prompt; default each prompt's last real token.
        batch_size: prompts per forward pass.
        progress: show a progress bar.

    Returns:
        An `Attribution` whose ``values`` [batch, component, target] plus ``constant``
        [batch, target] sum to the model's ``logits`` [batch, target].

    Example:
        >>> result = direct_logit_attribution(model, "The capital of France is", " Paris")
        >>> result.top(3)          # the three components that push " Paris" up most
    """
    resolved = resolve_targets(model, targets)
    if isinstance(prompts, TokenBatch):
        batches, texts = [prompts], list(prompts.prompts or ())
        chunks = [positions]
    else:
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        chunks = position_chunks(positions, len(texts), batch_size)
        batches = model.batches(texts, batch_size, progress=progress)
    weights = DecompositionWeights.read(model)
    shared = SharedPrefix(model)
    values, constants, logits, chosen = [], [], [], []
    components = None
    for batch, batch_positions in zip(batches, chunks, strict=False):
        parts = decompose_batch(model, batch, batch_positions, weights, shared)
        batch_values, batch_constant = attribute_decomposition(model, parts, resolved)
        components = parts.components
        values.append(batch_values)
        constants.append(batch_constant)
        logits.append(
            parts.logits
            @ readout_matrix(
                resolved, model.d_vocab, device=parts.logits.device, dtype=parts.logits.dtype
            )
        )
        chosen.append(parts.positions)
    return Attribution(
        values=torch.cat(values).cpu(),
        constant=torch.cat(constants).cpu(),
        logits=torch.cat(logits).cpu(),
        components=components,
        targets=tuple(target.label for target in resolved),
        positions=torch.cat(chosen).cpu(),
        prompts=tuple(texts),
    )
