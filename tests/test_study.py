"""`circuitlab study`: study files checked against the CLI, runs in folders with manifests,
reruns that skip what finished, and a run killed with SIGKILL that resumes to the same results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torchrun import torchrun

import circuitlab.loading
from circuitlab.errors import InputError, OutputPathError
from circuitlab.study import MANIFEST, load_study, run_study

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "studies").glob("*.yaml"))
PROMPTS = ["the capital of france is", "the cat sat on the"]


def _study(folder: Path, text: str, name: str = "study.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _tiny_study(model: Path, *, extra: str = "", seed: int = 0) -> str:
    """Three cheap steps on the tiny model (one swept), no figures."""
    return f"""
study: tiny
model: {model}
seed: {seed}
data:
  texts: texts.txt
steps:
  - command: decompose
    params: {{prompt: {PROMPTS}, target: [paris], plot: false}}
  - name: scores
    command: layer-scores
    params: {{data: {{data: texts}}, window: 8, methods: [avss, random]}}
  - name: lens
    command: logit-lens
    params: {{prompt: [the capital of france is], target: [paris], plot: false}}
    sweep: {{k: [2, 3]}}
{extra}"""


@pytest.fixture
def texts(tmp_path: Path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("the cat sat on the mat . paris is the capital of france . a good film .\n")
    return path


# ----------------------------------------------------------------------- the file format
@pytest.mark.parametrize("example", EXAMPLES, ids=[path.stem for path in EXAMPLES])
def test_every_shipped_example_is_a_valid_study(example: Path, tmp_path: Path) -> None:
    study = load_study(example, out=tmp_path / "out")
    outcomes = run_study(study, dry_run=True, echo=lambda line: None)
    assert outcomes and all(outcome.status == "will run" for outcome in outcomes)
    assert not (tmp_path / "out").exists()  # a dry run writes nothing
    header = example.read_text().splitlines()[0]
    assert header.startswith("# Reproduces") or header.startswith("# A tour"), header


def test_examples_are_shipped() -> None:
    assert len(EXAMPLES) >= 4


def test_sweeps_expand_into_one_folder_per_combination(tmp_path: Path, tiny_folder: Path) -> None:
    path = _study(
        tmp_path,
        f"""
study: sweeps
model: {tiny_folder}
steps:
  - command: ablate
    params: {{prompt: {PROMPTS}, target: [paris, mat], components: [heads]}}
    sweep: {{method: [zero, mean], top_k: [1, 2]}}
""",
    )
    study = load_study(path, out=tmp_path / "out")
    assert [run.folder for run in study.runs] == [
        "ablate/method=zero,top_k=1",
        "ablate/method=zero,top_k=2",
        "ablate/method=mean,top_k=1",
        "ablate/method=mean,top_k=2",
    ]
    assert study.runs[1].parameters["top_k"] == 2 and study.runs[1].point == {
        "method": "zero",
        "top_k": 2,
    }
    assert len({run.digest for run in study.runs}) == 4
    line = study.runs[0].arguments(tmp_path / "w", study.model)
    assert "--method=zero" in line and "--seed=0" in line  # the study's seed by default
    assert f"--csv={tmp_path / 'w' / 'table.csv'}" in line


def test_values_are_converted_like_the_command_line(tmp_path: Path, tiny_folder: Path) -> None:
    path = _study(
        tmp_path,
        f"""
study: values
model: {tiny_folder}
steps:
  - command: layer-scores
    params: {{k: 25, epsilon: 1.0e-5, methods: avss, data: calibration}}
