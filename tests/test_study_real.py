"""A shipped example study on the real default model reproduces its docs table's numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from circuitlab.study import load_study, run_study

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "reproductions" / "data" / "avss-smollm2-135m-instruct.json"


@pytest.mark.real_model
def test_the_avss_example_scores_the_layers_as_the_reproduction_table(tmp_path: Path) -> None:
    """The first step of studies/avss-smollm2.yaml (the layer scores behind every ranking of
    docs/reproductions/avss.md), cut from the study and run as a study of its own."""
    document = yaml.safe_load((ROOT / "studies" / "avss-smollm2.yaml").read_text())
    document["steps"] = document["steps"][:1]
    path = tmp_path / "avss-scores.yaml"
    path.write_text(yaml.safe_dump(document))
    out = tmp_path / "out"
    assert [o.status for o in run_study(load_study(path, out=out))] == ["ran"]
    results = json.loads((out / "scores" / "out" / "layer_scores.json").read_text())["results"]
    table = json.loads(TABLE.read_text())["scores"]
    for method in ("avss", "block_influence", "angular_distance", "drop_last"):
        measured = torch.tensor(results[method]["fields"]["values"]["__tuple__"])
        expected = torch.tensor(table[method]["values"])
        torch.testing.assert_close(measured, expected, rtol=1e-3, atol=1e-5)
