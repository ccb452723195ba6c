"""Reproduce the consistency-heads experiment (docs/reproductions/consistency.md).

For every model: split the shipped sentiment paraphrase task's inputs in two (seeded, class
balanced), locate the consistency heads on the first half under the locating paraphrases,
then measure on the other half under the held-out paraphrases the base model and every
α x K edit, with random heads (three seeds) and random directions as controls. The same
heads, located on sentiment, are then tried on the topic task (transfer: a task not used for
locating). The best edit is exported and reloaded with plain ``transformers``, which must give
the same answer on every held-out prompt. Each setting is checkpointed as it finishes
(``--work-dir``), so an interrupted run resumes; the page is rendered from the saved JSON.

    python scripts/reproduce_consistency.py --model smollm2-135m-instruct
    python scripts/reproduce_consistency.py --model gemma3-270m
    python scripts/reproduce_consistency.py --render-only
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import circuitlab
from circuitlab.consistency import (
    ConsistencyHeads,
    ConsistencySweep,
    consistency_sweep,
    export_consistency_edit,
    load_paraphrase_task,
    locate_consistency_heads,
)
from circuitlab.models.cache import atomic_file, cache_root

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "reproductions" / "data"
FIGURES = ROOT / "docs" / "reproductions" / "figures"
PAGE = ROOT / "docs" / "reproductions" / "consistency.md"
INTRO = ROOT / "scripts" / "consistency_intro.md"
MODELS = ("smollm2-135m-instruct", "gemma3-270m")
LOCATE_TASK = "sentiment"
TRANSFER_TASK = "topic"
ALPHAS = (1, 3, 5, 7, 9)
KS = (5, 15, 25, 35)
HEAD_SEEDS = (0, 1, 2)
DIRECTION_SEEDS = (0,)
TRANSFER_HEAD_SEEDS = (0,)
SPLIT_SEED = 0
TRANSFER_INPUTS = 100
BATCH_SIZE = 32
PAPER = {0: 85.66, 1: 89.90, 3: 89.90, 5: 89.90, 7: 88.53, 9: 83.48}
"""Table 4 of arXiv 2501.11041 by α (consistency, %, RobustSST2, Llama-2-7B; 0 is the base
model; the paper gives one number for α = 1..5)."""


def _paths(model_name: str) -> dict[str, Path]:
    stem = f"consistency-{model_name}"
    return {
        "heads": DATA / f"{stem}-heads.json",
        "sweep": DATA / f"{stem}-{LOCATE_TASK}.json",
        "transfer": DATA / f"{stem}-transfer-{TRANSFER_TASK}.json",
        "run": DATA / f"{stem}-run.json",
    }


def _write_json(data: Any, path: Path) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


def run(model_name: str, args: argparse.Namespace) -> None:
    """Locate, sweep, transfer and export-check one model; save its JSON files."""
    paths = _paths(model_name)
    if paths["run"].exists() and not args.rerun:
        print(f"{paths['run'].name} exists, skipped (pass --rerun to redo it)")
        return
    work = Path(args.work_dir) / model_name
    work.mkdir(parents=True, exist_ok=True)
    model = circuitlab.load(model_name)
    task = load_paraphrase_task(LOCATE_TASK)
    locate_task, test_task = task.split_inputs(0.5, seed=SPLIT_SEED)
    task.check_label_words(model)
    timings: dict[str, float] = {}

    if paths["heads"].exists() and paths["run"].exists():  # a rerun keeps the located heads
        heads = ConsistencyHeads.load(paths["heads"])
        timings["locate"] = json.loads(paths["run"].read_text())["seconds"]["locate"]
    else:
        started = time.perf_counter()
        heads = locate_consistency_heads(
            model, locate_task, seed=SPLIT_SEED, batch_size=BATCH_SIZE, progress=True
        )
        timings["locate"] = time.perf_counter() - started
        heads.save(paths["heads"])
    print(heads)

    started = time.perf_counter()
    sweep = consistency_sweep(
        model,
        test_task,
        heads,
        alphas=ALPHAS,
        ks=KS,
        control_seeds=HEAD_SEEDS,
        direction_seeds=DIRECTION_SEEDS,
        batch_size=BATCH_SIZE,
        checkpoint=work / "sweep.json",
        progress=True,
    )
    timings["sweep"] = time.perf_counter() - started
    sweep.save(paths["sweep"])
    print(sweep)

    transfer_task = load_paraphrase_task(TRANSFER_TASK).balanced_sample(
        TRANSFER_INPUTS, seed=SPLIT_SEED
    )
    transfer_task.check_label_words(model)
    started = time.perf_counter()
    transfer = consistency_sweep(
        model,
        transfer_task,
        heads,
        alphas=ALPHAS,
        ks=KS,
        control_seeds=TRANSFER_HEAD_SEEDS,
        direction_seeds=(),
        batch_size=BATCH_SIZE,
        checkpoint=work / "transfer.json",
        progress=True,
    )
    timings["transfer"] = time.perf_counter() - started
    transfer.save(paths["transfer"])
    print(transfer)

    best = sweep.best()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=work) as scratch:
        edits = heads.interventions(model, best["k"], best["alpha"])
        _, answers = export_consistency_edit(
            model, edits, Path(scratch) / "export", test_task, batch_size=BATCH_SIZE
        )
        shutil.rmtree(Path(scratch) / "export", ignore_errors=True)
    timings["export_check"] = time.perf_counter() - started
    summary = answers.summary()
    reproduced = all(
        abs(summary[key] - best[key]) < 1e-9 for key in ("consistency_rate", "accuracy_mean")
    )
    _write_json(
        {
            "model": model_name,
            "split": {
                "locate_inputs": len(locate_task.task),
                "test_inputs": len(test_task.task),
                "transfer_inputs": len(transfer_task.task),
                "seed": SPLIT_SEED,
            },
            "export": {
                "k": best["k"],
                "alpha": best["alpha"],
                "prompts": int(answers.answers.numel()),
                "same_answers": True,
                "reproduces_sweep_row": reproduced,
                "summary": summary,
            },
            "seconds": timings,
            "torch_threads": __import__("torch").get_num_threads(),
        },
        paths["run"],
    )
    print(f"{model_name}: done in {sum(timings.values()):.0f} s")


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


def _located_table(sweep: ConsistencySweep, metric: str) -> list[str]:
    rows = [r for r in sweep.rows if r["method"] == "located"]
    alphas = sorted({r["alpha"] for r in rows})
    ks = sorted({r["k"] for r in rows})
    base = sweep.base()[metric]
    lines = [
        "| K \\ α | " + " | ".join(f"{a:g}" for a in alphas) + " |",
        "|---|" + "---|" * len(alphas),
    ]
    for k in ks:
        cells = []
        for alpha in alphas:
            (row,) = [r for r in rows if r["k"] == k and r["alpha"] == alpha]
            delta = 100 * (row[metric] - base)
            cells.append(f"{_pct(row[metric])} ({delta:+.1f})")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    return lines


def _control_table(sweep: ConsistencySweep) -> list[str]:
    """Per K: located vs the controls, at each α (controls: mean over seeds, min..max)."""
    frame = sweep.to_frame()
    edited = frame[frame["method"] != "base"]
    alphas = sorted(edited["alpha"].unique())
    lines = [
        "| K | heads | " + " | ".join(f"α={a:g}" for a in alphas) + " |",
        "|---|---|" + "---|" * len(alphas),
    ]
    names = {
        "located": "located",
        "random_heads": "random heads",
        "random_direction": "random direction",
    }
    for k in sorted(edited["k"].unique()):
        for method, label in names.items():
            group = edited[(edited["k"] == k) & (edited["method"] == method)]
            if group.empty:
                continue
            cells = []
            for alpha in alphas:
                values = group[group["alpha"] == alpha]["consistency_rate"]
                if len(values) == 1:
                    cells.append(_pct(values.iloc[0]))
                else:
                    cells.append(
                        f"{_pct(values.mean())} ({_pct(values.min())}–{_pct(values.max())})"
                    )
            lines.append(f"| {k} | {label} | " + " | ".join(cells) + " |")
    return lines


def _verdict(sweep: ConsistencySweep) -> str:
    frame = sweep.to_frame()
    base = sweep.base()
    best = sweep.best()
    gain = 100 * (best["consistency_rate"] - base["consistency_rate"])
    controls = frame[frame["method"].isin(["random_heads", "random_direction"])]
    control_best = controls["consistency_rate"].max() if not controls.empty else float("nan")
    located = frame[frame["method"] == "located"]
    helped = int((located["consistency_rate"] > base["consistency_rate"]).sum())
    text = (
        f"Best located edit K={best['k']}, α={best['alpha']:g}: consistency "
        f"{_pct(best['consistency_rate'])}% vs base {_pct(base['consistency_rate'])}% "
        f"({gain:+.1f} points), accuracy {_pct(best['accuracy_mean'])}% vs "
        f"{_pct(base['accuracy_mean'])}%. {helped} of {len(located)} located settings raise "
        f"consistency above the base model."
    )
    if controls.empty:
        return text
    grid = frame[frame["method"] != "base"].pivot_table(
        index=["k", "alpha"], columns="method", values="consistency_rate"
    )  # controls averaged over their seeds
    for control, label in (
        ("random_heads", "random heads"),
        ("random_direction", "random directions"),
    ):
        if control in grid.columns:
            difference = 100 * (grid["located"] - grid[control])
            text += (
                f" Against {label} at the same (K, α): {difference.mean():+.1f} points on average "
                f"(from {difference.min():+.1f} to {difference.max():+.1f})."
            )
    if control_best >= best["consistency_rate"]:
        text += (
            f" A control does as well or better (best control {_pct(control_best)}%): on this "
            f"model the located heads are **not** better than random heads or directions."
        )
    else:
        text += (
            f" The best control reaches {_pct(control_best)}%, "
            f"{100 * (best['consistency_rate'] - control_best):.1f} points below."
        )
    return text


def _model_section(model_name: str) -> list[str]:
    paths = _paths(model_name)
    if not all(path.exists() for path in paths.values()):
        return [f"## {model_name}", "", "Not run yet: see the commands above.", ""]
    heads = ConsistencyHeads.load(paths["heads"])
    sweep = ConsistencySweep.load(paths["sweep"])
    transfer = ConsistencySweep.load(paths["transfer"])
    run_facts = json.loads(paths["run"].read_text())
    FIGURES.mkdir(parents=True, exist_ok=True)
    for suffix, figure in (
        ("heads", heads.plot()),
        (LOCATE_TASK, sweep.plot()),
        (f"transfer-{TRANSFER_TASK}", transfer.plot()),
    ):
        with atomic_file(FIGURES / f"consistency-{model_name}-{suffix}.png") as tmp:
            figure.savefig(tmp, dpi=110, format="png", bbox_inches="tight")
    split = run_facts["split"]
    seconds = run_facts["seconds"]
    export = run_facts["export"]
    base = sweep.base()
    settings = heads.settings
    top = ", ".join(f"{head} {100 * value:.1f}" for head, value in heads.top(5))
    best_probe = heads.top(1)[0][1]
    probe_verdict = (
        f"The best probe beats the majority label by {100 * (best_probe - heads.chance):.1f} "
        f"points."
        if best_probe > heads.chance
        else "**No head's probe beats the majority label** on the locate split: on this model "
        "the head outputs do not predict consistency beyond the class balance, so the ranking "
        "below is close to arbitrary."
    )
    lines = [
        f"## {model_name}",
        "",
        f"**Locating** ({split['locate_inputs']} sentiment inputs x "
        f"{len(settings['paraphrases'])} locating paraphrases: {settings['consistent']} "
        f"consistent and {settings['inconsistent']} inconsistent prompts; probes trained on "
        f"{settings['probe_inputs']} inputs, ranked on {settings['locate_inputs']}; "
        f"{seconds['locate']:.0f} s): chance (majority label) {_pct(heads.chance)}%; best heads "
        f"(locate accuracy, %): {top}. {probe_verdict}",
        "",
        f"![probe accuracy per head](figures/consistency-{model_name}-heads.png)",
        "",
        f"**Held-out evaluation** ({split['test_inputs']} other sentiment inputs x "
        f"{len(sweep.settings['templates'])} held-out paraphrases; {len(sweep.rows)} settings in "
        f"{seconds['sweep'] / 60:.0f} min of wall time). Base model: consistency "
        f"{_pct(base['consistency_rate'])}% (per paraphrase {_pct(base['consistency_mean'])} ± "
        f"{_pct(base['consistency_std'])}), accuracy {_pct(base['accuracy_mean'])} ± "
        f"{_pct(base['accuracy_std'])}%.",
        "",
        _verdict(sweep),
        "",
        "Consistency rate (%) of the located heads, change from the base model in brackets:",
        "",
        *_located_table(sweep, "consistency_rate"),
        "",
        "Accuracy (%, mean over held-out paraphrases) of the located heads:",
        "",
        *_located_table(sweep, "accuracy_mean"),
        "",
        f"Located heads against the controls (consistency %; random heads: mean over seeds "
        f"{', '.join(map(str, sweep.settings['control_seeds']))} with min–max; random "
        f"direction: seed {', '.join(map(str, sweep.settings['direction_seeds']))}):",
        "",
        *_control_table(sweep),
        "",
        f"![sweep](figures/consistency-{model_name}-{LOCATE_TASK}.png)",
        "",
        f"**Transfer to {TRANSFER_TASK}** (heads and directions from sentiment, "
        f"{split['transfer_inputs']} topic inputs x {len(transfer.settings['templates'])} "
        f"held-out paraphrases; base consistency {_pct(transfer.base()['consistency_rate'])}%, "
        f"accuracy {_pct(transfer.base()['accuracy_mean'])}%; control: random heads, seed "
        f"{', '.join(map(str, transfer.settings['control_seeds']))}). {_verdict(transfer)}",
        "",
        *_located_table(transfer, "consistency_rate"),
        "",
        *_control_table(transfer),
        "",
        f"![transfer](figures/consistency-{model_name}-transfer-{TRANSFER_TASK}.png)",
        "",
        f"**Export.** The best edit (K={export['k']}, α={export['alpha']:g}) baked into the "
        f"output projections' biases and reloaded with plain `transformers` gives the edited "
        f"model's answer on all {export['prompts']} held-out prompts"
        + (
            ", so its consistency and accuracy are the sweep's numbers exactly."
            if export["reproduces_sweep_row"]
            else "; its summary differs from the sweep row (see the JSON)."
        ),
        "",
    ]
    return lines


def render() -> None:
    """Write the markdown page (and figures) from the saved JSON."""
    lines = [INTRO.read_text().rstrip(), ""]
    sweeps = {
        name: ConsistencySweep.load(path)
        for name in MODELS
        if (path := _paths(name)["sweep"]).exists()
    }
    header = "| α | paper (Llama-2-7B, RobustSST2) | " + " | ".join(
        f"{name}: best K (mean over K)" for name in sweeps
    )
    lines += [
        "Consistency (%) next to the paper's Table 4. For our models, each α's row gives the "
        "best K and, in brackets, the mean over K ∈ {5, 15, 25, 35} of the located heads (held-out "
        "sentiment inputs and paraphrases); α = 0 is the base model.",
        "",
        header + " |",
        "|---|---|" + "---|" * len(sweeps),
    ]
    for alpha, paper in PAPER.items():
        cells = []
        for sweep in sweeps.values():
            if alpha == 0:
                cells.append(_pct(sweep.base()["consistency_rate"]))
                continue
            values = [
                row["consistency_rate"]
                for row in sweep.rows
                if row["method"] == "located" and row["alpha"] == alpha
            ]
            cells.append(f"{_pct(max(values))} ({_pct(sum(values) / len(values))})")
        lines.append(f"| {alpha} | {paper:.2f} | " + " | ".join(cells) + " |")
    lines.append("")
    for model_name in MODELS:
        lines += _model_section(model_name)
    with atomic_file(PAGE) as tmp:
        tmp.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {PAGE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", choices=MODELS, help="model(s) to run")
    parser.add_argument("--render-only", action="store_true", help="only rebuild the page")
    parser.add_argument("--rerun", action="store_true", help="redo a model that has JSON")
    parser.add_argument(
        "--work-dir",
        default=str(cache_root() / "reproductions" / "consistency"),
        help="checkpoints of finished settings (a rerun resumes from them)",
    )
    args = parser.parse_args()
    if not args.render_only:
        for model_name in args.model or MODELS:
            run(model_name, args)
    render()


if __name__ == "__main__":
    main()
