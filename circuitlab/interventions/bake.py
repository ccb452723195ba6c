"""Baking resolved interventions into a clean Hugging Face state dict.

Works on plain tensors keyed by Hugging Face parameter names (never on the bridge-wrapped
modules, and never on TransformerLens-processed weights). Per site, all edits compose into one
affine map ``x -> m * x + c`` that is then written into the weights:

    head z (layer l, head h)   o_proj input columns of h  *= m;  o_proj bias += W_O[h] c
    head output (steering)     o_proj bias += v
    attention write            o_proj weight and bias *= m, bias += c     (Gemma 3: the post-
    MLP write                  down_proj weight and bias *= m, bias += c   norm gain *= m)
    residual after layer l     down_proj bias of layer l += v
    pruned layers              removed; the config's layer count and per-layer lists follow
    pruned heads               removed (q/k/v rows, o_proj columns, the config's head counts)
                               where every layer keeps the same grouped-query layout; zero
                               o_proj columns otherwise
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from circuitlab.components import Head
from circuitlab.errors import CircuitlabError
from circuitlab.interventions.edits import EDITABLE_KINDS, ResolvedInterventions, SiteEdit
from circuitlab.lora import lora_delta
from circuitlab.model import ModelHandle

__all__ = ["BakeError", "BakedModel", "bake"]


class BakeError(CircuitlabError, ValueError):
    """An intervention cannot be written into the weights of this architecture."""


@dataclass(frozen=True)
class _Layout:
    """Where the output projections and branch norms live in a family's state dict.

    The defaults describe the Llama-style decoders (``model.layers.{layer}.self_attn.o_proj``).
    """

    attention_bias_flag: str | None = None  # config flag that gives o_proj a bias
    mlp_bias_flag: str | None = None  # config flag that gives down_proj a bias
    attn_post_norm: str | None = None  # Gemma 3 sandwich norms (gain = 1 + weight)
    mlp_post_norm: str | None = None
    layer_prefix: str = "model.layers.{layer}."
    layer_count_key: str = "num_hidden_layers"
    attention: str = "self_attn"  # the attention module (q/k/v/o_proj), relative to the prefix
    o_proj: str = "self_attn.o_proj"  # relative to the layer prefix, without ".weight"
    down_proj: str = "mlp.down_proj"
    o_transposed: bool = False  # GPT-2's Conv1D stores [in, out]


_LAYOUTS: dict[str, _Layout] = {
    "llama": _Layout(attention_bias_flag="attention_bias", mlp_bias_flag="mlp_bias"),
    "mistral": _Layout(),
    "qwen2": _Layout(),
    "qwen3": _Layout(attention_bias_flag="attention_bias"),
    "gemma3": _Layout(
        attention_bias_flag="attention_bias",
        attn_post_norm="post_attention_layernorm",
        mlp_post_norm="post_feedforward_layernorm",
    ),
    "gpt2": _Layout(  # o_proj and down_proj always carry biases
        layer_prefix="transformer.h.{layer}.",
        layer_count_key="n_layer",
        o_proj="attn.c_proj",
        down_proj="mlp.c_proj",
        o_transposed=True,
    ),
}


@dataclass
class BakedModel:
    """A clean state dict and config with the interventions written in.

    Attributes:
        state: the tensors under their plain Hugging Face names, interventions written in.
        config: the Hugging Face config, edited to match (layer and head counts, biases).
        zeroed_heads: pruned heads kept as zero output columns (they could not be removed).
        removed_heads: pruned heads removed from the weights and the config.
        edited: keys of ``state`` that the interventions were written into.
    """

    state: dict[str, Tensor]
    config: Any
    zeroed_heads: tuple[str, ...]  # pruned heads kept as zero columns (could not be removed)
    removed_heads: tuple[str, ...] = ()  # pruned heads removed from the weights and config
    edited: tuple[str, ...] = ()  # keys of the tensors the interventions were written into


def clean_state_dict(model: ModelHandle) -> dict[str, Tensor]:
    """The HF model's tensors under their plain Hugging Face names, LoRA adapters merged.

    Booting the bridge renames every module path (``._original_component``) and adds aliases;
    the first tensor seen under each plain name is the model's own. Tensors that share storage
    (aliases, tied embeddings) share one copy. A ``peft`` LoRA layer
    contributes ``base weight + delta`` under the base module's name.
    """
    clean: dict[str, Tensor] = {}
    copies: dict[tuple[int, tuple[int, ...], tuple[int, ...], torch.dtype], Tensor] = {}
    for key, value in model.hf_model.state_dict().items():
        plain = key.replace("._original_component", "").replace(".base_layer.", ".")
        if "lora_" in key or plain in clean:
            continue
        # the bridge's aliases share storage: copy each tensor once
        identity = (value.data_ptr(), tuple(value.shape), tuple(value.stride()), value.dtype)
        if identity not in copies:
            copies[identity] = value.detach().clone()
        clean[plain] = copies[identity]
    merged: set[str] = set()
    for name, module in model.hf_model.named_modules(remove_duplicate=False):
        plain = name.replace("._original_component", "") + ".weight"
        delta = lora_delta(module) if plain not in merged else None
        if delta is not None:
            merged.add(plain)
            clean[plain] = clean[plain] + delta.to(clean[plain].dtype)
    return clean


class _Baker:
    def __init__(self, model: ModelHandle, state: dict[str, Tensor], config: Any) -> None:
        family = model.arch.family
        self.layout = _LAYOUTS[family]
        self.model = model
        self.state = state
        self.config = config
        self.d_head = model.d_head
        self.edited: set[str] = set()

    def key(self, layer: int, module: str, tensor: str = "weight") -> str:
        """A tensor's state-dict key; every key asked for is one the baker writes into."""
        key = f"{self.layout.layer_prefix.format(layer=layer)}{module}.{tensor}"
        self.edited.add(key)
        return key

    # --------------------------------------------------------------- biases on demand
    def bias(self, layer: int, which: str, edit: SiteEdit) -> Tensor:
        """The o_proj or down_proj bias of ``layer``, enabling it in the config if needed."""
        layout = self.layout
        module = layout.o_proj if which == "o" else layout.down_proj
        key = self.key(layer, module, "bias")
        if key in self.state:
            return self.state[key]
        flag = layout.attention_bias_flag if which == "o" else layout.mlp_bias_flag
        if flag is None:
            where = "attention output projection" if which == "o" else "MLP down projection"
            raise BakeError(
                f"{edit.source!r} needs a bias on the {where}, which "
                f"{type(self.model.hf_model).__name__} cannot have. It works by hooks "
                f"(model.intervene); to export, use a zero ablation or a scale instead."
            )
        setattr(self.config, flag, True)
        for current in range(self.model.n_layers):  # the flag adds biases to every layer
            self._zero_biases(current, flag)
        return self.state[key]

    def _zero_biases(self, layer: int, flag: str) -> None:
        if flag == "attention_bias":
            modules = [f"self_attn.{name}" for name in ("q_proj", "k_proj", "v_proj", "o_proj")]
        else:
            modules = [f"mlp.{name}" for name in ("gate_proj", "up_proj", "down_proj")]
        for module in modules:
            weight = self.state[self.key(layer, module)]
            self.state.setdefault(
                self.key(layer, module, "bias"), weight.new_zeros(weight.shape[0])
            )

    # ----------------------------------------------------------------------- sites
    def head_z(self, layer: int, head: int, m: float, c: Tensor | None, edit: SiteEdit) -> None:
        weight = self.state[self.key(layer, self.layout.o_proj)]
        span = slice(head * self.d_head, (head + 1) * self.d_head)
        # W_O[h] as a [d_model, d_head] block of the output projection
        block = weight[span, :].T if self.layout.o_transposed else weight[:, span]
        if c is not None:
            shift = block.to(torch.float64) @ c.to(torch.float64)
            bias = self.bias(layer, "o", edit)
            bias += shift.to(bias.dtype)
        block.mul_(m)

    def branch(self, layer: int, which: str, m: float, c: Tensor | None, edit: SiteEdit) -> None:
        post_norm = self.layout.attn_post_norm if which == "o" else self.layout.mlp_post_norm
        if post_norm is not None:
            if c is not None:
                raise BakeError(
                    f"{edit.source!r} sets a constant on a branch that "
                    f"{type(self.model.hf_model).__name__} normalises before the residual add "
                    f"(no bias there to hold it). It works by hooks (model.intervene); to "
                    f"export, ablate the branch's heads instead, or use a zero ablation or scale."
                )
            weight = self.state[self.key(layer, post_norm)]
            offset = self.model.arch.norm_weight_offset
            weight.copy_((weight + offset) * m - offset)
            return
        module = self.layout.o_proj if which == "o" else self.layout.down_proj
        self.state[self.key(layer, module)].mul_(m)
        key = self.key(layer, module, "bias")
        if key in self.state:
            self.state[key].mul_(m)
        if c is not None:
            bias = self.bias(layer, which, edit)
            bias += c.to(bias.dtype)

    def head_out(self, layer: int, vector: Tensor, edit: SiteEdit) -> None:
        bias = self.bias(layer, "o", edit)
        bias += vector.to(bias.dtype)

    def resid_post(self, layer: int, vector: Tensor, edit: SiteEdit) -> None:
        if self.layout.mlp_post_norm is not None:
            raise BakeError(
                f"{edit.source!r}: {type(self.model.hf_model).__name__} has no bias on the "
                f"residual path of a layer to hold a steering vector. It works by hooks "
                f"(model.intervene) only."
            )
        bias = self.bias(layer, "down", edit)
        bias += vector.to(bias.dtype)


