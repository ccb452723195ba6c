"""The circuitlab command line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from circuitlab.cli.main import build_parser, main
from circuitlab.testing import tiny_hf_model


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    model, tokenizer = tiny_hf_model("llama")
    folder = tmp_path / "tiny-llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_report_on_a_local_folder_writes_json(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    code = main(
        [
            "report",
            "--model",
            str(tiny_folder),
            "--prompt",
            "the capital of france is",
            "--top-k",
            "3",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "LlamaForCausalLM (llama): 2 layers, 4 heads (2 KV heads)" in printed
    report = json.loads(out.read_text())
    assert report["model"]["n_layers"] == 2
    assert report["prompt_tokens"] == ["the", "capital", "of", "france", "is"]
    probabilities = [row["probability"] for row in report["top_next_tokens"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)


def test_bad_input_exits_2_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--model", "no-such-model"]) == 2
    assert "Unknown model 'no-such-model'" in capsys.readouterr().err
    assert main(["models", "fetch", "no-such-model"]) == 2
    assert "Known names" in capsys.readouterr().err


def test_models_list_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models.json"
    assert main(["models", "list", "--cache-dir", str(tmp_path / "empty"), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {row["name"] for row in rows} == {"smollm2-135m-instruct", "gemma3-270m"}
    assert not any(row["cached"] for row in rows)
    assert "not cached" in capsys.readouterr().out


@pytest.mark.parametrize(
    "command", [[], ["report"], ["models"], ["models", "list"], ["models", "fetch"]]
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([*command, "--help"])
    assert caught.value.code == 0
    assert "usage: circuitlab" in capsys.readouterr().out


@pytest.mark.real_model
def test_console_script_reports_on_the_default_model(tmp_path: Path, smollm2: object) -> None:
    """The README's main job, end to end in a subprocess, on the embedded default model."""
    out = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "circuitlab", "report", "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "smollm2-135m-instruct" in result.stdout
    report = json.loads(out.read_text())
    assert report["top_next_tokens"][0]["token"] == " Paris"
