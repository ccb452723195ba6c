"""Keyed checkpoints: steps stored as they finish; both studies resume after ``kill -9``."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from circuitlab import InputError, PruningStudy, ReweightingStudy
from circuitlab.checkpoints import CheckpointStore
from circuitlab.evaluation import EvaluationSuite
from circuitlab.layers import drop_last_scores, pruning_study, random_scores
from circuitlab.reweighting.study import reweighting_study
from circuitlab.testing import tiny_model

TESTS = Path(__file__).resolve().parent
SCOPE = {"model_fingerprint": "abc", "suite": {"tasks": ["qa"]}}


def test_steps_are_stored_as_they_finish_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "steps.json"
    store = CheckpointStore(path, kind="demo", scope=SCOPE)
    calls: list[int] = []
    value = store.compute({"layers": (1, 2)}, lambda: calls.append(1) or {"x": (1.5, 2)})
    assert value == {"x": [1.5, 2]}  # handed back as JSON reads it, fresh or resumed
    assert store.compute({"layers": [1, 2]}, lambda: calls.append(1)) == value and calls == [1]
    resumed = CheckpointStore(path, kind="demo", scope=dict(reversed(SCOPE.items())))
    assert len(resumed) == 1 and resumed.get({"layers": [1, 2]}) == value
    assert resumed.seconds({"layers": [1, 2]}) >= 0
    assert {"layers": [2]} not in resumed
    memory = CheckpointStore(None, kind="demo", scope=SCOPE)
    memory.put({"a": 1}, 3.0)
    assert memory.get({"a": 1}) == 3.0 and not list(tmp_path.glob("*.tmp*"))


def test_a_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "steps.json"
    CheckpointStore(path, kind="demo", scope=SCOPE).put({"a": 1}, 1)
    with pytest.raises(InputError, match=r"another model or suite/data set.*model_fingerprint"):
        CheckpointStore(path, kind="demo", scope={**SCOPE, "model_fingerprint": "xyz"})
    with pytest.raises(InputError, match="belongs to a 'demo' run, not 'other'"):
        CheckpointStore(path, kind="other", scope=SCOPE)
    (tmp_path / "plain.json").write_text(json.dumps({"evaluations": {}}))
    with pytest.raises(InputError, match="not a circuitlab checkpoint"):
        CheckpointStore(tmp_path / "plain.json", kind="demo", scope=SCOPE)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="not valid JSON"):
        CheckpointStore(tmp_path / "broken.json", kind="demo", scope=SCOPE)


# ------------------------------------------------------------------ kill -9 and resume
_KILLER = """
import os, signal, sys
sys.path.insert(0, {tests!r})
from circuitlab.checkpoints import CheckpointStore

put = CheckpointStore.put

def put_then_die(self, key, value, **kwargs):
    if len(self) == {after}:  # this step finished, but the process dies before storing it
        os.kill(os.getpid(), signal.SIGKILL)
    return put(self, key, value, **kwargs)

CheckpointStore.put = put_then_die
"""

_PRUNING = """
from circuitlab.evaluation import EvaluationSuite
from circuitlab.layers import drop_last_scores, pruning_study, random_scores
from circuitlab.testing import tiny_model
suite = EvaluationSuite(
    qa_questions=6, perplexity_tokens=60, sentiment_examples=10, k_shot=2, window=32
)
pruning_study(tiny_model("llama"), [drop_last_scores(2), random_scores(2, seed=1)],
              percents=[25, 40], suite=suite, checkpoint={checkpoint!r})
"""

_REWEIGHTING = """
from test_reweighting import tiny_task
from circuitlab.reweighting.study import reweighting_study
from circuitlab.testing import tiny_model
reweighting_study(tiny_model("llama"), tiny_task(n_per_class=20), ks=(6, 8), n_demos=2,
                  n_demo_sets=2, templates=(0, 1), n_test=8, checkpoint={checkpoint!r})
"""


def _run_and_kill(script: str, checkpoint: Path, after: int) -> None:
    code = textwrap.dedent(_KILLER.format(tests=str(TESTS), after=after))
    code += textwrap.dedent(script.format(checkpoint=str(checkpoint)))
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert finished.returncode == -signal.SIGKILL, finished.stderr
    assert len(json.loads(checkpoint.read_text())["entries"]) == after


def _counting_puts(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    computed: list[int] = []
    put = CheckpointStore.put

    def counting(self: CheckpointStore, key: dict, value: object, **kwargs: object) -> object:
        computed.append(1)
        return put(self, key, value, **kwargs)

    monkeypatch.setattr(CheckpointStore, "put", counting)
    return computed


def test_the_pruning_study_resumes_after_kill_9(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tmp_path / "evaluations.json"
    _run_and_kill(_PRUNING, checkpoint, after=1)
    suite = EvaluationSuite(
        qa_questions=6, perplexity_tokens=60, sentiment_examples=10, k_shot=2, window=32
    )
    model = tiny_model("llama")
    rankings = [drop_last_scores(2), random_scores(2, seed=1)]
    computed = _counting_puts(monkeypatch)
    resumed = pruning_study(model, rankings, percents=[25, 40], suite=suite, checkpoint=checkpoint)
    assert len(computed) == 2  # 3 evaluations in all, 1 survived the kill
    whole = pruning_study(model, rankings, percents=[25, 40], suite=suite)
    assert resumed.rows == whole.rows and resumed.original == whole.original
    assert resumed.evaluations == whole.evaluations == 3
    assert isinstance(PruningStudy.load(resumed.save(tmp_path / "s.json")), PruningStudy)


def test_the_reweighting_study_resumes_after_kill_9(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sys.path.insert(0, str(TESTS))
    from test_reweighting import tiny_task

    checkpoint = tmp_path / "runs.json"
    _run_and_kill(_REWEIGHTING, checkpoint, after=2)
    options = {"ks": (6, 8), "n_demos": 2, "n_demo_sets": 2, "templates": (0, 1), "n_test": 8}
    model, task = tiny_model("llama"), tiny_task(n_per_class=20)
    computed = _counting_puts(monkeypatch)
    resumed = reweighting_study(model, task, checkpoint=checkpoint, **options)
    assert len(computed) == 2  # 4 runs in all, 2 survived the kill
    whole = reweighting_study(model, task, **options)
    assert json.dumps(resumed.to_document()) == json.dumps(whole.to_document())
    # more demonstration sets reuse the finished runs
    computed.clear()
    more = reweighting_study(model, task, checkpoint=checkpoint, **{**options, "n_demo_sets": 3})
    assert len(computed) == 2 and more.records[: len(whole.records)] == whole.records
    assert isinstance(ReweightingStudy.load(more.save(tmp_path / "s.json")), ReweightingStudy)