def _composed(edits: list[SiteEdit]) -> tuple[float, Tensor | None]:
    """Compose ``x -> m x + c`` maps applied in order into one."""
    multiplier, constant = 1.0, None
    for edit in edits:
        multiplier *= edit.multiplier
        constant = None if constant is None else constant * edit.multiplier
        if edit.constant is not None:
            extra = edit.constant.detach().cpu().to(torch.float64)
            constant = extra if constant is None else constant + extra
    return multiplier, constant


def _refuse_unbakeable(edits: list[SiteEdit]) -> None:
    for edit in edits:
        if edit.resample is not None:
            raise BakeError(
                f"{edit.source!r} cannot be exported: a resampled value differs per prompt, so no "
                f"fixed weights produce it. Use a mean ablation to export."
            )
        if edit.positional is not None:
            raise BakeError(
                f"{edit.source!r} cannot be exported: its value differs per prompt or position "
                f"(a patch, or a position-matched mean), so no fixed weights produce it. Use a "
                f"mean ablation over all tokens to export."
            )
        if edit.positions is not None:
            raise BakeError(
                f"{edit.source!r} cannot be exported: it applies only at some positions, but "
                f"weights act on every position. Drop positions= to export it."
            )


def bake(model: ModelHandle, resolved: ResolvedInterventions, config: Any) -> BakedModel:
    """Write ``resolved`` into a copy of ``model``'s weights; ``config`` is edited in place.

    Args:
        model: the model handle whose weights are copied (they are not changed).
        resolved: the interventions, resolved against ``model``.
        config: a copy of the model's Hugging Face config; edited in place to match the
            baked weights (layer and head counts, enabled biases).

    Returns:
        The baked state dict and config, and which heads were removed or zeroed.
    """
    _refuse_unbakeable(resolved.edits)
    state = clean_state_dict(model)
    baker = _Baker(model, state, config)
    pruned = set(resolved.pruned_layers)
    groups: dict[tuple[str, int, int | None], list[SiteEdit]] = {}
    for edit in resolved.edits:
        if edit.layer not in pruned:
            groups.setdefault((edit.site.kind, edit.layer, edit.head), []).append(edit)
    # site order within a layer follows the forward pass
    order = {kind: rank for rank, kind in enumerate(EDITABLE_KINDS)}
    for kind, layer, head in sorted(groups, key=lambda k: (k[1], order[k[0]], k[2] or 0)):
        edits = groups[(kind, layer, head)]
        multiplier, constant = _composed(edits)
        with torch.no_grad():
            if kind == "z":
                baker.head_z(layer, head or 0, multiplier, constant, edits[-1])
            elif kind == "o_out":
                baker.head_out(layer, constant, edits[-1])
            elif kind == "attn_out":
                baker.branch(layer, "o", multiplier, constant, edits[-1])
            elif kind == "mlp_out":
                baker.branch(layer, "down", multiplier, constant, edits[-1])
            else:
                baker.resid_post(layer, constant, edits[-1])
    heads = tuple(head for head in resolved.pruned_heads if head.layer not in pruned)
    zeroed: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    if heads:
        plan = _head_removal_plan(model, heads, pruned, config)
        if isinstance(plan, str):
            zeroed = tuple(str(head) for head in heads)
            warnings.warn(
                f"Pruned heads {', '.join(zeroed)} are kept as zero output columns: {plan}. "
                f"The exported model computes exactly the pruned model.",
                stacklevel=3,
            )
        else:
            _remove_heads(state, baker.layout, plan, model.d_head, config)
            removed = tuple(str(head) for head in heads)
    if pruned:
        state = _drop_layers(state, baker.layout, model.n_layers, pruned)
        _shrink_config(config, baker.layout, model.n_layers, pruned)
    return BakedModel(state, config, zeroed, removed, tuple(sorted(baker.edited)))


