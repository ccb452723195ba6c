"""The model's own, unmodified weights that the decomposition needs, in TransformerLens layout.

Nothing here folds, centres or rewrites weights (TransformerLens's compatibility mode does that
in place); everything is read from the Hugging Face modules under the bridge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import einops
import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab.lora import lora_delta

if TYPE_CHECKING:
    from circuitlab.architecture import NormSite
    from circuitlab.model import ModelHandle

__all__ = ["norm_bias", "norm_gain", "output_projection", "unembedding"]


def _norm_module(model: ModelHandle, site: NormSite, layer: int | None) -> torch.nn.Module:
    owner = model.bridge if not site.per_layer else model.bridge.blocks[layer]
    module = owner
    for part in site.name.split("."):
        module = getattr(module, part)
    return module.original_component


def norm_gain(model: ModelHandle, site: NormSite, layer: int | None = None) -> Float[Tensor, " d"]:
    """The factor the norm multiplies by after dividing by its scale: ``offset + weight``.

    Gemma's RMSNorm multiplies by ``1 + weight``; a norm without a weight multiplies by one.
    """
    module = _norm_module(model, site, layer)
    weight = getattr(module, "weight", None)
    if weight is None:
        width = model.d_model if site.placement not in ("query", "key") else model.d_head
        return torch.ones(width, device=model.device, dtype=model.dtype)
    return weight.detach() + model.arch.norm_weight_offset


def norm_bias(
    model: ModelHandle, site: NormSite, layer: int | None = None
) -> Float[Tensor, " d"] | None:
    """The norm's additive bias (LayerNorm), or ``None``."""
    bias = getattr(_norm_module(model, site, layer), "bias", None)
    return None if bias is None else bias.detach()


def output_projection(
    model: ModelHandle, layer: int
) -> tuple[Float[Tensor, "head_index d_head d_model"], Float[Tensor, " d_model"] | None]:
    """One layer's attention output projection ``W_O`` and its bias (``None`` if it has none).

    ``W_O`` is a view of the Hugging Face weight (no copy), so reading every layer's costs no
    memory. An unmerged ``peft`` LoRA adapter on the projection is included (``W + scale·BA``,
    a new tensor), so the per-head split matches what the adapted model computes.
    """
    attention = model.bridge.blocks[layer].attn
    projection = attention.o.original_component
    delta = lora_delta(projection)
    if delta is not None:
        # the bridge's W_O misreads a peft-wrapped projection's layout: build it here
        weight = projection.get_base_layer().weight.detach()  # [d_model, head * d_head]
        weight = weight + delta.to(weight.dtype)
        w_o = einops.rearrange(weight, "m (h d) -> h d m", h=model.n_heads)
    else:
        w_o = attention.W_O.detach()
    b_o = getattr(attention, "b_O", None)
    return w_o, None if b_o is None else b_o.detach()


def unembedding(
    model: ModelHandle,
) -> tuple[Float[Tensor, "d_model d_vocab"], Float[Tensor, " d_vocab"] | None]:
    """The unembedding ``W_U`` (``lm_head.weight`` transposed) and its bias, if any."""
    head = model.hf_model.get_output_embeddings()
    bias = getattr(head, "bias", None)
    return head.weight.detach().T, None if bias is None else bias.detach()
