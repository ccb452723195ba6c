"""Bad input through the Python API: a clear circuitlab error, never a raw traceback or a
silently wrong result (issue 15). The command-line table is in test_cli_bad_inputs.py."""

from __future__ import annotations

import json
import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

import circuitlab
from circuitlab import Ablate, Scale, export_hf
from circuitlab.checkpoints import CheckpointStore
from circuitlab.errors import (
    CircuitlabError,
    ExportCheckError,
    InputError,
    NumericalError,
    OutputPathError,
)
from circuitlab.evaluation import EvaluationSuite
from circuitlab.files import check_output_file, check_output_folder, read_text_file
from circuitlab.interventions import check_export
from circuitlab.interventions.serialize import from_spec, load_interventions, read_prompt_file
from circuitlab.json_files import read_json, write_json_atomic
from circuitlab.progress import progress_bar
from circuitlab.tasks import load_task
from circuitlab.testing import tiny_model

PROMPT = "the capital of france is"


@pytest.fixture(scope="module")
def model() -> circuitlab.ModelHandle:
    return tiny_model("llama")


# ------------------------------------------------------------------ types and ranges (item 5)
TYPE_CASES: dict[str, Callable[[circuitlab.ModelHandle], Any]] = {
    "Scale factor 'abc'": lambda m: Scale("L1H1", "abc"),
    "Scale factor nan": lambda m: Scale("L1H1", float("nan")),
    "spec factor 'abc'": lambda m: from_spec(
        [{"kind": "scale", "component": "L1H1", "factor": "abc"}]
    ),
    "spec positions [['a','b']]": lambda m: from_spec(
        [{"kind": "ablate", "component": "L1H1", "positions": [["a", "b"]]}]
    ),
    "spec positions ragged": lambda m: from_spec(
        [{"kind": "ablate", "component": "L1H1", "positions": [[True], [True, False]]}]
    ),
    "spec vector of text": lambda m: from_spec(
        [{"kind": "steer_residual", "layer": 0, "vector": ["x", "y"]}]
    ),
    "load(123)": lambda m: circuitlab.load(123),
    "load('')": lambda m: circuitlab.load(""),
    "top_next_tokens k=2.5": lambda m: m.top_next_tokens(PROMPT, k=2.5),
    "top_next_tokens k=0": lambda m: m.top_next_tokens(PROMPT, k=0),
    "top_next_tokens(None)": lambda m: m.top_next_tokens(None),
    "top_next_tokens([])": lambda m: m.top_next_tokens([]),
    "DLA target 3.5": lambda m: circuitlab.direct_logit_attribution(m, PROMPT, 3.5),
    "DLA target None": lambda m: circuitlab.direct_logit_attribution(m, PROMPT, None),
    "DLA prompts None": lambda m: circuitlab.direct_logit_attribution(m, None, "paris"),
    "DLA batch_size=0": lambda m: circuitlab.direct_logit_attribution(
        m, PROMPT, "paris", batch_size=0
    ),
    "component_accuracy batch_size=0": lambda m: circuitlab.component_accuracy(
        m, load_task("sentiment").balanced_sample(4), batch_size=0
    ),
    "ablation_study batch_size=0": lambda m: circuitlab.ablation_study(
        m, [PROMPT], "paris", components=["L0H0"], batch_size=0
    ),
    "score_layers batch_size=0": lambda m: circuitlab.score_layers(
        m, ["the cat sat on the mat"] * 2, ["avss"], batch_size=0
    ),
    "score_layers window=1.5": lambda m: circuitlab.score_layers(
        m, ["the cat sat on the mat"] * 2, ["avss"], window=1.5
    ),
    "EvaluationSuite(qa_questions=2.5)": lambda m: EvaluationSuite(qa_questions=2.5),
    "EvaluationSuite(batch_size=0)": lambda m: EvaluationSuite(batch_size=0),
    "EvaluationSuite(k_shot='4')": lambda m: EvaluationSuite(k_shot="4"),
    "check_export on a missing folder": lambda m: check_export(m, [], "/nonexistent/export"),
    "export_hf tolerance nan": lambda m: export_hf(
        m, [], "/tmp/unused", check=True, tolerance=float("nan")
    ),
    "export_hf tolerance -1": lambda m: export_hf(m, [], "/tmp/unused", check=True, tolerance=-1),
    "prompt with an undecodable byte": lambda m: m.top_next_tokens("caf\udce9 is"),
    "label word with an undecodable byte": lambda m: m.token_id("\udcff"),
}


@pytest.mark.parametrize("case", list(TYPE_CASES))
def test_bad_arguments_get_a_clear_error(model: circuitlab.ModelHandle, case: str) -> None:
    with pytest.raises(CircuitlabError) as raised:
        TYPE_CASES[case](model)
    message = str(raised.value)
    assert message and "\n" not in message.strip()
    assert "Traceback" not in message


def test_check_export_on_an_empty_folder_names_the_folder(
    model: circuitlab.ModelHandle, tmp_path: Path
) -> None:
    with pytest.raises(InputError, match=r"no config\.json"):
        check_export(model, [], tmp_path)


