"""Interventions as YAML/JSON specs: exact round trips, file references, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from circuitlab import InputError
from circuitlab.interventions import (
    Ablate,
    Intervention,
    PruneHeads,
    PruneLayers,
    Scale,
    SteerHead,
    SteerResidual,
    export_hf,
)
from circuitlab.interventions.serialize import (
    from_spec,
    load_interventions,
    save_interventions,
    to_spec,
)
from circuitlab.testing import tiny_model

PROMPTS = ["the cat sat on the mat", "a dog ."]


def _every_kind() -> list[Intervention]:
    mask = torch.tensor([[True, False, True], [False, False, True]])
    return [
        Ablate("L0H1"),
        Ablate("MLP1", "mean", reference=["a cat", "the dog"], positions="last"),
        Ablate("L1", "resample", reference=["a cat"], seed=4, positions=-2),
        Scale("L1H2", 1.25, positions=mask),
        SteerHead("L1H0", torch.randn(64, generator=torch.Generator().manual_seed(0))),
        SteerResidual(0, torch.linspace(-1, 1, 64), positions=2),
        PruneLayers([1]),
        PruneHeads(["L0H0", "L1H3"]),
    ]


def _same(a: Intervention, b: Intervention) -> bool:
    if type(a) is not type(b):
        return False
    for name in vars(a):
        left, right = getattr(a, name), getattr(b, name)
        if isinstance(left, torch.Tensor):
            if not (isinstance(right, torch.Tensor) and torch.equal(left, right)):
                return False
        elif left != right:
            return False
    return True


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_every_kind_survives_a_file_round_trip_exactly(tmp_path: Path, suffix: str) -> None:
    items = _every_kind()
    path = save_interventions(items, tmp_path / f"spec{suffix}", model="tiny")
    spec = load_interventions(path)
    assert spec.model == "tiny"
    assert len(spec.interventions) == len(items)
    assert all(_same(a, b) for a, b in zip(items, spec.interventions, strict=True))
    if suffix == ".json":
        json.loads(path.read_text())  # plain JSON


def test_defaults_are_left_out_of_the_spec() -> None:
    assert to_spec([Ablate("L0H1"), Scale("MLP3", 2)]) == [
        {"kind": "ablate", "component": "L0H1"},
        {"kind": "scale", "component": "MLP3", "factor": 2.0},
    ]


def test_files_are_read_relative_to_the_spec(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    folder.mkdir()
    (folder / "prompts.txt").write_text("the cat\n\n  a dog  \n")
    vector = torch.linspace(0, 1, 64)
    save_file({"direction": vector, "other": torch.zeros(3)}, folder / "vectors.safetensors")
    save_file({"only": -vector}, folder / "one.safetensors")
    (folder / "spec.yaml").write_text(
        "interventions:\n"
        "  - {kind: ablate, component: MLP0, method: mean, reference: {file: prompts.txt}}\n"
        "  - kind: steer_head\n"
        "    head: L0H1\n"
        "    vector: {file: vectors.safetensors, key: direction}\n"
        "  - {kind: steer_residual, layer: 1, vector: {file: one.safetensors}}\n"
    )
    mean, steer, residual = load_interventions(folder / "spec.yaml").interventions
    assert mean.reference == ("the cat", "a dog")
    assert torch.equal(steer.vector, vector) and torch.equal(residual.vector, -vector)


def test_the_export_record_is_a_spec_that_repeats_the_export(tmp_path: Path) -> None:
    model = tiny_model("llama")
    items = [Ablate("L0H1", "mean", reference=["a cat"]), SteerHead("L1H2", torch.ones(64))]
    export_hf(model, items, tmp_path / "first")
    spec = load_interventions(tmp_path / "first" / "circuitlab_export.json")
    assert spec.model == model.name
    assert all(_same(a, b) for a, b in zip(items, spec.interventions, strict=True))
    export_hf(model, list(spec.interventions), tmp_path / "second")
    first = (tmp_path / "first" / "model.safetensors").read_bytes()
    assert first == (tmp_path / "second" / "model.safetensors").read_bytes()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is empty"),
        ("interventions: [", "not valid YAML"),
        ("[]", "lists no interventions"),
        ("{model: x}", "mapping with 'interventions'"),
        ("[{kind: zap, component: L0H1}]", "unknown kind 'zap'"),
        ("[{component: L0H1}]", "unknown kind None"),
        ("[L0H1]", "must be a mapping"),
        ("[{kind: ablate, component: L0H1, factor: 2}]", r"unknown field\(s\) \['factor'\]"),
        ("[{kind: scale, component: L0H1}]", "Intervention 1 \\(scale\\).*factor"),
        ("[{kind: ablate, component: L0H1}, {kind: ablate, component: Q}]", "Intervention 2"),
        ("[{kind: steer_head, head: L0H0, vector: [a, b]}]", "list of numbers"),
        ("[{kind: steer_head, head: L0H0, vector: {file: none.safetensors}}]", "does not exist"),
        ("[{kind: ablate, component: L0, method: mean, reference: {path: x}}]", "file reference"),
        ("[{kind: ablate, component: L0, method: mean, reference: []}]", "non-empty list"),
    ],
)
def test_bad_specs_name_the_entry_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_interventions(path)


def test_a_missing_spec_file_and_a_bad_vector_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_interventions(tmp_path / "nope.yaml")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    spec = [{"kind": "steer_residual", "layer": 0, "vector": {"file": "bad.safetensors"}}]
    with pytest.raises(InputError, match="cannot read"):
        from_spec(spec, base_dir=tmp_path)
    save_file({"a": torch.ones(2), "b": torch.ones(2)}, tmp_path / "two.safetensors")
    spec = [{"kind": "steer_residual", "layer": 0, "vector": {"file": "two.safetensors"}}]
    with pytest.raises(InputError, match="name one with key"):
        from_spec(spec, base_dir=tmp_path)