""",
    )
    run = load_study(path, out=tmp_path / "out").runs[0]
    assert run.parameters["k"] == 25.0 and run.parameters["epsilon"] == 1e-5
    assert run.parameters["methods"] == ["avss"]  # one value for a list option is a list


# ----------------------------------------------------------------------- bad input
BAD_STUDIES = {
    "unknown command": ("  - command: ablat\n", "unknown command 'ablat'; did you mean 'ablate'?"),
    "not a step": ("  - command: models\n", "'models' is not a study step"),
    "unknown parameter": (
        "  - command: layer-scores\n    params: {metods: [avss]}\n",
        "unknown parameter 'metods'; did you mean 'methods'?",
    ),
    "hyphen spelling": (
        "  - command: report\n    params: {top-k: 3}\n",
        "write parameter 'top-k' as 'top_k'",
    ),
    "wrong type": (
        "  - command: report\n    params: {top_k: three}\n",
        "parameter top_k: expected a whole number, got 'three'",
    ),
    "out of range": ("  - command: report\n    params: {top_k: 0}\n", "must be at least 1"),
    "bad choice": (
        "  - command: ablate\n    params: {task: sentiment, method: zeros}\n",
        "parameter method is 'zeros'; did you mean 'zero'?",
    ),
    "list for a scalar": (
        "  - command: report\n    params: {top_k: [3, 5]}\n",
        "takes one value, got a list [3, 5]; to run the step once per value, put it under sweep:",
    ),
    "switch not a boolean": (
        "  - command: reweight\n    params: {task: sentiment, clip: 1}\n",
        "is a switch (--clip); give true or false",
    ),
    "yaml boolean for text": (
        "  - command: reweight\n    params: {task: sentiment, label_words: [yes, no]}\n",
        "(a YAML boolean); quote it",
    ),
    "missing required option": ("  - command: decompose\n", "required: prompt"),
    "output path given": (
        "  - command: report\n    params: {json: out.json}\n",
        "json is written into the step's own folder; give true or false",
    ),
    "model option per step": (
        "  - command: report\n    params: {dtype: bf16}\n",
        "dtype is set once for the whole study, in its model: section",
    ),
    "unknown data name": (
        "  - command: patch\n    params: {pairs: {data: pair}}\n",
        "no data file named 'pair'",
    ),
    "reference to a later step": (
        "  - command: ila-finetune\n    params: {ranking: {from: rank, output: save}}\n",
        "names no earlier step",
    ),
    "swept in both": (
        "  - command: report\n    params: {top_k: 3}\n    sweep: {top_k: [3, 4]}\n",
        "top_k is in both params and sweep",
    ),
    "duplicate names": ("  - command: report\n  - command: report\n", "two steps are named"),
    "unknown step key": (
        "  - command: report\n    parms: {top_k: 3}\n",
        "unknown step setting 'parms'; did you mean 'params'?",
    ),
}


@pytest.mark.parametrize("case", list(BAD_STUDIES))
def test_a_malformed_study_gets_one_clear_error(case: str, tmp_path: Path) -> None:
    steps, expected = BAD_STUDIES[case]
    path = _study(tmp_path, f"study: bad\nmodel: smollm2-135m-instruct\nsteps:\n{steps}")
    with pytest.raises(InputError) as caught:
        load_study(path, out=tmp_path / "out")
    message = str(caught.value)
    assert expected in message, message
    assert str(path) in message and "\n" not in message


def test_a_missing_data_file_is_an_error_before_anything_runs(tmp_path: Path) -> None:
    path = _study(
        tmp_path,
        "study: bad\ndata: {pairs: data/pairs.jsonl}\nsteps:\n  - command: report\n",
    )
    with pytest.raises(InputError, match=r"data 'pairs': the data file .*pairs.jsonl does not"):
        load_study(path, out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_misspelled_top_level_key_and_bad_yaml(tmp_path: Path) -> None:
    path = _study(tmp_path, "study: bad\nstep:\n  - command: report\n")
    with pytest.raises(InputError, match="unknown key 'step'; did you mean 'steps'"):
        load_study(path)
    path = _study(tmp_path, "study: bad\nsteps: [\n", name="broken.yaml")
    with pytest.raises(InputError, match="not valid YAML at line"):
        load_study(path)


def test_a_folder_of_another_study_is_refused(
    tmp_path: Path, tiny_folder: Path, texts: Path
) -> None:
    out = tmp_path / "out"
    first = load_study(_study(tmp_path, _tiny_study(tiny_folder)), out=out)
    run_study(first, echo=lambda line: None)
    other = _tiny_study(tiny_folder).replace("study: tiny", "study: other")
    study = load_study(_study(tmp_path, other, name="other.yaml"), out=out)
    with pytest.raises(InputError) as caught:
        run_study(study, dry_run=True)
    message = str(caught.value)
    assert "holds study 'tiny'" in message and "is study 'other'" in message
    assert "Pass another --out, or delete" in message
    reseeded = load_study(_study(tmp_path, _tiny_study(tiny_folder, seed=1), "s1.yaml"), out=out)
    with pytest.raises(InputError, match="differs in seed"):
        run_study(reseeded)
    texts.write_text("other texts entirely\n")
    changed = load_study(_study(tmp_path, _tiny_study(tiny_folder), "s2.yaml"), out=out)
    with pytest.raises(InputError, match="differs in data 'texts'"):
        run_study(changed)


def test_a_non_empty_folder_that_is_no_study_is_refused(tmp_path: Path, texts: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    study = load_study(_study(tmp_path, _tiny_study(tmp_path)), out=out)
    with pytest.raises(InputError, match=r"is not empty and holds no study\.json"):
        run_study(study)


@pytest.mark.parametrize("place", ["/proc/circuitlab-study", "{file}/study"])
def test_a_folder_that_cannot_be_written_is_refused_up_front(
    place: str, tmp_path: Path, texts: Path
) -> None:
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    study = load_study(
        _study(tmp_path, _tiny_study(tmp_path)), out=place.replace("{file}", str(regular))
    )
    with pytest.raises(OutputPathError, match="study folder"):
        run_study(study)


# ----------------------------------------------------------------------- running
def test_a_study_runs_once_and_a_rerun_skips_finished_runs(
    tmp_path: Path, tiny_folder: Path, texts: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    original = circuitlab.loading.load
    monkeypatch.setattr(
        circuitlab.loading, "load", lambda *a, **k: loads.append(a) or original(*a, **k)
    )
    out = tmp_path / "out"
    path = _study(tmp_path, _tiny_study(tiny_folder))
    outcomes = run_study(load_study(path, out=out), echo=lambda line: None)
    assert [o.status for o in outcomes] == ["ran"] * 4
    assert len(loads) == 1  # one model for every step
    manifest = json.loads((out / "lens" / "k=3" / MANIFEST).read_text())
    assert manifest["parameters"]["k"] == 3 and manifest["sweep"] == {"k": 3}
    assert manifest["model"]["fingerprint"] and manifest["seed"] == 0
    assert manifest["versions"]["circuitlab"] and manifest["seconds"] > 0
    assert {f["path"] for f in manifest["files"]} == {"result.json", "stdout.txt"}
    assert manifest["command_line"].startswith("circuitlab logit-lens --model=")
    scores = json.loads((out / "scores" / MANIFEST).read_text())
    assert scores["inputs"] == {
        "data:texts": json.loads((out / "study.json").read_text())["data"]["texts"]
    }
    assert {f["path"] for f in scores["files"]} >= {"result.json", "out/layer_scores.csv"}
    document = json.loads((out / "lens" / "k=2" / "result.json").read_text())
    assert document["header"]["kind"] == "LogitLens"
    steps = json.loads((out / "steps.json").read_text())
    assert len(steps["entries"]) == 4
    assert not (out / ".work").exists()

    before = {p: p.stat().st_mtime_ns for p in out.rglob(MANIFEST)}
    lines: list[str] = []
    again = run_study(load_study(path, out=out), echo=lines.append)
    assert [o.status for o in again] == ["skipped"] * 4
    assert len(loads) == 1  # nothing to run: the model is not even loaded
    assert {p: p.stat().st_mtime_ns for p in out.rglob(MANIFEST)} == before
    assert "4 skipped" in "\n".join(lines)

    # a changed parameter reruns that run only; an appended step runs alone
    changed = _tiny_study(
        tiny_folder,
        extra="  - command: report\n    params: {sections: [decomposition], prompt: [the cat]}\n",
    ).replace("window: 8", "window: 6")
    outcomes = run_study(load_study(_study(tmp_path, changed), out=out), echo=lambda line: None)
    assert [(o.folder, o.status) for o in outcomes] == [
        ("decompose", "skipped"),
        ("scores", "ran"),
        ("lens/k=2", "skipped"),
        ("lens/k=3", "skipped"),
        ("report", "ran"),
    ]
    assert json.loads((out / "scores" / MANIFEST).read_text())["parameters"]["window"] == 6


def test_a_step_reads_what_an_earlier_step_wrote(tmp_path: Path, tiny_folder: Path) -> None:
    path = _study(
        tmp_path,
        f"""