def test_corrupt_checkpoint_files_are_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "evaluations.json"
    for content in (
        [1, 2, 3],
        {"format": "circuitlab-checkpoint", "kind": "k", "scope": {}, "entries": [1, 2, 3]},
        {"format": "circuitlab-checkpoint", "kind": "k", "scope": [1], "entries": {}},
        {"format": "circuitlab-checkpoint", "kind": "k", "scope": {}, "entries": {"a": 1}},
    ):
        path.write_text(json.dumps(content))
        with pytest.raises(InputError, match="not a circuitlab checkpoint"):
            CheckpointStore(path, kind="k", scope={})


# ------------------------------------------------------------------------ encodings (item 4)
def test_files_in_another_encoding_get_a_clear_error(tmp_path: Path) -> None:
    latin1 = "café,positive\n".encode("latin-1")
    task = tmp_path / "task.csv"
    task.write_bytes(b"text,label\n" + latin1)
    spec = tmp_path / "spec.yaml"
    spec.write_bytes("- {kind: ablate, component: L1H1}  # caf\xe9\n".encode("latin-1"))
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("caf\xe9\n".encode("latin-1"))
    data = tmp_path / "data.json"
    data.write_bytes('{"a": "caf\xe9"}'.encode("latin-1"))
    for read in (
        lambda: load_task(task),
        lambda: load_interventions(spec),
        lambda: read_prompt_file(prompts),
        lambda: read_json(data, "result"),
    ):
        with pytest.raises(InputError, match=r"is not UTF-8 text.*Save the"):
            read()
    assert read_text_file(task, "task file", encoding="latin-1").endswith("café,positive\n")


# --------------------------------------------------------------------- output paths (item 1)
def test_impossible_output_paths_are_named(tmp_path: Path) -> None:
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "inside").write_text("x")
    with pytest.raises(OutputPathError, match="is not writable"):
        check_output_file("/proc/x.json")
    with pytest.raises(OutputPathError, match="existing folder"):
        check_output_file(folder)
    with pytest.raises(OutputPathError, match="is a file, so nothing can be created under it"):
        check_output_file(regular / "x.json")
    with pytest.raises(OutputPathError, match="existing file, not a folder"):
        check_output_folder(regular)
    with pytest.raises(InputError, match=r"not empty\. Pass --overwrite"):
        check_output_folder(folder, must_be_empty=True, overwrite_hint="--overwrite")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing


@pytest.mark.parametrize("where", ["/proc/x", "under-a-file", "existing-file"])
def test_export_to_an_impossible_folder_fails_before_baking(
    model: circuitlab.ModelHandle, tmp_path: Path, where: str
) -> None:
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    path = {"/proc/x": Path("/proc/x"), "under-a-file": regular / "out"}.get(where, regular)
    with pytest.raises(OutputPathError) as raised:
        export_hf(model, [Ablate("L1H1")], path)
    assert str(path) in str(raised.value)
    assert "cache" not in str(raised.value)


def test_writing_json_under_a_file_names_the_path_not_the_cache(tmp_path: Path) -> None:
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    with pytest.raises(OutputPathError) as raised:
        write_json_atomic({"a": 1}, regular / "sub" / "x.json")
    assert "CIRCUITLAB_CACHE_DIR" not in str(raised.value)


# ---------------------------------------------------------------- file permissions (item 14)
def test_written_files_and_folders_follow_the_umask(
    model: circuitlab.ModelHandle, tmp_path: Path
) -> None:
    previous = os.umask(0o022)
    try:
        folder = export_hf(model, [Ablate("L1H1")], tmp_path / "export")
        written = write_json_atomic({"a": 1}, tmp_path / "result.json")
        saved = circuitlab.direct_logit_attribution(model, PROMPT, "paris").save(
            tmp_path / "attribution.safetensors"
        )
        contributions = circuitlab.label_contributions(
            model, load_task("sentiment").subset(range(6))
        )
        weights = circuitlab.ComponentReweighting(max_epochs=3).fit(contributions)
        weights_file = weights.save(tmp_path / "weights.safetensors")
        figure_folder = tmp_path / "figures"
        from circuitlab.cli.main import main

        main(["layer-scores", "--model", str(folder), "--data", "calibration", "--window", "16",
              "--methods", "avss", "--out", str(figure_folder)])  # fmt: skip
    finally:
        os.umask(previous)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    cli_files = sorted(figure_folder.iterdir())
    assert {p.suffix for p in cli_files} == {".csv", ".json", ".png"}
    for path in [*folder.iterdir(), written, saved, weights_file, *cli_files]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# ------------------------------------------------------------- silent wrong results (7-10)
def test_non_finite_logits_under_an_intervention_name_it(model: circuitlab.ModelHandle) -> None:
    with model.intervene(Scale("MLP0", 1e38)), pytest.raises(NumericalError, match="MLP0"):
        model.top_next_tokens(PROMPT)
    with model.intervene(Scale("MLP0", 1e38)), pytest.raises(NumericalError, match="Scale"):
        circuitlab.direct_logit_attribution(model, PROMPT, "paris")
    assert model.top_next_tokens(PROMPT)[0].probability == pytest.approx(
        model.top_next_tokens(PROMPT)[0].probability
    )


