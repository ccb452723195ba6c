"""The circuitlab command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from circuitlab import (
    AblationEffects,
    Attribution,
    ComponentAccuracy,
    LayerScores,
    ReweightingStudy,
)
from circuitlab.attention import AttentionPattern, HeadSummary
from circuitlab.cli.main import build_parser, main
from circuitlab.ila import ILARanking
from circuitlab.lens import LogitLens
from circuitlab.patching import AttributionPatching, PatchingMap


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
    "command",
    [
        [],
        ["report"],
        ["decompose"],
        ["component-accuracy"],
        ["ablate"],
        ["export"],
        ["layer-scores"],
        ["prune-study"],
        ["models"],
        ["models", "list"],
        ["models", "fetch"],
        ["patch"],
        ["logit-lens"],
        ["attention"],
        ["study"],
    ],
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args([*command, "--help"])
    assert caught.value.code == 0
    assert "usage: circuitlab" in capsys.readouterr().out


def test_decompose_command(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plot, saved = tmp_path / "dla.json", tmp_path / "heads.png", tmp_path / "dla.safetensors"
    code = main(
        [
            "decompose",
            "--model",
            str(tiny_folder),
            "--prompt",
            "the capital of france is",
            "--prompt",
            "a cat sat",
            "--target",
            "paris",
            "--diff",
            "yes",
            "no",
            "--top-k",
            "3",
            "--json",
            str(out),
            "--plot",
            str(plot),
            "--save",
            str(saved),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "target 'paris'" in printed and "target 'yes' - 'no'" in printed
    report = json.loads(out.read_text())
    assert report["run"]["reconstruction_error"] < 1e-5
    result = Attribution.from_document(report)
    assert result.targets == ("'paris'", "'yes' - 'no'") and result.values.shape == (2, 11, 2)
    assert result.prompts == ("the capital of france is", "a cat sat")
    assert plot.stat().st_size > 1000 and saved.stat().st_size > 0
    torch.testing.assert_close(Attribution.load(saved).values, result.values)


def test_decompose_bad_input(tiny_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["decompose", "--model", str(tiny_folder), "--prompt", "a cat"]) == 2
    assert "at least one --target" in capsys.readouterr().err
    args = ["decompose", "--model", str(tiny_folder), "--prompt", "a cat", "--target", "paris"]
    assert main([*args, "--position", "5"]) == 2
    assert "out of range for prompt 0" in capsys.readouterr().err
    assert (
        main(["decompose", "--model", str(tiny_folder), "--prompt", "a", "--target", "a cat"]) == 2
    )
    assert "is 2 tokens" in capsys.readouterr().err


def test_component_accuracy_command(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task_file = tmp_path / "task.jsonl"
    rows = [
        ("the movie was good", "yes"),
        ("the movie was bad", "no"),
        ("a great film", "yes"),
        ("a terrible film", "no"),
        ("really good", "yes"),
        ("not good", "no"),
    ]
    task_file.write_text("".join(json.dumps({"review": t, "label": y}) + "\n" for t, y in rows))
    out, table = tmp_path / "acc.json", tmp_path / "acc.csv"
    code = main(
        [
            "component-accuracy",
            "--model",
            str(tiny_folder),
            "--task",
            str(task_file),
            "--text-column",
            "review",
            "--label-words",
            "no",
            "yes",
            "--k-shot",
            "2",
            "--json",
            str(out),
            "--csv",
            str(table),
            "--plot",
            str(tmp_path / "acc.png"),
        ]
    )
    assert code == 0
    assert "full model accuracy" in capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["run"]["examples"] == 6 and report["run"]["component_types"]["chance"] == 0.5
    result = ComponentAccuracy.load(out)
    assert {str(c) for c in result.components} >= {"EMBED", "L0H0", "MLP1"}
    assert all(0.0 <= value <= 1.0 for value in result.accuracy.tolist())
    assert table.read_text().startswith("component,accuracy,majority_label")


def test_component_accuracy_bad_task(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["component-accuracy", "--model", str(tiny_folder), "--task", "nope"]) == 2
    assert "sentiment" in capsys.readouterr().err
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["component-accuracy", "--model", str(tiny_folder), "--task", str(empty)]) == 2
    assert "empty" in capsys.readouterr().err.lower()
    multi_token = ["--label-words", "very good", "bad", "--limit", "4"]
    assert (
        main(
            ["component-accuracy", "--model", str(tiny_folder), "--task", "sentiment", *multi_token]
        )
        == 2
    )
    assert "Label word 'very good' is 2 tokens" in capsys.readouterr().err


def test_ablate_command_on_prompts_writes_table_json_and_heatmap(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, table, plot = tmp_path / "ablate.json", tmp_path / "ablate.csv", tmp_path / "ablate.png"
    args = ["ablate", "--model", str(tiny_folder), "--prompt", "the cat sat on the"]
    args += ["--prompt", "a dog", "--target", "mat", "--top-k", "2"]
    code = main([*args, "--json", str(out), "--csv", str(table), "--plot", str(plot)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "zero ablation of 12 components" in printed and "ablating hurts most" in printed
    effects = AblationEffects.load(out)
    assert effects.metric == "log_prob" and len(effects) == 2
    rows = {row["component"]: row for row in effects.to_frame().to_dict(orient="records")}
    heads = {f"L{layer}H{head}" for layer in range(2) for head in range(4)}
    assert set(rows) == heads | {"MLP0", "MLP1", "L0", "L1"}
    for row in rows.values():
        assert row["effect"] == pytest.approx(row["log_prob_ablated"] - effects.baseline_value)
    assert table.read_text().startswith("component,kind,layer,head,log_prob_ablated")
    assert plot.stat().st_size > 1000


def test_ablate_command_on_a_task_with_mean_ablation(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = tmp_path / "reference.txt"
    reference.write_text("the cat sat\na dog\n")
    out = tmp_path / "ablate.json"
    args = ["ablate", "--model", str(tiny_folder), "--task", "sentiment", "--limit", "4"]
    args += ["--label-words", "no", "yes", "--components", "L1H2", "mlps", "--method", "mean"]
    args += ["--reference", str(reference), "--metric", "accuracy", "--json", str(out)]
    assert main(args) == 0
    effects = AblationEffects.load(out)
    assert effects.data == "sentiment" and effects.method == "mean"
    assert [str(c) for c in effects.components] == ["MLP0", "L1H2", "MLP1"]
    assert all(0.0 <= value <= 1.0 for value in effects.to_frame()["accuracy_ablated"])


def test_ablate_bad_input_exits_2_with_a_message(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["ablate", "--model", str(tiny_folder)]
    assert main([*base, "--prompt", "a cat"]) == 2
    assert "--prompt needs --target" in capsys.readouterr().err
    assert main([*base, "--task", "sentiment", "--target", "yes"]) == 2
    assert "--target and --diff go with --prompt" in capsys.readouterr().err
    assert main([*base, "--prompt", "a", "--target", "cat", "--reference", "x.txt"]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "ref.txt").write_text("a cat\n")
    reference = ["--reference", str(tmp_path / "ref.txt")]
    assert main([*base, "--prompt", "a", "--target", "cat", *reference]) == 2
    assert "--method mean or resample" in capsys.readouterr().err
    assert main([*base, "--prompt", "a", "--target", "cat", "--components", "L9"]) == 2
    assert "layer 9" in capsys.readouterr().err


def test_export_command_bakes_a_spec_and_checks_it(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "edits.yaml"
    spec.write_text(
        "interventions:\n"
        "  - {kind: ablate, component: L0H1}\n"
        "  - {kind: scale, component: MLP1, factor: 0.5}\n"
        "  - {kind: ablate, component: L1H2, method: mean, reference: [a cat, the dog sat]}\n"
        "  - {kind: prune_layers, layers: [0]}\n"
    )
    output, out = tmp_path / "edited", tmp_path / "export.json"
    args = ["export", str(spec), str(output), "--model", str(tiny_folder), "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "4 intervention(s) baked" in printed and ": ok" in printed
    report = json.loads(out.read_text())
    assert report["run"]["max_logit_difference"] <= 1e-4
    assert len(report["interventions"]) == 4  # the export record: a spec that loads again
    assert (output / "config.json").exists() and (output / "circuitlab_export.json").exists()
    # the folder is not replaced without --overwrite; the record repeats the export on the
    # model it names (the local folder's path), no --model needed
    record = json.loads((output / "circuitlab_export.json").read_text())
    assert record["model"] == str(tiny_folder.resolve())
    again = ["export", str(output / "circuitlab_export.json"), str(output)]
    assert main(again) == 2
    assert "overwrite" in capsys.readouterr().err
    assert main([*again, "--overwrite", "--no-check"]) == 0


def test_export_command_refuses_bad_specs_and_unbakeable_edits(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("[{kind: ablate, component: L0H1, strength: 2}]")
    assert main(["export", str(spec), str(tmp_path / "a"), "--model", str(tiny_folder)]) == 2
    assert "unknown field(s) ['strength']" in capsys.readouterr().err
    spec.write_text("[{kind: ablate, component: L0H1, method: resample, reference: [a cat]}]")
    assert main(["export", str(spec), str(tmp_path / "b"), "--model", str(tiny_folder)]) == 2
    assert "differs per prompt" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.real_model
def test_ablate_command_on_the_embedded_model(
    tmp_path: Path, smollm2: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scripted ablation study on the default model: which layers does ' Paris' need?"""
    out = tmp_path / "paris.json"
    args = ["ablate", "--prompt", "The capital of France is", "--target", " Paris"]
    assert main([*args, "--components", "layers", "mlps", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["run"]["model"] == "smollm2-135m-instruct"
    study = AblationEffects.load(out)
    assert len(study.components) == 60
    assert math.exp(study.baseline_value) == pytest.approx(0.77, abs=0.02)
    frame = study.to_frame()
    effects = dict(zip(frame["component"], frame["effect"], strict=True))
    assert min(effects.values()) < -5.0  # some layer is essential: ' Paris' all but vanishes
    assert effects["L0"] <= effects["MLP0"] + 1.0  # a whole layer removes at least its MLP


def test_reweight_command_fits_evaluates_and_saves(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, weights, table = tmp_path / "rw.json", tmp_path / "rw.safetensors", tmp_path / "rw.csv"
    args = ["reweight", "--model", str(tiny_folder), "--task", "sentiment"]
    args += ["--label-words", "no", "yes", "--k", "6", "8", "--demos", "2", "--n-test", "8"]
    args += ["--demo-sets", "2", "--templates", "0", "1", "--save", str(weights)]
    checkpoint = ["--checkpoint", str(tmp_path / "runs.json")]
    assert main([*args, *checkpoint, "--json", str(out), "--csv", str(table)]) == 0
    printed = capsys.readouterr().out
    assert "4 run(s), K' = 2 demonstrations, 8 balanced test examples" in printed
    assert "CompRW" in printed and "ICL K-shot" in printed
    study = ReweightingStudy.load(out)
    assert study.settings["ks"] == [6, 8] and len(study.records) == 4 * 2 * 7
    assert all(0 <= r["accuracy"] <= 1 for r in study.records if r["method"] != "icl_all")
    # 8-shot prompts of real sentences can overflow the tiny model's context: skipped, said why
    skipped = [r for r in study.records if math.isnan(r["accuracy"])]
    assert skipped and {r["method"] for r in skipped} == {"icl_all"}
    assert "note: ICL K-shot skipped for K=8" in printed and "context is 128 tokens" in printed
    assert "n/a" in printed
    assert table.read_text().startswith("method,k,mean,std,runs")
    from circuitlab import ComponentReweighting

    loaded = ComponentReweighting.load(weights)
    assert loaded.label_words_ == ("no", "yes") and len(loaded.weights_) == 2 * 4 + 2
    assert torch.equal(loaded.weights_, study.weights[0, 0, -1])  # the study's own fit
    # the rerun reads every run back from the checkpoint
    assert len(json.loads((tmp_path / "runs.json").read_text())["entries"]) == 4
    again = tmp_path / "again.json"
    assert main([*args, *checkpoint, "--json", str(again)]) == 0
    records = json.loads(out.read_text())["fields"]["records"]
    assert json.loads(again.read_text())["fields"]["records"] == records


def test_reweight_bad_input_exits_2_with_a_message(
    tiny_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["reweight", "--model", str(tiny_folder), "--task", "sentiment"]
    base += ["--label-words", "no", "yes"]
    assert main([*base, "--k", "4", "--demos", "4"]) == 2
    assert "K=4 labelled examples with 4 of them as demonstrations" in capsys.readouterr().err
    assert main([*base, "--l1", "-1"]) == 2
    assert "argument --l1: must be a finite number, 0 or more, got -1" in capsys.readouterr().err


def test_layer_scores_command_writes_tables_and_figures(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "texts.jsonl"
    rows = ["the cat sat on the mat", "paris is the capital city of france", "the sky is blue"]
    data.write_text("".join(json.dumps({"text": text}) + "\n" for text in rows))
    out, report = tmp_path / "scores", tmp_path / "scores.json"
    args = ["layer-scores", "--model", str(tiny_folder), "--data", str(data), "--k", "50"]
    assert main([*args, "--out", str(out), "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "2 layers scored on" in printed and "avss" in printed and "50% lowest" in printed
    table = (out / "layer_scores.csv").read_text().splitlines()
    assert table[0] == "layer,avss,block_influence,angular_distance,random,drop_last"
    assert len(table) == 3
    assert {p.name for p in out.glob("*.png")} == {
        f"{m}.png" for m in ("avss", "block_influence", "angular_distance", "random", "drop_last")
    }
    saved = json.loads(report.read_text())["results"]
    avss = LayerScores.from_document(saved["avss"])
    assert avss.settings["tokens"] == 17 and len(avss.values) == 2
    assert json.loads((out / "layer_scores.json").read_text())["results"].keys() == saved.keys()


def test_prune_study_command_evaluates_resumes_and_exports(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, export = tmp_path / "study", tmp_path / "pruned"
    args = ["prune-study", "--model", str(tiny_folder), "--out", str(out), "--k", "25", "40"]
    args += ["--methods", "avss", "drop_last", "ground_truth", "--qa-questions", "6"]
    args += ["--perplexity-tokens", "40", "--sentiment-examples", "10"]
    assert main([*args, "--export", str(export), "--export-k", "40"]) == 0
    printed = capsys.readouterr().out
    assert "k = 25%: retention" in printed and "Spearman ρ with the ground truth" in printed
    for name in ("study.json", "retention.csv", "spearman.csv", "layer_scores.csv"):
        assert (out / name).is_file()
    assert (out / "retention.png").is_file() and (out / "ground_truth.png").is_file()
    study = json.loads((out / "study.json").read_text())
    assert study["header"]["kind"] == "PruningStudy"
    rows = study["fields"]["rows"]
    assert {row["method"] for row in rows} == {"avss", "drop_last", "ground_truth"}
    assert "exported" in printed and "plain transformers reloads it within" in printed
    config = json.loads((export / "config.json").read_text())
    assert config["num_hidden_layers"] == 1  # 40% of 2 layers: one removed
    assert main(args) == 0  # a rerun resumes from out/evaluations.json
    assert "study took 0 s" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--k", "0"], "must be a percentage above 0 and below 100"),
        (["--k", "100"], "must be a percentage above 0 and below 100"),
        (["--k", "99"], "leaves no layers"),
        (["--epsilon", "-1"], "argument --epsilon: must be a finite number above 0, got -1"),
        (["--epsilon", "nan"], "argument --epsilon: must be a finite number above 0, got nan"),
        (["--data", "no-such-file.txt"], "neither a shipped prose split"),
    ],
)
def test_layer_commands_bad_input_exit_2(
    tiny_folder: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    base = ["--model", str(tiny_folder), "--methods", "avss"]
    assert main(["layer-scores", *base, *extra]) == 2
    assert message in capsys.readouterr().err
    if "--k" not in extra:
        study = ["prune-study", *base, "--out", str(tmp_path / "s"), "--tasks", "perplexity"]
        assert main([*study, *extra]) == 2
        assert message in capsys.readouterr().err


def test_layer_scores_on_an_empty_file_exits_2(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    assert main(["layer-scores", "--model", str(tiny_folder), "--data", str(empty)]) == 2
    assert "The data set is empty" in capsys.readouterr().err


def test_ila_rank_and_finetune_commands(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        "".join(
            json.dumps({"instruction": f"the cat {w}", "response": "the dog sat ."}) + "\n"
            for w in ("sat", "ran", "is", "a", "on", "mat", "dog", "the", "sat on", "ran on")
        )
    )
    rank = ["ila-rank", "--model", str(tiny_folder), "--data", str(pairs), "facts"]
    rank += ["--limit", "8", "--max-steps", "3", "--gate-steps", "2", "--seeds", "0", "1"]
    rank += ["--save", str(tmp_path / "r.json"), "--json", str(tmp_path / "rank.json")]
    rank += ["--plot", str(tmp_path / "overlap.png")]
    assert main(rank) == 0
    printed = capsys.readouterr().out
    assert "Jaccard overlap of the top 1 layers" in printed and "layers_to_transform=" in printed
    document = json.loads((tmp_path / "rank.json").read_text())
    assert len(document["rankings"]) == 4 and document["overlap"] is not None
    assert (tmp_path / "overlap.png").stat().st_size > 0
    ranking = ILARanking.load(tmp_path / "r.json")
    tune = ["ila-finetune", "--model", str(tiny_folder), "--data", str(pairs), "--select", "top"]
    tune += ["--ranking", str(tmp_path / "r.json"), "--steps", "2", "--export"]
    tune += [str(tmp_path / "adapter"), "--json", str(tmp_path / "tune.json")]
    assert main(tune) == 0
    result = json.loads((tmp_path / "tune.json").read_text())
    assert result["layers"] == list(ranking.top(percent=25))
    assert len(result["step_losses"]) == 2 and result["heldout_loss_after"] > 0
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_folder)
    PeftModel.from_pretrained(base, tmp_path / "adapter")  # plain peft reloads it


def test_attention_command_writes_html_figure_and_json(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page, plot, out = tmp_path / "view.html", tmp_path / "view.png", tmp_path / "view.json"
    args = ["attention", "--model", str(tiny_folder), "--prompt", "the cat sat on the mat"]
    code = main([
        *args, "--head", "L1H3", "--layer", "0", "--html", str(page), "--plot", str(plot),
        "--json", str(out),
    ])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "L1H3 (KV group 1 of 2): query → the key it attends to most" in printed
    view = AttentionPattern.from_document(json.loads(out.read_text()))
    assert [str(head) for head in view.heads] == ["L0H0", "L0H1", "L0H2", "L0H3", "L1H3"]
    assert view.tokens == ("the", "cat", "sat", "on", "the", "mat")
    torch.testing.assert_close(view.pattern.sum(-1), torch.ones(5, 6))
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "http" not in html and "<script" not in html
    assert plot.stat().st_size > 1000
    summary_json = tmp_path / "summary.json"
    code = main([
        "attention", "--model", str(tiny_folder), "--summary", "--sequences", "4", "--length",
        "6", "--top", "2", "--json", str(summary_json),
    ])  # fmt: skip
    assert code == 0
    summary = HeadSummary.from_document(json.loads(summary_json.read_text()))
    assert summary.scores.shape == (4, 2, 4) and summary.settings["sequences"] == 4
    printed = capsys.readouterr().out
    for name in ("previous_token", "first_token", "same_token", "induction"):
        ranked = ", ".join(f"{head} {value:.2f}" for head, value in summary.top(name, 2))
        assert f"  {name:<15} {ranked}" in printed


def test_logit_lens_command(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plot = tmp_path / "lens.json", tmp_path / "lens.png"
    code = main(
        [
            "logit-lens", "--model", str(tiny_folder), "--prompt", "the capital of france is",
            "--prompt", "the cat sat", "--target", "paris", "--k", "3", "--position", "all",
            "--json", str(out), "--plot", str(plot),
        ]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "logit lens of 2 prompt(s) over 3 layers" in printed
    assert "'the cat sat', read after token 2 'sat':" in printed
    lens = LogitLens.from_document(json.loads(out.read_text()))
    assert lens.targets == ("'paris'",) and lens.k == 3 and lens.lengths.tolist() == [5, 3]
    assert plot.stat().st_size > 1000


def test_patch_command_writes_the_layer_by_position_map(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, plot = tmp_path / "map.json", tmp_path / "map.png"
    pair = ["--clean", "the cat sat on the", "--corrupted", "the dog sat on the"]
    code = main(
        ["patch", "--model", str(tiny_folder), *pair, "--diff", "mat", "rug", "--site",
         "resid_pre", "--json", str(out), "--plot", str(plot)]
    )  # fmt: skip
    assert code == 0
    assert "denoise patching of resid_pre" in capsys.readouterr().out
    document = json.loads(out.read_text())
    table = document["map"]
    assert table["layers"] == [0, 1] and table["positions"] == [0, 1, 2, 3, 4]
    assert len(table["values"]) == 2 and all(len(row) == 5 for row in table["values"])
    result = PatchingMap.from_document(document)
    assert table["values"][1][3] == pytest.approx(float(result.values[0, 1, 3]))
    assert table["clean"] == pytest.approx(float(result.clean[0]))
    # patching the changed word at layer 0 restores the clean run exactly
    assert table["values"][0][1] == pytest.approx(table["clean"], abs=1e-5)
    assert plot.stat().st_size > 1000
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps({"clean": "the cat sat on the", "corrupted": "the dog sat on the",
                    "answer": "mat", "wrong": "rug"}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    estimate = tmp_path / "estimate.json"
    code = main(
        ["patch", "--model", str(tiny_folder), "--pairs", str(pairs), "--attribution", "--exact",
         "--json", str(estimate)]
    )  # fmt: skip
    assert code == 0
    assert "Spearman" in capsys.readouterr().out
    assert len(AttributionPatching.from_document(json.loads(estimate.read_text())).components) == 11


def test_consistency_edit_evaluate_all_sweeps_every_input_of_the_task(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from circuitlab.consistency import ConsistencySweep

    words = "the a cat dog sky city movie film review very not good bad blue green red".split()
    picks = torch.randint(len(words), (40, 4), generator=torch.Generator().manual_seed(0))
    inputs, paraphrases = tmp_path / "inputs.jsonl", tmp_path / "paraphrases.jsonl"
    inputs.write_text("".join(
        json.dumps({"text": " ".join(words[i] for i in row), "label": ["no", "yes"][n % 2]}) + "\n"
        for n, row in enumerate(picks.tolist())
    ))  # fmt: skip
    templates = ["{text} ?", "question : {text} ?", "{text} . answer", "is {text} ?",
                 "{text} , yes or no ?", "the answer to {text} is", "{text} ! really ?",
                 "review : {text}"]  # fmt: skip
    paraphrases.write_text("".join(
        json.dumps({"template": t, "split": "heldout" if i >= 5 else "locate"}) + "\n"
        for i, t in enumerate(templates)
    ))  # fmt: skip
    task = ["--model", str(tiny_folder), "--task", str(inputs), "--paraphrases", str(paraphrases)]
    heads = tmp_path / "heads.safetensors"
    assert main(["consistency-heads", *task, "--save", str(heads)]) == 0
    edit = ["consistency-edit", *task, "--heads", str(heads), "--alphas", "2", "--ks", "1"]
    edit.append("--control-seeds")  # none: base and one located setting
    sweeps = {name: tmp_path / f"{name}.json" for name in ("held-out", "every", "limited")}
    assert main([*edit, "--json", str(sweeps["held-out"])]) == 0
    assert "(held-out inputs, held-out paraphrases)" in capsys.readouterr().out
    assert main([*edit, "--evaluate-all", "--json", str(sweeps["every"])]) == 0
    assert "(every input, held-out paraphrases)" in capsys.readouterr().out
    arguments = [*edit, "--evaluate-all", "--limit", "10", "--json", str(sweeps["limited"])]
    assert main(arguments) == 0
    measured = {name: ConsistencySweep.load(path) for name, path in sweeps.items()}
    counts = {name: sweep.settings["inputs"] for name, sweep in measured.items()}
    assert counts == {"held-out": 20, "every": 40, "limited": 10}
    assert [row["inputs"] for row in measured["every"].rows] == [40.0, 40.0]
    assert measured["every"].settings["templates"] == [5, 6, 7]  # still the held-out paraphrases
    # without located heads there is nothing to evaluate on every input: refused, before the
    # model loads
    assert main(["consistency-edit", *task, "--evaluate-all"]) == 2
    error = capsys.readouterr().err
    assert "--evaluate-all evaluates heads located beforehand" in error and "--heads FILE" in error