study: chain
model: {tiny_folder}
steps:
  - name: rank
    command: ila-rank
    params: {{data: [facts], limit: 8, batch_size: 4, max_steps: 2, window: 1,
              gate_steps: 2, top_k: 1, plot: false}}
  - name: tune
    command: ila-finetune
    params: {{ranking: {{from: rank, output: save}}, limit: 8, batch_size: 4, steps: 2,
              top_k: 1}}
""",
    )
    out = tmp_path / "out"
    study = load_study(path, out=out)
    assert study.runs[1].parameters["ranking"] == {"from": "rank", "output": "save"}
    assert study.runs[1].inputs == {"step:rank": study.runs[0].digest}
    run_study(study, echo=lambda line: None)
    tune = json.loads((out / "tune" / MANIFEST).read_text())
    assert f"--ranking={out / 'rank' / 'result.safetensors'}" in tune["command_line"]
    assert (out / "tune" / "result.json").is_file()


def test_a_step_error_names_the_step_and_keeps_finished_runs(
    tmp_path: Path, tiny_folder: Path, texts: Path
) -> None:
    bad = _tiny_study(
        tiny_folder,
        extra="  - command: decompose\n    name: bad\n"
        "    params: {prompt: [x], target: [paris london]}\n",
    )
    out = tmp_path / "out"
    with pytest.raises(InputError, match=r"step 'bad' \(decompose\): .*2 tokens"):
        run_study(load_study(_study(tmp_path, bad), out=out), echo=lambda line: None)
    assert (out / "lens" / "k=3" / MANIFEST).is_file() and not (out / "bad").exists()


# ----------------------------------------------------------------------- kill -9
def _result_files(folder: Path) -> dict[str, object]:
    """Every result file of a study folder, JSON without the run's timings."""
    files: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if (
            not path.is_file()
            or relative.startswith(".")
            or path.name in {MANIFEST, "stdout.txt", "study.json", "steps.json"}
        ):
            continue
        if path.suffix == ".json":
            document = json.loads(path.read_text())
            document.pop("run", None)
            files[relative] = document
        else:
            files[relative] = path.read_bytes()
    return files