def _head_removal_plan(
    model: ModelHandle, heads: tuple[Head, ...], pruned_layers: set[int], config: Any
) -> dict[int, tuple[list[int], list[int]]] | str:
    """Per kept layer, the query and key/value heads that stay; or why heads cannot go.

    Heads can be removed when every layer keeps the same number of query heads and key/value
    heads (a config has one count for all layers) and, under grouped-query attention, every
    remaining key/value group keeps the same number of query heads (a group whose query heads
    are all pruned loses its key/value head too).
    """
    if model.arch.family == "gpt2":
        return "GPT-2's head size is n_embd / n_head, so its config cannot have fewer heads"
    group = model.n_heads // model.n_kv_heads
    plans: dict[int, tuple[list[int], list[int]]] = {}
    for layer in range(model.n_layers):
        if layer in pruned_layers:
            continue
        gone = {head.head for head in heads if head.layer == layer}
        kept = [head for head in range(model.n_heads) if head not in gone]
        counts = [sum(1 for head in kept if head // group == kv) for kv in range(model.n_kv_heads)]
        if len({count for count in counts if count}) != 1:
            return (
                f"layer {layer} would keep {counts} query heads in its key/value groups; "
                f"grouped-query attention needs the same number in every remaining group"
                if kept
                else f"layer {layer} would keep no head (prune the layer instead)"
            )
        plans[layer] = (kept, [kv for kv, count in enumerate(counts) if count])
    d_head = model.d_head
    shapes = sorted({(len(q), len(kv)) for q, kv in plans.values()})
    if len(shapes) > 1:
        return (
            f"the layers would keep different numbers of (query, key/value) heads {shapes}, but "
            f"a Hugging Face config gives every layer the same head counts; prune heads alike "
            f"in every layer to remove them"
        )
    n_query, n_kv = shapes[0]
    trial = copy.deepcopy(config)
    trial.num_attention_heads, trial.num_key_value_heads, trial.head_dim = n_query, n_kv, d_head
    try:
        if hasattr(trial, "validate"):
            trial.validate()
    except Exception as error:  # the config class's own rules, e.g. hidden_size % heads
        reason = getattr(error, "__cause__", None) or error
        return f"{type(config).__name__} refuses {n_query} heads ({str(reason).rstrip('.')})"
    return plans


def _remove_heads(
    state: dict[str, Tensor],
    layout: _Layout,
    plans: dict[int, tuple[list[int], list[int]]],
    d_head: int,
    config: Any,
) -> None:
    """Drop pruned heads' rows of q/k/v and columns of o_proj; the config's counts follow."""

    def rows(heads: list[int]) -> Tensor:
        return torch.cat([torch.arange(h * d_head, (h + 1) * d_head) for h in heads])

    for layer, (kept_q, kept_kv) in plans.items():
        prefix = layout.layer_prefix.format(layer=layer) + layout.attention
        for module, index in (("q_proj", kept_q), ("k_proj", kept_kv), ("v_proj", kept_kv)):
            for tensor in ("weight", "bias"):
                key = f"{prefix}.{module}.{tensor}"
                if key in state:
                    state[key] = state[key][rows(index)].clone()
        key = f"{prefix}.o_proj.weight"
        state[key] = state[key][:, rows(kept_q)].clone()
    kept_q, kept_kv = next(iter(plans.values()))
    config.num_attention_heads = len(kept_q)
    config.num_key_value_heads = len(kept_kv)
    config.head_dim = d_head  # otherwise derived from hidden_size / heads


def _drop_layers(
    state: dict[str, Tensor], layout: _Layout, n_layers: int, pruned: set[int]
) -> dict[str, Tensor]:
    kept = [layer for layer in range(n_layers) if layer not in pruned]
    renamed = {
        layout.layer_prefix.format(layer=old): layout.layer_prefix.format(layer=new)
        for new, old in enumerate(kept)
    }
    prefixes = {layout.layer_prefix.format(layer=layer) for layer in range(n_layers)}
    result: dict[str, Tensor] = {}
    for key, value in state.items():
        prefix = next((p for p in prefixes if key.startswith(p)), None)
        if prefix is None:
            result[key] = value
        elif prefix in renamed:
            result[renamed[prefix] + key[len(prefix) :]] = value
    return result


def _shrink_config(config: Any, layout: _Layout, n_layers: int, pruned: set[int]) -> None:
    """New layer count; every per-layer list in the config (``layer_types``...) loses entries."""
    kept = [layer for layer in range(n_layers) if layer not in pruned]
    for name, value in list(vars(config).items()):
        if isinstance(value, (list, tuple)) and len(value) == n_layers and name != "architectures":
            setattr(config, name, type(value)(value[layer] for layer in kept))
    setattr(config, layout.layer_count_key, len(kept))
    if getattr(config, "max_window_layers", None) is not None:
        config.max_window_layers = min(config.max_window_layers, len(kept))
