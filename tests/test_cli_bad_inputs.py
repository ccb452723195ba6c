"""Bad input to the ``circuitlab`` command line: one clear error line, never a traceback.

Every case must end with a non-zero exit status, exactly one ``circuitlab ...: error:`` line
on standard error (progress bars aside) and no traceback (issue 15). The cases are a table:
``{name: (arguments, text the error must contain)}``; ``{tiny}``, ``{tmp}``, ``{file}``,
``{folder}`` and the prepared files below are filled in per test.

Every case runs in-process through ``circuitlab.cli.main.main`` (a subprocess costs seconds
of importing torch per case), with the console script's environment, argv decoding and
standard streams. ``THROUGH_THE_CONSOLE_SCRIPT`` names a few cases that also run as a
subprocess of the real ``circuitlab`` script, so the entry point itself stays covered.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from circuitlab.testing import tiny_hf_model

SCRIPT = Path(sys.executable).with_name("circuitlab")
PROMPT = "the capital of france is"
LATIN1 = "caf\xe9".encode("latin-1")

BAD_INPUTS: dict[str, tuple[list[str | bytes], str]] = {
    # output paths: checked before any work (item 1)
    "report --json under /proc": (["report", "--json", "/proc/x.json"], "/proc is not writable"),
    "report --json an existing folder": (["report", "--json", "{folder}"], "existing folder"),
    "report --json under a regular file": (
        ["report", "--json", "{file}/x.json"],
        "is a file, so nothing can be created under it",
    ),
    "decompose --plot an existing folder": (
        ["decompose", "--prompt", PROMPT, "--target", "paris", "--plot", "{folder}"],
        "existing folder",
    ),
    "decompose --save under /proc": (
        ["decompose", "--prompt", PROMPT, "--target", "paris", "--save", "/proc/x.safetensors"],
        "not writable",
    ),
    "ablate --save under a regular file": (
        ["ablate", "--prompt", PROMPT, "--target", "paris", "--save", "{file}/x.safetensors"],
        "is a file",
    ),
    "ablate --csv an existing folder": (
        ["ablate", "--prompt", PROMPT, "--target", "paris", "--csv", "{folder}"],
        "existing folder",
    ),
    "export OUT an existing file": (["export", "{spec}", "{file}"], "existing file, not a folder"),
    "export OUT a non-empty folder": (["export", "{spec}", "{folder}"], "Pass --overwrite"),
    "export OUT under /proc": (["export", "{spec}", "/proc/x"], "not writable"),
    "layer-scores --out an existing file": (
        ["layer-scores", "--out", "{file}"],
        "existing file, not a folder",
    ),
    "prune-study --out under a regular file": (
        ["prune-study", "--out", "{file}/study"],
        "is a file",
    ),
    "prune-study --export under /proc": (
        ["prune-study", "--out", "{tmp}/study", "--export", "/proc/x"],
        "not writable",
    ),
    "reweight --checkpoint an existing folder": (
        ["reweight", "--task", "sentiment", "--checkpoint", "{folder}"],
        "existing folder",
    ),
    "models list --json under /proc": (["models", "list", "--json", "/proc/x"], "not writable"),
    # figure formats (item 2)
    "decompose --plot .xyz": (
        ["decompose", "--prompt", PROMPT, "--target", "paris", "--plot", "{tmp}/x.xyz"],
        ".xyz is not a figure format",
    ),
    "component-accuracy --plot without extension": (
        ["component-accuracy", "--task", "sentiment", "--plot", "{tmp}/heads"],
        "has no extension",
    ),
    # broken model folders (item 3)
    "report --model ''": (["report", "--model", ""], "empty"),
    "report --model an unknown name": (["report", "--model", "no-such-model"], "no-such-model"),
    "report --model a folder with invalid config.json": (
        ["report", "--model", "{bad_config}"],
        "config.json",
    ),
    "report --model a folder with only pytorch_model.bin": (
        ["report", "--model", "{bin_only}"],
        "safetensors",
    ),
    "report --model a folder without tokenizer files": (
        ["report", "--model", "{no_tokenizer}"],
        "tokenizer",
    ),
    # encodings (item 4)
    "component-accuracy --task a latin-1 file": (
        ["component-accuracy", "--task", "{latin1_task}"],
        "not UTF-8",
    ),
    "export a latin-1 spec": (["export", "{latin1_spec}", "{tmp}/out"], "not UTF-8"),
    "layer-scores --data a latin-1 file": (
        ["layer-scores", "--data", "{latin1_data}"],
        "not UTF-8",
    ),
    "ablate --reference a latin-1 file": (
        [
            "ablate",
            "--prompt",
            PROMPT,
            "--target",
            "paris",
            "--method",
            "mean",
            "--reference",
            "{latin1_data}",
        ],
        "not UTF-8",
    ),
    "report --prompt with an invalid UTF-8 byte": (
        ["report", "--model", "{tiny}", "--prompt", b"caf\xff is"],
        "not valid UTF-8",
    ),
    # types and ranges (items 5, 11)
    "decompose --batch-size 0": (
        ["decompose", "--prompt", PROMPT, "--target", "paris", "--batch-size", "0"],
        "--batch-size: must be at least 1",
    ),
    "ablate --top-k 0": (["ablate", "--task", "sentiment", "--top-k", "0"], "--top-k"),
    "report --top-k 2.5": (["report", "--top-k", "2.5"], "expected a whole number"),
    "export --tolerance -1": (["export", "{spec}", "{tmp}/o", "--tolerance", "-1"], "--tolerance"),
    "export --tolerance nan": (["export", "{spec}", "{tmp}/o", "--tolerance", "nan"], "finite"),
    "layer-scores --k 150": (["layer-scores", "--k", "150"], "percentage"),
    "layer-scores --window 1": (["layer-scores", "--window", "1"], "at least 2"),
    "layer-scores --epsilon abc": (["layer-scores", "--epsilon", "abc"], "expected a number"),
    "reweight --lr 0": (["reweight", "--task", "sentiment", "--lr", "0"], "above 0"),
    "component-accuracy --k-shot -1": (
        ["component-accuracy", "--task", "sentiment", "--k-shot", "-1"],
        "0 or more",
    ),
    "export a spec with factor 'abc'": (["export", "{spec_abc}", "{tmp}/o"], "must be a number"),
    "export a spec with positions [[a, b]]": (
        ["export", "{spec_positions}", "{tmp}/o"],
        "true/false",
    ),
    "decompose without a target": (["decompose", "--prompt", PROMPT], "--target"),
    "decompose a multi-token target": (
        ["decompose", "--model", "{tiny}", "--prompt", PROMPT, "--target", "paris london"],
        "Target token 'paris london' is 2 tokens",
    ),
    "ablate an unknown component": (
        [
            "ablate",
            "--model",
            "{tiny}",
            "--prompt",
            PROMPT,
            "--target",
            "paris",
            "--components",
            "L9H9",
        ],
        "L9H9",
    ),
    "prune-study with a corrupt evaluations.json": (
        [
            "prune-study",
            "--model",
            "{tiny}",
            "--out",
            "{corrupt_study}",
            "--methods",
            "random",
            "--k",
            "50",
            "--tasks",
            "sentiment",
            "--sentiment-examples",
            "2",
            "--window",
            "16",
        ],
        "not a circuitlab checkpoint",
    ),
    # consistency (issue 16)
    "consistency-heads --paraphrases with one paraphrase": (
        ["consistency-heads", "--task", "sentiment", "--paraphrases", "{one_paraphrase}"],
        "paraphrase",
    ),
    "consistency-edit --alphas nan": (["consistency-edit", "--alphas", "nan"], "finite"),
    "consistency-edit --ks 0": (["consistency-edit", "--ks", "0"], "at least 1"),
    # hallucination layers (issue 17)
    "hallucination-layers --top-k 0": (["hallucination-layers", "--top-k", "0"], "at least 1"),
    "hallucination-layers --questions without gold answers": (
        ["hallucination-layers", "--questions", "{no_gold}"],
        "has no gold answer",
    ),
    "hallucination-layers when every answer is wrong": (
        ["hallucination-layers", "--model", "{tiny}", "--limit", "4"],
        "is wrong",
    ),
    "contrastive-finetune --top-k beyond the layers": (
        ["contrastive-finetune", "--model", "{tiny}", "--data", "{labelled}", "--top-k", "3"],
        "pass --top-k between 1 and 2",
    ),
    "contrastive-finetune --layers out of range": (
        ["contrastive-finetune", "--model", "{tiny}", "--data", "{labelled}", "--layers", "2"],
        "out of range",
    ),
    "contrastive-finetune when every answer is right": (
        ["contrastive-finetune", "--model", "{tiny}", "--data", "{all_right}", "--layers", "1"],
        "answers is right",
    ),
    "contrastive-finetune --export a non-empty folder": (
        ["contrastive-finetune", "--data", "{labelled}", "--export", "{folder}"],
        "Pass --overwrite",
    ),
    "ila-rank --top-k beyond the layers": (
        ["ila-rank", "--model", "{tiny}", "--data", "facts", "--top-k", "3"],
        "cannot be chosen from a model with 2 layers; pass --top-k between 1 and 2",
    ),
    "ila-rank --top-k 0": (["ila-rank", "--top-k", "0"], "at least 1"),
    "ila-rank instruction pairs without a response": (
        ["ila-rank", "--data", "{no_response}"],
        "has no 'response' field",
    ),
    "ila-rank an empty instruction file": (
        ["ila-rank", "--data", "{empty_pairs}"],
        "holds no instruction/response pairs",
    ),
    "ila-finetune --select top without a ranking": (
        ["ila-finetune", "--model", "{tiny}", "--select", "top"],
        "needs an ILA ranking: pass --ranking FILE",
    ),
    "ila-finetune --export a non-empty folder": (
        ["ila-finetune", "--export", "{folder}"],
        "Pass --overwrite",
    ),
    # attention views (issue 19)
    "attention --html an existing folder": (
        ["attention", "--prompt", PROMPT, "--head", "L0H0", "--html", "{folder}"],
        "existing folder",
    ),
    "attention --plot .xyz": (
        ["attention", "--summary", "--plot", "{tmp}/x.xyz"],
        ".xyz is not a figure format",
    ),
    "attention a head beyond the query heads": (
        ["attention", "--model", "{tiny}", "--prompt", PROMPT, "--head", "L0H4"],
        "each layer has 4 heads (0 .. 3). Head indices count query heads",
    ),
    "attention --layer beyond the layers": (
        ["attention", "--model", "{tiny}", "--prompt", PROMPT, "--layer", "2"],
        "--layer 2 is out of range: the model has 2 layers (0 .. 1)",
    ),
    "attention a component that is not a head": (
        ["attention", "--model", "{tiny}", "--prompt", PROMPT, "--head", "MLP1"],
        "MLP1 is not an attention head",
    ),
    "attention an empty prompt": (
        ["attention", "--model", "{tiny}", "--prompt", "", "--head", "L0H0"],
        "The prompt is empty",
    ),
    "attention without heads": (["attention", "--prompt", PROMPT], "Name the heads to show"),
    "attention --summary with --html": (
        ["attention", "--summary", "--html", "{tmp}/x.html"],
        "Drop --html, or drop --summary",
    ),
    "attention --top 0": (["attention", "--summary", "--top", "0"], "at least 1"),
    # logit lens (issue 19)
    "logit-lens --k 0": (["logit-lens", "--prompt", PROMPT, "--k", "0"], "at least 1"),
    "logit-lens --position last": (
        ["logit-lens", "--prompt", PROMPT, "--position", "last"],
        "or 'all'",
    ),
    "logit-lens a multi-token target": (
        ["logit-lens", "--model", "{tiny}", "--prompt", PROMPT, "--target", "paris london"],
        "Target token 'paris london' is 2 tokens",
    ),
    "logit-lens --position out of range": (
        ["logit-lens", "--model", "{tiny}", "--prompt", PROMPT, "--position", "9"],
        "Position 9 is out of range for prompt 0",
    ),
    "logit-lens --plot .xyz": (
        ["logit-lens", "--prompt", PROMPT, "--plot", "{tmp}/x.xyz"],
        ".xyz is not a figure format",
    ),
    # per-prompt targets and two-token logit differences (issue 19)
    "decompose --per-prompt with too few targets": (
        [
            "decompose",
            "--prompt",
            PROMPT,
            "--prompt",
            "the cat sat",
            "--target",
            "paris",
            "--per-prompt",
        ],
        "1 target(s) for 2 prompt(s)",
    ),
    "decompose --per-prompt with a mix of --target and --diff": (
        [
            "decompose",
            "--prompt",
            PROMPT,
            "--prompt",
            "the cat sat",
            "--target",
            "paris",
            "--diff",
            "cat",
            "dog",
            "--per-prompt",
        ],
        "not a mix",
    ),
    "decompose --per-prompt with a multi-token target": (
        [
            "decompose",
            "--model",
            "{tiny}",
            "--prompt",
            PROMPT,
            "--prompt",
            "the cat sat",
            "--target",
            "paris",
            "--target",
            "paris london",
            "--per-prompt",
        ],
        "is 2 tokens",
    ),
    "ablate --diff count differs from the prompts": (
        [
            "ablate",
            "--model",
            "{tiny}",
            "--prompt",
            PROMPT,
            "--prompt",
            "the cat sat",
            "--prompt",
            "a dog ran",
            "--diff",
            "paris",
            "london",
            "--diff",
            "cat",
            "dog",
            "--components",
            "MLP0",
        ],
        "2 targets were given for 3 prompts",
    ),
    "ablate --diff with a multi-token token": (
        [
            "ablate",
            "--model",
            "{tiny}",
            "--prompt",
            PROMPT,
            "--diff",
            "paris london",
            "rome",
            "--components",
            "MLP0",
        ],
        "is 2 tokens",
    ),
    "ablate --target and --diff": (
        ["ablate", "--prompt", PROMPT, "--target", "paris", "--diff", "paris", "london"],
        "not both",
    ),
    "ablate --diff with a task": (
        ["ablate", "--task", "sentiment", "--diff", "paris", "london"],
        "go with --prompt",
    ),
    "ablate --diff with another metric": (
        [
            "ablate",
            "--model",
            "{tiny}",
            "--prompt",
            PROMPT,
            "--diff",
            "paris",
            "london",
            "--metric",
            "prob",
            "--components",
            "MLP0",
        ],
        "use metric 'logit_diff'",
    ),
    # activation patching (issue 19)
    "patch pairs of different token lengths": (
        [
            "patch",
            "--model",
            "{tiny}",
            "--clean",
            "the cat sat",
            "--corrupted",
            "the good dog sat",
            "--diff",
            "mat",
            "rug",
        ],
        "same token count",
    ),
    "patch a layer out of range": (
        [
            "patch",
            "--model",
            "{tiny}",
            "--clean",
            "the cat sat",
            "--corrupted",
            "the dog sat",
            "--diff",
            "mat",
            "rug",
            "--layers",
            "7",
        ],
        "Layer 7 does not exist",
    ),
    "patch a position out of range": (
        [
            "patch",
            "--model",
            "{tiny}",
            "--clean",
            "the cat sat",
            "--corrupted",
            "the dog sat",
            "--diff",
            "mat",
            "rug",
            "--positions",
            "5",
        ],
        "outside the prompts' 3 tokens",
    ),
    "patch a multi-token answer": (
        [
            "patch",
            "--model",
            "{tiny}",
            "--clean",
            "the cat sat",
            "--corrupted",
            "the dog sat",
            "--diff",
            "mat rug",
            "rug",
        ],
        "answer token of pair 1",
    ),
    "patch an unknown site": (
        ["patch", "--clean", "a", "--corrupted", "b", "--site", "hook_z"],
        "invalid choice",
    ),
    "patch nothing to patch": (["patch", "--diff", "a", "b"], "Say what to patch"),
    "patch an empty pair file": (["patch", "--pairs", "{empty_pairs}"], "holds no pairs"),
    # the analysis report
    "report a task whose label words are several tokens": (
        ["report", "--model", "{tiny}", "--task", "{multi_word_task}", "--out", "{tmp}/r1"],
        "Choose a task whose label words are single tokens",
    ),
    "report --out under /proc": (["report", "--out", "/proc/report"], "not writable"),
    "report --out a folder of other files": (
        ["report", "--out", "{foreign_folder}"],
        "not a circuitlab report",
    ),
    "report --out an existing file": (["report", "--out", "{file}"], "existing file"),
    "report --sections unknown": (["report", "--sections", "nope"], "invalid choice"),
    "report patching pairs of different lengths": (
        [
            "report",
            "--model",
            "{tiny}",
            "--sections",
            "patching",
            "--pair",
            "the cat sat on",
            "the big dog sat on",
            " mat",
            " rug",
            "--out",
            "{tmp}/r2",
        ],
        "same token count",
    ),
    "report --ila-adapter a missing folder": (
        ["report", "--ila-adapter", "{tmp}/no-adapter"],
        "ILA adapter folder",
    ),
    # studies
    "study unknown step": (
        ["study", "{study_unknown_step}"],
        "unknown command 'ablat'; did you mean 'ablate'?",
    ),
    "study unknown parameter": (
        ["study", "{study_unknown_param}"],
        "unknown parameter 'top_kk'; did you mean 'top_k'?",
    ),
    "study wrong type": (
        ["study", "{study_wrong_type}"],
        "parameter top_k: expected a whole number, got 'three'",
    ),
    "study missing data file": (["study", "{study_missing_data}"], "nowhere.jsonl does not exist"),
    "study folder of another study": (
        ["study", "{study_other}", "--out", "{other_study}"],
        "holds study 'first'",
    ),
    "study --out under /proc": (["study", "{study_other}", "--out", "/proc/x"], "not writable"),
    "study --out an existing file": (
        ["study", "{study_other}", "--out", "{file}"],
        "existing file, not a folder",
    ),
    "patch a pair file of another kind": (["patch", "--pairs", "{file}"], "not a pair file"),
    "patch --exact without --attribution": (
        [
            "patch",
            "--model",
            "{tiny}",
            "--clean",
            "the cat sat",
            "--corrupted",
            "the dog sat",
            "--diff",
            "mat",
            "rug",
            "--exact",
        ],
        "add --attribution",
    ),
    # silent wrong results (item 7)
    "export a factor that gives NaN logits": (
        ["export", "{spec_huge}", "{tmp}/nan-model", "--model", "{tiny}"],
        "non-finite",
    ),
}


LEAVES_NOTHING = {"export a factor that gives NaN logits": "nan-model"}
"""Cases whose output (a folder under ``{tmp}``) must not exist afterwards, nor its partials."""


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad-inputs")
    model, tokenizer = tiny_hf_model("llama")
    tiny = root / "tiny"
    model.save_pretrained(tiny)
    tokenizer.save_pretrained(tiny)
    regular = root / "file.txt"
    regular.write_text("x")
    folder = root / "folder"
    folder.mkdir()
    (folder / "inside.txt").write_text("x")
    bad_config = root / "bad-config"
    bad_config.mkdir()
    (bad_config / "config.json").write_text("{not json")
    bin_only = root / "bin-only"
    bin_only.mkdir()
    (bin_only / "config.json").write_text((tiny / "config.json").read_text())
    (bin_only / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    no_tokenizer = root / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        (no_tokenizer / name).write_bytes((tiny / name).read_bytes())
    specs = {
        "spec": "- {kind: ablate, component: L1H1}\n",
        "spec_abc": "- {kind: scale, component: L1H1, factor: abc}\n",
        "spec_positions": "- {kind: ablate, component: L1H1, positions: [[a, b]]}\n",
        "spec_huge": "- {kind: scale, component: MLP0, factor: 1.0e+38}\n",
    }
    paths = {}
    for name, text in specs.items():
        paths[name] = root / f"{name}.yaml"
        paths[name].write_text(text)
    latin1_task = root / "task.csv"
    latin1_task.write_bytes(b"text,label\n" + LATIN1 + b",positive\n")
    latin1_spec = root / "latin1.yaml"
    latin1_spec.write_bytes(b"- {kind: ablate, component: L1H1}  # " + LATIN1 + b"\n")
    latin1_data = root / "latin1.txt"
    latin1_data.write_bytes(LATIN1 + b" is good\n")
    one_paraphrase = root / "one.txt"
    one_paraphrase.write_text("Review: {text}\\nSentiment:\n")
    labelled = root / "labelled.jsonl"
    labelled.write_text(
        json.dumps({"question": "a ?", "correct_answers": ["cat"], "incorrect_answers": ["dog"]})
        + "\n"
        + json.dumps({"question": "b ?", "correct_answers": ["sky"], "incorrect_answers": ["red"]})
        + "\n"
    )
    all_right = root / "right.jsonl"
    all_right.write_text(json.dumps({"question": "a ?", "correct_answers": ["cat"]}) + "\n")
    no_gold = root / "no-gold.jsonl"
    no_gold.write_text(json.dumps({"question": "Who wrote Hamlet?", "answer": ""}) + "\n")
    no_response = root / "no-response.jsonl"
    no_response.write_text(json.dumps({"instruction": "Say hi.", "answer": "Hi."}) + "\n")
    empty_pairs = root / "empty.jsonl"
    empty_pairs.write_text("")
    corrupt_study = root / "corrupt-study"
    corrupt_study.mkdir()
    (corrupt_study / "evaluations.json").write_text(json.dumps([1, 2, 3]))
    multi_word_task = root / "multi-word.jsonl"  # label words " very good" and " bad"
    multi_word_task.write_text(
        "".join(
            json.dumps({"text": f"review {i}", "label": ["very good", "bad"][i % 2]}) + "\n"
            for i in range(8)
        )
    )
    foreign_folder = root / "photos"
    foreign_folder.mkdir()
    (foreign_folder / "cat.jpg").write_bytes(b"\xff\xd8")
    study_texts = {
        "study_unknown_step": "study: s\nsteps:\n  - command: ablat\n",
        "study_unknown_param": "study: s\nsteps:\n  - command: report\n    params: {top_kk: 3}\n",
        "study_wrong_type": "study: s\nsteps:\n  - command: report\n    params: {top_k: three}\n",
        "study_missing_data": (
            "study: s\ndata: {pairs: nowhere.jsonl}\nsteps:\n  - command: report\n"
        ),
        "study_other": "study: other\nsteps:\n  - command: report\n",
    }
    studies = {}
    for name, text in study_texts.items():
        studies[name] = root / f"{name}.yaml"
        studies[name].write_text(text)
    other_study = root / "other-study"
    other_study.mkdir()
    (other_study / "study.json").write_text(
        json.dumps(
            {
                "format": "circuitlab-study",
                "version": 1,
                "name": "first",
                "model": {"name": "smollm2-135m-instruct", "device": "cpu", "dtype": "float32"},
                "seed": 0,
                "data": {},
                "model_fingerprint": "x",
                "file": "first.yaml",
            }
        )
    )
    return {
        "tiny": str(tiny),
        "tmp": str(root),
        "file": str(regular),
        "folder": str(folder),
        "bad_config": str(bad_config),
        "bin_only": str(bin_only),
        "no_tokenizer": str(no_tokenizer),
        "latin1_task": str(latin1_task),
        "latin1_spec": str(latin1_spec),
        "latin1_data": str(latin1_data),
        "corrupt_study": str(corrupt_study),
        "one_paraphrase": str(one_paraphrase),
        "labelled": str(labelled),
        "all_right": str(all_right),
        "no_gold": str(no_gold),
        "no_response": str(no_response),
        "empty_pairs": str(empty_pairs),
        "multi_word_task": str(multi_word_task),
        "foreign_folder": str(foreign_folder),
        "other_study": str(other_study),
        **{name: str(path) for name, path in studies.items()},
        **{name: str(path) for name, path in paths.items()},
    }


def _fill(argument: str | bytes, files: dict[str, str]) -> str | bytes:
    if isinstance(argument, bytes):
        return argument
    for key, value in files.items():
        argument = argument.replace("{" + key + "}", value)
    return argument


def _error_lines(stderr: str) -> list[str]:
    """Standard error without progress bars (lines redrawn with carriage returns)."""
    lines = [line.rsplit("\r", 1)[-1] for line in stderr.splitlines()]
    return [line for line in lines if line.strip() and "it/s]" not in line and "%|" not in line]


THROUGH_THE_CONSOLE_SCRIPT = [
    "report --json under /proc",  # an output path refused before any import
    "patch an unknown site",  # an argparse error (SystemExit inside the parser)
    "report --prompt with an invalid UTF-8 byte",  # bytes in argv, then on standard error
    "component-accuracy --task a latin-1 file",  # a file in another encoding
    "export a factor that gives NaN logits",  # a model loaded and run; nothing left behind
]
"""Cases also run as a subprocess of the real ``circuitlab`` console script."""


def _check(case: str, returncode: int, stderr: str, files: dict[str, str]) -> None:
    """The promise of every case: failure, one error line that comes last, no traceback."""
    _, expected = BAD_INPUTS[case]
    lines = _error_lines(stderr)
    assert returncode != 0, f"{case}: exit 0\n{stderr}"
    assert "Traceback" not in stderr, f"{case}: a traceback\n{stderr}"
    errors = [line for line in lines if line.startswith("circuitlab") and ": error:" in line]
    assert len(errors) == 1 and lines[-1] == errors[0], f"{case}: not one error line\n{stderr}"
    assert expected in errors[0], f"{case}: {expected!r} not in {errors[0]!r}"
    assert "=True" not in errors[0], f"{case}: an API hint instead of a flag: {errors[0]!r}"
    if case in LEAVES_NOTHING:
        left = [p.name for p in Path(files["tmp"]).iterdir() if LEAVES_NOTHING[case] in p.name]
        assert not left, f"{case}: left {left}"


def _console_script(arguments: Sequence[str | bytes]) -> tuple[int, str]:
    """Exit status and standard error of the real ``circuitlab`` script."""
    environment = {**os.environ, "CIRCUITLAB_PROGRESS": "0", "HF_HUB_OFFLINE": "1"}
    environment.pop("CIRCUITLAB_DEBUG", None)
    finished = subprocess.run(
        [str(SCRIPT), *arguments], capture_output=True, env=environment, timeout=300
    )
    return finished.returncode, finished.stderr.decode("utf-8", "replace")


def _stream_like(original: object) -> io.TextIOWrapper:
    """An in-memory stream that encodes like the interpreter's own ``original`` stream (on
    a UTF-8 locale: errors=surrogateescape for stdout, backslashreplace for stderr)."""
    encoding = getattr(original, "encoding", None) or "utf-8"
    errors = getattr(original, "errors", None) or "strict"
    return io.TextIOWrapper(io.BytesIO(), encoding=encoding, errors=errors, write_through=True)


@contextlib.contextmanager
def _library_logs_to(stream: io.TextIOWrapper) -> Iterator[None]:
    """Point plain ``StreamHandler``s (transformers', huggingface_hub's: bound to whatever
    ``sys.stderr`` was when they were made) at ``stream`` while a case runs."""
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    handlers = {
        handler
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if type(handler) is logging.StreamHandler
    }
    saved = [(handler, handler.stream, handler.__dict__.get("flush")) for handler in handlers]
    try:
        for handler in handlers:
            handler.__dict__.pop("flush", None)  # transformers pins the old stream's flush
            handler.stream = stream
        yield
    finally:
        for handler, old_stream, old_flush in saved:
            handler.stream = old_stream
            if old_flush is not None:
                handler.flush = old_flush  # type: ignore[method-assign]


def _in_process(
    arguments: Sequence[str | bytes],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> tuple[int, str]:
    """Exit status and standard error of ``main(argv)``, run as the console script would."""
    import huggingface_hub.constants

    from circuitlab.cli.main import main

    monkeypatch.setenv("CIRCUITLAB_PROGRESS", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CIRCUITLAB_DEBUG", raising=False)
    # the hub reads HF_HUB_OFFLINE once, at import: set what a fresh process would have read
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(Path.cwd())  # restored afterwards, should a command change it
    # Python decodes a byte argument of argv with the filesystem encoding and
    # surrogateescape: os.fsdecode, so the same path or text reaches the code.
    argv = [os.fsdecode(argument) for argument in arguments]
    stdout, stderr = _stream_like(sys.__stdout__), _stream_like(sys.__stderr__)
    capfd.readouterr()
    with (
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
        _library_logs_to(stderr),
    ):
        try:
            returncode = main(argv)
        except SystemExit as done:  # as the interpreter turns it into an exit status
            if done.code is None or isinstance(done.code, int):
                returncode = done.code or 0
            else:
                print(done.code, file=sys.stderr)
                returncode = 1
    # anything written to the file descriptors directly (C extensions) came first
    below_python = capfd.readouterr().err
    return returncode, below_python + stderr.buffer.getvalue().decode("utf-8", "replace")


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gets_one_clear_line(
    case: str,
    files: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    arguments = [_fill(argument, files) for argument in BAD_INPUTS[case][0]]
    returncode, stderr = _in_process(arguments, monkeypatch, capfd)
    _check(case, returncode, stderr, files)


@pytest.mark.parametrize("case", THROUGH_THE_CONSOLE_SCRIPT)
def test_bad_input_through_the_console_script(case: str, files: dict[str, str]) -> None:
    arguments = [_fill(argument, files) for argument in BAD_INPUTS[case][0]]
    returncode, stderr = _console_script(arguments)
    _check(case, returncode, stderr, files)


def test_debug_shows_the_traceback(files: dict[str, str]) -> None:
    finished = subprocess.run(
        [str(SCRIPT), "export", files["spec_abc"], f"{files['tmp']}/o", "--debug"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 2
    assert "Traceback" in finished.stderr and "must be a number" in finished.stderr


def test_the_table_covers_every_command() -> None:
    from circuitlab.cli.main import build_parser

    parser = build_parser()
    commands = {
        name
        for action in parser._actions
        if hasattr(action, "choices") and isinstance(action.choices, dict)
        for name in action.choices
    }
    covered = {arguments[0] for arguments, _ in BAD_INPUTS.values()}
    assert commands <= covered, commands - covered