def test_a_study_killed_with_sigkill_resumes_to_the_uninterrupted_results(
    tmp_path: Path, tiny_folder: Path, texts: Path
) -> None:
    slow = f"""  - name: slow
    command: ablate
    params: {{prompt: {PROMPTS * 6}, target: [paris], components: [heads, mlps, layers],
              method: resample, plot: false}}
"""
    text = _tiny_study(tiny_folder, extra=slow)
    text = text.replace("steps:\n", "steps:\n" + slow.replace("name: slow", "name: first"), 1)
    path = _study(tmp_path, text)
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "circuitlab", "study", str(path), "--out", str(killed)]
    environment = {**os.environ, "CIRCUITLAB_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not (killed / "first" / MANIFEST).exists():
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "the first step never finished"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    finished = {p.parent: p.read_text() for p in killed.rglob(MANIFEST)}
    assert len(finished) < 6, "the study finished before the kill"

    resumed = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "skipped  first (finished before)" in resumed.stdout
    lines = resumed.stdout.splitlines()
    assert sum(line.startswith("[") and "] skipped " in line for line in lines) == len(finished)
    assert sum(line.startswith("[") and "] ran " in line for line in lines) == 6 - len(finished)
    for folder, manifest in finished.items():  # finished runs were not redone
        assert (folder / MANIFEST).read_text() == manifest
    assert not (killed / ".work").exists()

    whole = tmp_path / "whole"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (OMP_NUM_THREADS=1): the same float sums
    try:
        run_study(load_study(path, out=whole), echo=lambda line: None)
    finally:
        torch.set_num_threads(threads)
    expected = _result_files(whole)
    assert len(expected) >= 8 and _result_files(killed) == expected


def test_a_study_under_torchrun_writes_once_and_equals_one_process(
    tmp_path: Path, tiny_folder: Path, texts: Path
) -> None:
    """Two processes: every dataset pass is shared, rank 0 alone writes the study folder."""
    from circuitlab.decomposition import Attribution
    from circuitlab.layers import LayerScores

    path = _study(tmp_path, _tiny_study(tiny_folder))
    two = tmp_path / "two"
    command = torchrun(2, "-m", "circuitlab", "study", str(path), "--out", str(two))
    environment = {**os.environ, "CIRCUITLAB_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    finished = subprocess.run(
        command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=300
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert finished.stdout.count("study 'tiny': 4 run(s): 4 ran") == 1  # rank 0 alone prints
    one = tmp_path / "one"
    run_study(load_study(path, out=one), echo=lambda line: None)
    assert sorted(p.relative_to(two).as_posix() for p in two.rglob("*")) == sorted(
        p.relative_to(one).as_posix() for p in one.rglob("*")
    )  # the same files, none left over by the second process
    parallel = Attribution.load(two / "decompose" / "result.json")
    single = Attribution.load(one / "decompose" / "result.json")
    torch.testing.assert_close(parallel.values, single.values, atol=1e-5, rtol=1e-5)
    for method in ("avss", "random"):
        shared = LayerScores.from_document(
            json.loads((two / "scores" / "result.json").read_text())["results"][method]
        )
        alone = LayerScores.from_document(
            json.loads((one / "scores" / "result.json").read_text())["results"][method]
        )
        assert shared.values == pytest.approx(alone.values, rel=1e-5)
