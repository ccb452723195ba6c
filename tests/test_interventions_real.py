"""Integration: interventions on the embedded real models survive export to plain transformers.

One round trip per intervention kind on each real model (SmolLM2: Llama layout; Gemma 3:
sandwich norms), plus one composed export. Kinds an architecture has no weight for must be
refused with `BakeError` and leave nothing on disk.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab.interventions import (
    Ablate,
    Intervention,
    PruneHeads,
    PruneLayers,
    Scale,
    SteerHead,
    SteerResidual,
)
from circuitlab.interventions.bake import BakeError
from circuitlab.interventions.export import export_hf

pytestmark = pytest.mark.real_model

PROMPTS = ["The capital of France is", "Once upon a time, there was a little"]
REFERENCE = ["The weather today is", "My favourite food is", "The Eiffel Tower is in"]
TOLERANCE = 1e-3  # max |exported - hooked| logit over real tokens (float32, eager attention)
EFFECT = 1e-2  # an intervention must move some logit by more than this

Build = Callable[[circuitlab.ModelHandle], list[Intervention]]

# intervention kinds on the later layers, and the families that have no weight to hold them
# (Gemma 3 normalises each branch before the residual add: no bias there for a constant)
KINDS: dict[str, tuple[Build, set[str]]] = {
    "zero_head": (lambda m: [Ablate(f"L{m.n_layers - 2}H1")], set()),
    "scale_head": (lambda m: [Scale(f"L{m.n_layers - 3}H2", 1.7)], set()),
    "zero_mlp": (lambda m: [Ablate(f"MLP{m.n_layers - 2}")], set()),
    "scale_mlp": (lambda m: [Scale(f"MLP{m.n_layers - 3}", 0.3)], set()),
    "zero_layer": (lambda m: [Ablate(f"L{m.n_layers - 2}")], set()),
    "scale_layer": (lambda m: [Scale(f"L{m.n_layers - 3}", 1.5)], set()),
    "mean_head": (
        lambda m: [Ablate(f"L{m.n_layers - 2}H2", "mean", reference=REFERENCE)],
        set(),
    ),
    "mean_mlp": (
        lambda m: [Ablate(f"MLP{m.n_layers - 2}", "mean", reference=REFERENCE)],
        {"gemma3"},
    ),
    "steer_head": (
        lambda m: [SteerHead(f"L{m.n_layers - 3}H0", torch.linspace(-1, 1, m.d_model))],
        set(),
    ),
    "steer_residual": (
        lambda m: [SteerResidual(m.n_layers - 3, torch.linspace(1, -1, m.d_model))],
        {"gemma3"},
    ),
    "prune_layer": (lambda m: [PruneLayers([m.n_layers - 2])], set()),
    "prune_heads": (
        lambda m: [PruneHeads([f"L{m.n_layers - 2}H0", f"L{m.n_layers - 4}H3"])],
        set(),
    ),
}


_PLAIN_LOGITS: dict[str, torch.Tensor] = {}


def _plain_logits(
    model: circuitlab.ModelHandle, batch: circuitlab.tokenization.TokenBatch
) -> torch.Tensor:
    """The model's own logits on PROMPTS, computed once per model."""
    if model.name not in _PLAIN_LOGITS:
        _PLAIN_LOGITS[model.name] = model.logits(batch)
    return _PLAIN_LOGITS[model.name]


def _reload(folder: Path) -> torch.nn.Module:
    return AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager"
    ).eval()


