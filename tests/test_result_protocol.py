"""One protocol for every result class: save -> load -> equal, tables, figures, reprs, headers.

The list below must name every class deriving from `circuitlab.results.Result`; a new result
class fails `test_every_result_class_is_covered` until it is added here.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
from matplotlib.figure import Figure

import circuitlab
from circuitlab import InputError
from circuitlab.attention import attention_pattern, head_summary
from circuitlab.consistency.answers import ParaphraseAnswers
from circuitlab.consistency.heads import locate_consistency_heads
from circuitlab.consistency.sweep import consistency_sweep
from circuitlab.evaluation import EvaluationSuite
from circuitlab.hallucination import hallucination_scores
from circuitlab.ila import ila_rank, ranking_overlap
from circuitlab.layers import LayerScores, drop_last_scores, pruning_study, score_layers
from circuitlab.lens import logit_lens
from circuitlab.patching import PromptPair, activation_patching, attribution_patching
from circuitlab.results import _KINDS, Result, read_header
from circuitlab.reweighting.study import reweighting_study
from circuitlab.testing import tiny_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_consistency import tiny_paraphrase_task
from test_hallucination import tiny_answers
from test_ila import PAIRS as ILA_PAIRS
from test_reweighting import tiny_task

DATA = Path(__file__).resolve().parent.parent / "docs" / "reproductions" / "data"
PROMPTS = ["the capital of france is", "the cat sat on the"]
PATCH_PAIRS = [PromptPair("the cat sat on the", "the dog sat on the", "mat", "rug")]
TINY_SUITE = EvaluationSuite(
    qa_questions=4, perplexity_tokens=40, sentiment_examples=6, k_shot=2, window=32
)


def _build() -> dict[str, Callable[[circuitlab.ModelHandle], Result]]:
    task = tiny_task(n_per_class=10)
    return {
        "Attribution": lambda m: circuitlab.direct_logit_attribution(m, PROMPTS, " paris"),
        "ComponentAccuracy": lambda m: circuitlab.component_accuracy(m, task),
        "AblationEffects": lambda m: circuitlab.ablation_study(
            m, PROMPTS[0], " paris", components=["mlps", "heads"]
        ),
        "ResidualDecomposition": lambda m: circuitlab.decompose_residual(m, PROMPTS),
        "LabelContributions": lambda m: circuitlab.label_contributions(m, task),
        "ReweightingStudy": lambda m: reweighting_study(
            m, tiny_task(n_per_class=20), ks=(6,), n_demos=2, n_demo_sets=1, templates=(0,),
            n_test=8, run_icl_all=False,
        ),
        "LayerScores": lambda m: score_layers(m, PROMPTS * 3, ["avss"])["avss"],
        "ParaphraseAnswers": lambda m: ParaphraseAnswers(
            logits=torch.randn(3, 2, 2), labels=torch.tensor([0, 1, 1]), paraphrases=(0, 4),
            label_words=(" no", " yes"), task="toy", model=m.name, settings={"batch_size": 8},
        ),
        "ConsistencyHeads": lambda m: locate_consistency_heads(m, tiny_paraphrase_task()),
        "ConsistencySweep": lambda m: consistency_sweep(
            m, tiny_paraphrase_task(), locate_consistency_heads(m, tiny_paraphrase_task()),
            alphas=(2,), ks=(1,), control_seeds=(0,),
        ),
        "HallucinationScores": lambda m: hallucination_scores(m, tiny_answers()),
        "ILARanking": lambda m: ila_rank(m, ILA_PAIRS, max_steps=3, gate_steps=2, unit="matrix"),
        "RankingOverlap": lambda m: ranking_overlap(
            {"a": LayerScores("ila", (0.9, 0.1)), "b": LayerScores("ila", (0.2, 0.8))}
        ),
        "LogitLens": lambda m: logit_lens(m, PROMPTS, " paris", positions="all"),
        "AttentionPattern": lambda m: attention_pattern(m, PROMPTS[1], ["L0H1", "L1H3"]),
        "HeadSummary": lambda m: head_summary(m, PROMPTS, sequences=2, length=5),
        "PatchingMap": lambda m: activation_patching(m, PATCH_PAIRS, site="resid_pre"),
        "AttributionPatching": lambda m: attribution_patching(m, PATCH_PAIRS, exact=True),
        "PruningStudy": lambda m: pruning_study(
            m, [drop_last_scores(2)], percents=[40], suite=TINY_SUITE, ground_truth=False
        ),
    }  # fmt: skip


BUILDERS = _build()


def _equal(a: object, b: object) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and all(
            _equal(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a)
        )
    if isinstance(a, (list, tuple)):
        return (
            type(a) is type(b) and len(a) == len(b) and all(map(_equal, a, b))  # type: ignore[arg-type]
        )
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


def test_every_result_class_is_covered() -> None:
    for name in BUILDERS:
        if name in circuitlab.__all__:
            getattr(circuitlab, name)  # imports every top-level result module
    assert set(_KINDS) == set(BUILDERS)


@pytest.fixture(scope="module")
def results() -> dict[str, Result]:
    model = tiny_model("llama")
    return {name: build(model) for name, build in BUILDERS.items()}


@pytest.mark.parametrize("kind", list(BUILDERS))
@pytest.mark.parametrize("suffix", [".safetensors", ".json"])
def test_save_load_equal(
    results: dict[str, Result], kind: str, suffix: str, tmp_path: Path
) -> None:
    result = results[kind]
    path = result.save(tmp_path / f"result{suffix}")
    loaded = type(result).load(path)
    assert _equal(loaded, result)
    header = read_header(path)
    assert header["kind"] == kind and header["format"] == "circuitlab-result"
    assert set(header["versions"]) >= {"circuitlab", "torch", "transformers", "peft"}
    other = next(cls for name, cls in _KINDS.items() if name != kind)
    with pytest.raises(InputError, match=f"does not hold a circuitlab {other.kind}"):
        other.load(path)


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_tables_figures_and_reprs(results: dict[str, Result], kind: str) -> None:
    result = results[kind]
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) > 0
    assert isinstance(result.plot(), Figure)
    text = repr(result)
    assert "\n" not in text and len(text) < 300 and text.startswith(kind)
    assert "<table" in result._repr_html_()


def test_headers_record_where_a_result_came_from(results: dict[str, Result], tmp_path) -> None:
    contributions = results["LabelContributions"]
    header = read_header(contributions.save(tmp_path / "c.safetensors"))
    assert header["model"] == "tiny-llama"
    assert header["model_fingerprint"] == contributions.fingerprint
    study = read_header(results["ReweightingStudy"].save(tmp_path / "s.json"))
    assert study["seed"] == 0


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="No result file"):
        read_header(tmp_path / "missing.json")
    (tmp_path / "junk.bin").write_bytes(b"\x00\x01 not a result")
    with pytest.raises(InputError, match="not a readable safetensors or JSON file"):
        circuitlab.LayerScores.load(tmp_path / "junk.bin")


@pytest.mark.parametrize(
    ("cls", "pattern"),
    [(circuitlab.PruningStudy, "avss-*.json"), (circuitlab.ReweightingStudy, "reweighting-*.json")],
)
def test_files_written_before_the_protocol_still_load(cls: type[Result], pattern: str) -> None:
    paths = sorted(DATA.glob(pattern))
    assert paths
    loaded = cls.load(paths[0])
    assert isinstance(loaded, cls) and len(loaded.to_frame()) > 0