def test_export_of_an_overflowing_intervention_writes_nothing(
    model: circuitlab.ModelHandle, tmp_path: Path
) -> None:
    target = tmp_path / "nan-model"
    with pytest.raises(NumericalError, match="Nothing was written"):
        export_hf(model, [Scale("MLP0", 1e45)], target)  # finite in Python, inf in float32
    with pytest.raises(NumericalError, match=r"Scale\(MLP0, 1e\+38\)"):
        export_hf(model, [Scale("MLP0", 1e38)], target, check=True)  # NaN logits
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".nan-model.")]


def test_export_that_fails_its_check_writes_nothing(
    model: circuitlab.ModelHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from circuitlab.interventions import export as export_module

    def failing_check(*args: Any, **kwargs: Any) -> float:
        raise ExportCheckError("differs by nan logits")

    monkeypatch.setattr(export_module, "check_export", failing_check)
    target = tmp_path / "checked"
    with pytest.raises(ExportCheckError):
        export_hf(model, [Ablate("L1H1")], target, check=True)
    assert not target.exists()


def test_export_check_is_recorded(model: circuitlab.ModelHandle, tmp_path: Path) -> None:
    folder = export_hf(model, [Ablate("L1H1")], tmp_path / "checked", check=True, tolerance=1e-4)
    record = json.loads((folder / "circuitlab_export.json").read_text())
    assert record["check"]["tolerance"] == 1e-4
    assert 0 <= record["check"]["max_logit_difference"] <= 1e-4


def test_top_next_tokens_gives_one_list_per_prompt(model: circuitlab.ModelHandle) -> None:
    both = model.top_next_tokens([PROMPT, "the sky is"], k=3)
    assert len(both) == 2 and all(len(row) == 3 for row in both)
    for row, prompt in zip(both, [PROMPT, "the sky is"], strict=True):
        alone = model.top_next_tokens(prompt, k=3)
        assert [p.token for p in row] == [p.token for p in alone]
        assert [p.probability for p in row] == pytest.approx(
            [p.probability for p in alone], rel=1e-4
        )


def test_evaluation_suite_keeps_checked_counts() -> None:
    suite = EvaluationSuite(qa_questions=5, sentiment_examples=4)
    assert suite.qa_questions == 5 and isinstance(suite.qa_questions, int)


# ------------------------------------------------------------------- messages (items 6, 17)
def test_multi_token_target_is_called_a_target() -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match=r"^Target token 'paris london' is 2 tokens"):
        circuitlab.direct_logit_attribution(model, PROMPT, "paris london")
    with pytest.raises(InputError, match=r"^Label word"):
        model.token_ids(["paris london"])


def test_cli_hints_name_flags_not_parameters() -> None:
    from circuitlab.cli.main import _command_parser, build_parser, cli_message

    parser = build_parser()
    args = parser.parse_args(["export", "spec.yaml", "out"])
    command = _command_parser(parser, args)
    assert command.prog == "circuitlab export"
    text = cli_message("Pass overwrite=True to replace it, or another cache_dir= value.", command)
    assert text == "Pass --overwrite to replace it, or another --cache-dir value."
    assert (
        cli_message(
            "Use batch_size=4.",
            _command_parser(
                parser, parser.parse_args(["decompose", "--prompt", "x", "--target", "y"])
            ),
        )
        == "Use --batch-size 4."
    )


# ----------------------------------------------------------------------- progress (item 15)
def test_progress_bars_appear_for_long_calls_only(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    list(progress_bar(range(3), progress=None, desc="quick"))
    assert "quick" not in capsys.readouterr().err  # shorter than the delay: silent
    monkeypatch.setattr("circuitlab.progress.AUTO_DELAY", 0.0)
    list(progress_bar(range(3), progress=None, desc="long"))
    assert "long" in capsys.readouterr().err
    monkeypatch.setenv("CIRCUITLAB_PROGRESS", "0")
    list(progress_bar(range(3), progress=None, desc="off"))
    assert "off" not in capsys.readouterr().err
    list(progress_bar(range(3), progress=True, desc="forced"))
    assert "forced" in capsys.readouterr().err


def test_long_calls_default_to_a_progress_bar() -> None:
    import inspect

    for function in (
        circuitlab.component_accuracy,
        circuitlab.ablation_study,
        circuitlab.direct_logit_attribution,
        circuitlab.score_layers,
        circuitlab.reweighting_study,
    ):
        assert inspect.signature(function).parameters["progress"].default is None, function


def test_a_space_warning_is_not_raised_for_a_spaced_target(
    model: circuitlab.ModelHandle,
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        circuitlab.direct_logit_attribution(model, PROMPT, "paris")  # word-level: no variant
    assert torch.isfinite(circuitlab.direct_logit_attribution(model, PROMPT, "paris").logits).all()