def _max_real_token_difference(
    reloaded: torch.nn.Module, batch: circuitlab.tokenization.TokenBatch, hooked: torch.Tensor
) -> float:
    with torch.no_grad():
        exported = reloaded(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    mask = batch.attention_mask.bool()
    return float((exported[mask] - hooked[mask]).abs().max())


def _reloaded_difference(
    folder: Path, batch: circuitlab.tokenization.TokenBatch, hooked: torch.Tensor
) -> tuple[float, object]:
    """Reload an export with plain transformers, compare logits, delete the folder (~0.5-1 GB).

    Returns the max |exported - hooked| logit over real tokens, and the reloaded config.
    """
    try:
        reloaded = _reload(folder)
        difference = _max_real_token_difference(reloaded, batch, hooked)
        config = reloaded.config
        del reloaded
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        gc.collect()
    return difference, config


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_round_trips_through_plain_transformers(
    real: circuitlab.ModelHandle, kind: str, tmp_path: Path
) -> None:
    build, unsupported = KINDS[kind]
    interventions = build(real)
    batch = real.tokenize(PROMPTS)
    assert not batch.attention_mask.bool().all()  # right padding is exercised
    plain = _plain_logits(real, batch)
    with real.intervene(*interventions):
        hooked = real.logits(batch)
    effect = float((hooked - plain).abs().max())
    assert effect > EFFECT, f"{kind} barely changes {real.name}'s logits ({effect:.2e})"
    target = tmp_path / "out"
    if real.arch.family in unsupported:
        with pytest.raises(BakeError, match=r"model\.intervene"):
            export_hf(real, interventions, target)
        assert list(tmp_path.iterdir()) == []
        print(f"\n{real.name} {kind}: refused (BakeError), effect {effect:.3g}")
        return
    with (
        pytest.warns(UserWarning, match="zero output columns")
        if kind == "prune_heads"
        else contextlib.nullcontext()
    ):
        export_hf(real, interventions, target)
    difference, config = _reloaded_difference(target, batch, hooked)
    if kind == "prune_layer":
        assert config.num_hidden_layers == real.n_layers - 1
    print(f"\n{real.name} {kind}: max |exported - hooked| = {difference:.3g}, effect {effect:.3g}")
    assert difference <= TOLERANCE, f"{real.name} {kind}: {difference:.3g} > {TOLERANCE}"


def test_every_bakeable_kind_round_trips_through_plain_transformers(
    real: circuitlab.ModelHandle, tmp_path: Path
) -> None:
    last = real.n_layers - 1
    steering = torch.linspace(-0.5, 0.5, real.d_model)
    edits = [
        Ablate(f"L{last}H0"),
        Ablate(f"L{last - 1}H1", "mean", reference=REFERENCE),
        Scale(f"MLP{last}", 0.5),
        Scale(f"L{last - 2}", 1.5),
        SteerHead(f"L{last - 3}H0", steering),
        PruneHeads([f"L{last - 4}H0"]),
        PruneLayers([2, 5]),
    ]
    batch = real.tokenize(PROMPTS)
    plain = _plain_logits(real, batch)
    with real.intervene(*edits):
        hooked = real.logits(batch)
    assert (hooked - plain).abs().max() > 0.1
    with pytest.warns(UserWarning, match="zero output columns"):
        export_hf(real, edits, tmp_path / "edited")
    difference, config = _reloaded_difference(tmp_path / "edited", batch, hooked)
    assert config.num_hidden_layers == real.n_layers - 2
    print(f"\n{real.name} composed: max |exported - hooked| = {difference:.3g}")
    assert difference <= TOLERANCE
    assert torch.equal(real.logits(batch), plain)  # the handle itself is untouched


def test_exports_refuse_resampling_and_position_restricted_edits(
    real: circuitlab.ModelHandle, tmp_path: Path
) -> None:
    last = real.n_layers - 1
    batch = real.tokenize(PROMPTS)
    plain = _plain_logits(real, batch)
    refused = [
        (Ablate(f"L{last - 1}", "resample", reference=REFERENCE, seed=1), "differs per prompt"),
        (Scale(f"MLP{last - 1}", 3.0, positions="last"), "only at some positions"),
    ]
    for number, (edit, message) in enumerate(refused):
        with real.intervene(edit):  # hooks can do what weights cannot
            assert float((real.logits(batch) - plain).abs().max()) > EFFECT
        with pytest.raises(BakeError, match=message):
            export_hf(real, [Scale(f"L{last}H0", 0.5), edit], tmp_path / f"out{number}")
    assert list(tmp_path.iterdir()) == []


def test_heads_pruned_alike_in_every_layer_leave_the_checkpoint(
    real: circuitlab.ModelHandle, tmp_path: Path
) -> None:
    """SmolLM2 (9 heads, 3 groups) loses one head per group; Gemma 3 (4 heads, 1 group) two."""
    gone = [2, 5, 8] if real.n_kv_heads == 3 else [2, 3]
    prune = PruneHeads([f"L{layer}H{head}" for layer in range(real.n_layers) for head in gone])
    batch = real.tokenize(PROMPTS)
    with real.intervene(prune):
        hooked = real.logits(batch)
    assert float((hooked - _plain_logits(real, batch)).abs().max()) > EFFECT
    export_hf(real, prune, tmp_path / "out")  # no warning: the heads are removed
    difference, config = _reloaded_difference(tmp_path / "out", batch, hooked)
    assert config.num_attention_heads == real.n_heads - len(gone)
    assert config.num_key_value_heads == real.n_kv_heads
    print(f"\n{real.name} heads removed: max |exported - hooked| = {difference:.3g}")
    assert difference <= TOLERANCE
