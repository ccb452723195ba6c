"""The README's main job end to end: `circuitlab report` on the embedded default model.

One run of the real console script with no arguments but the folder; its page is rendered in
headless Chromium and its numbers are checked against a fresh computation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from report_browser import check_in_browser

import circuitlab
from circuitlab.decomposition import Attribution, direct_logit_attribution
from circuitlab.report import DEFAULT_PROMPTS, read_results

pytestmark = pytest.mark.real_model


@pytest.fixture(scope="module")
def default_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    folder = tmp_path_factory.mktemp("report") / "circuitlab-report"
    environment = {**os.environ, "CIRCUITLAB_PROGRESS": "1"}
    finished = subprocess.run(
        [sys.executable, "-m", "circuitlab", "report", "--out", str(folder)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=1200,
        check=False,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "report 6/6: hallucination" in finished.stderr  # a progress bar per stage
    return folder, finished.stdout


def test_the_default_report_runs_every_section(default_report: tuple[Path, str]) -> None:
    folder, printed = default_report
    assert "circuitlab report on smollm2-135m-instruct" in printed
    assert f"Report: {(folder / 'index.html').resolve()}" in printed
    document = json.loads((folder / "results.json").read_text())
    sections = document["sections"]
    assert list(sections) == [
        "decomposition",
        "component_accuracy",
        "layers",
        "patching",
        "consistency",
        "hallucination",
    ]
    assert all(section["skipped"] is None for section in sections.values())
    for stage in [*sections, "loading the model", "writing", "total"]:
        assert f"{stage:<20}" in printed  # the time per stage is printed


def test_its_numbers_match_a_fresh_computation(
    default_report: tuple[Path, str], smollm2: circuitlab.ModelHandle
) -> None:
    folder, _ = default_report
    results = read_results(folder)
    first = results["decomposition"]["first_prompt"]
    assert isinstance(first, Attribution)
    assert first.targets == ("' Paris'",)
    assert str(first.top(1)[0][0]) == "MLP29"
    fresh = direct_logit_attribution(smollm2, DEFAULT_PROMPTS[0], " Paris")
    torch.testing.assert_close(first.values, fresh.values, atol=1e-4, rtol=1e-4)
    assert results["decomposition"]["attribution"].reconstruction_error() < 1e-4
    layers = results["layers"]
    assert {scores.n_layers for scores in layers.values()} == {smollm2.n_layers}
    patching = results["patching"]["patching_map"]
    assert patching.mean().shape == (smollm2.n_layers, 9)
    assert patching.mean()[0].abs().max() > 0.5  # layer 0: the swapped landmark carries it
    heads = results["consistency"]["consistency_heads"]
    assert heads.accuracy.shape == (smollm2.n_layers, smollm2.n_heads)
    assert results["hallucination"]["hallucination_scores"].n_layers == smollm2.n_layers


def test_the_default_report_renders_in_a_real_browser(default_report: tuple[Path, str]) -> None:
    folder, _ = default_report
    shots = check_in_browser(folder)
    assert {path.name for path in shots.values()} <= {p.name for p in folder.iterdir()}
