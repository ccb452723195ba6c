"""Reproduce the component-reweighting table (docs/reproductions/reweighting.md).

Runs `circuitlab.reweighting_study` for every model and task, saving one JSON per
(model, task) under ``docs/reproductions/data/`` (a finished pair is skipped on a rerun, so
an interrupted run resumes), then renders the markdown page from whatever JSON exists.

    python scripts/reproduce_reweighting.py                       # SmolLM2, full protocol
    python scripts/reproduce_reweighting.py --model gemma3-270m --demo-sets 3
    python scripts/reproduce_reweighting.py --render-only
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path

import circuitlab
from circuitlab.models.cache import atomic_file
from circuitlab.reweighting.study import METHODS, ReweightingStudy

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "reproductions" / "data"
PAGE = ROOT / "docs" / "reproductions" / "reweighting.md"
TASKS = ("sentiment", "yesno", "topic", "nli")
PAPER_TASK = {"sentiment": "SST2", "yesno": "BoolQ", "topic": "AGN", "nli": "MNLI"}
# Llama-2-7B, mean over 15 runs (the paper's table; methods.md section 4)
PAPER = {
    "ICL K'-shot": {"SST2": 75.8, "BoolQ": 69.2, "AGN": 70.0, "MNLI": 34.4},
    "ICL K-shot": {"SST2": 77.8, "BoolQ": 71.6, "AGN": 71.1, "MNLI": 39.9},
    "Calib+": {"SST2": 87.6, "BoolQ": 70.3, "AGN": 78.4, "MNLI": 46.4},
    "CompRW": {"SST2": 90.6, "BoolQ": 71.7, "AGN": 88.1, "MNLI": 49.8},
}


def run(model_name: str, tasks: list[str], demo_sets: int, n_test: int, seed: int) -> None:
    """Run the studies that have no saved JSON yet."""
    model = None
    for task_name in tasks:
        target = DATA / f"reweighting-{model_name}-{task_name}.json"
        if target.exists():
            print(f"{target.name} exists, skipped")
            continue
        model = model or circuitlab.load(model_name)
        task = circuitlab.load_task(task_name)
        started = time.perf_counter()
        balanced_test = n_test - n_test % task.n_labels
        study = circuitlab.reweighting_study(
            model, task, n_demo_sets=demo_sets, n_test=balanced_test, seed=seed, progress=True
        )
        study.settings["seconds"] = round(time.perf_counter() - started, 1)
        study.save(target)
        print(study, f"({study.settings['seconds']} s)")


def _cell(study: ReweightingStudy, method: str, k: int) -> str:
    mean, std = study.mean(method, k), study.std(method, k)
    if mean != mean:  # NaN: could not run
        return "n/a"
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def _table(studies: dict[str, ReweightingStudy], k: int, methods: list[str]) -> list[str]:
    tasks = [t for t in TASKS if t in studies]
    header = "| method | " + " | ".join(f"{t} ({PAPER_TASK[t]})" for t in tasks) + " | avg |"
    lines = [header, "|---" * (len(tasks) + 2) + "|"]
    for method in methods:
        cells = [_cell(studies[t], method, k) for t in tasks]
        means = [studies[t].mean(method, k) for t in tasks]
        avg = sum(means) / len(means)
        lines.append(
            f"| {METHODS[method]} | " + " | ".join(cells) + f" | {100 * avg:.1f} |"
            if avg == avg
            else f"| {METHODS[method]} | " + " | ".join(cells) + " | n/a |"
        )
    return lines


def _model_section(model_name: str, studies: dict[str, ReweightingStudy]) -> list[str]:
    any_study = next(iter(studies.values()))
    settings = any_study.settings
    seconds = sum(s.settings.get("seconds", 0) for s in studies.values())

    def runs_of(study: ReweightingStudy) -> str:
        sets, templates = study.settings["n_demo_sets"], len(study.settings["templates"])
        noun = "demonstration set" if sets == 1 else "demonstration sets"
        return f"{sets} {noun} x {templates} templates = {sets * templates} runs"

    run_texts = {task: runs_of(study) for task, study in studies.items()}
    if len(set(run_texts.values())) == 1:
        runs_text = f"{next(iter(run_texts.values()))} per task"
    else:
        runs_text = "; ".join(f"{task}: {text}" for task, text in run_texts.items())
    out = [
        f"## {model_name}",
        "",
        f"{runs_text}. Balanced test sets (examples per task: "
        + ", ".join(f"{t} {s.settings['n_test']}" for t, s in studies.items())
        + f"); K' = 4 demonstrations (3 for nli); seed {settings['seed']}. Accuracy in %, mean ± "
        f"std over the runs. Wall time {seconds / 60:.0f} min on 2 CPU cores.",
        "",
    ]
    out += _findings(studies)
    main = ["icl_demos", "icl_all", "calib_plus", "comp_rw", "comp_rw_code"]
    oracles = ["oracle_best", "oracle_worst"]
    for k in settings["ks"]:
        out += [f"### K = {k}", ""]
        out += _table(studies, k, main + oracles)
        out.append("")
    out += [
        "### Which components get the largest weights (CompRW, K = 24, mean over runs)",
        "",
        "| task | top 5 components (mean weight) | most frequent oracle-best component |",
        "|---|---|---|",
    ]
    for task, study in studies.items():
        top = ", ".join(f"{c} ({w:.2f})" for c, w in study.top_weighted(n=5))
        best = collections.Counter(
            r["component"]
            for r in study.records
            if r["method"] == "oracle_best" and r["k"] == max(settings["ks"])
        ).most_common(1)[0]
        runs = study.settings["n_demo_sets"] * len(study.settings["templates"])
        out.append(f"| {task} | {top} | {best[0]} ({best[1]} of {runs} runs) |")
    out += [
        "",
        "### Transfer check",
        "",
        "Pearson correlation of the per-component test accuracies between runs (mean over "
        "pairs of runs).",
        "",
        "| task | across demo sets (same template) | across templates (same demos) | across both |",
        "|---|---|---|---|",
    ]
    for task, study in studies.items():
        t = {
            key: "n/a (one demo set)" if value != value else f"{value:.2f}"
            for key, value in study.transfer().items()
        }
        out.append(
            f"| {task} | {t['across_demo_sets']} | {t['across_templates']} | {t['across_both']} |"
        )
    notes = sorted({note for s in studies.values() for note in s.notes})
    if notes:
        out += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    out.append("")
    return out


def _findings(studies: dict[str, ReweightingStudy]) -> list[str]:
    """Plain statements read off the numbers (so they are regenerated with them)."""
    k = max(next(iter(studies.values())).settings["ks"])
    tasks = list(studies)

    def gap(a: str, b: str) -> tuple[str, float]:
        diffs = [100 * (studies[t].mean(a, k) - studies[t].mean(b, k)) for t in tasks]
        valid = [round(d, 1) for d in diffs if d == d]
        wins, ties = sum(d > 0 for d in valid), sum(d == 0 for d in valid)
        counted = f"{wins} of {len(tasks)} tasks" + (f" (ties on {ties})" if ties else "")
        return counted, sum(valid) / max(len(valid), 1)

    lines = [f"What the numbers say at K = {k} (computed from the table below):", ""]
    for other in ("icl_demos", "icl_all", "calib_plus"):
        counted, mean_gap = gap("comp_rw", other)
        lines.append(
            f"- CompRW beats {METHODS[other]} on {counted}; mean difference {mean_gap:+.1f} points."
        )
    counted, mean_gap = gap("oracle_best", "icl_demos")
    lines.append(
        f"- The best single component (oracle) beats the full model with the same "
        f"demonstrations on {counted}; mean difference {mean_gap:+.1f} points."
    )
    below = [
        t
        for t in tasks
        if studies[t].mean("oracle_worst", k) < 1 / len(studies[t].settings["label_words"])
    ]
    lines.append(
        f"- The worst single component is below chance on {len(below)} of {len(tasks)} tasks."
    )
    counted, mean_gap = gap("comp_rw", "comp_rw_code")
    lines.append(
        f"- The paper's settings (λ = 0.1, no clipping) beat the code's (λ = 0.01, clipped) on "
        f"{counted}; mean difference {mean_gap:+.1f} points."
    )
    return [*lines, ""]


def _speed() -> list[str]:
    """The benchmark numbers, if benchmarks/reweighting_speed.py saved any."""
    lines = ["## Speed", ""]
    found = sorted((ROOT / "benchmarks" / "results").glob("reweighting_speed_*.json"))
    if not found:
        return [*lines, "Run `benchmarks/reweighting_speed.py --json ...` to add numbers.", ""]
    lines += [
        "`benchmarks/reweighting_speed.py`: fitting on K = 24 (20 training examples, "
        "contributions cached), and caching the contributions of the training and test prompts "
        "against plain forward passes over the same prompts, and against forward passes that "
        "reuse the shared demonstrations the same way (timed round robin in one process; "
        "medians over the repeats; 4-shot prompts of the training and test examples).",
        "",
        "| model | task | fit (median of 20) | Calib+ fit | prompts (tokens) | caching | plain "
        "forward | ratio | shared-prefix forward | ratio | repeats |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in found:
        r = json.loads(path.read_text(encoding="utf-8"))
        lines.append(
            f"| {r['model']} | {r['task']} | {1000 * r['fit_seconds_median']:.0f} ms | "
            f"{1000 * r['calib_plus_fit_seconds_median']:.0f} ms | {r['prompts']} "
            f"({r['prompt_tokens']}) | {r['cache_seconds']:.1f} s | "
            f"{r['plain_forward_seconds']:.1f} s | {r['ratio_cache_over_plain_forward']:.2f} | "
            f"{r['shared_prefix_forward_seconds']:.1f} s | "
            f"{r['ratio_cache_over_shared_prefix_forward']:.2f} | {r['repeats']} |"
        )
    return [*lines, ""]


def render() -> str:
    """The markdown page from the saved studies."""
    by_model: dict[str, dict[str, ReweightingStudy]] = collections.defaultdict(dict)
    for path in sorted(DATA.glob("reweighting-*.json")):
        study = ReweightingStudy.load(path)
        by_model[study.model_name][study.task] = study
    intro = (ROOT / "scripts" / "reweighting_intro.md").read_text(encoding="utf-8")
    lines = [intro.rstrip(), ""]
    lines += [
        "## The paper: Llama-2-7B",
        "",
        "| method | SST2 | BoolQ | AGN | MNLI |",
        "|---|---|---|---|---|",
    ]
    for method, row in PAPER.items():
        lines.append(
            f"| {method} | "
            + " | ".join(f"{row[t]:.1f}" for t in ("SST2", "BoolQ", "AGN", "MNLI"))
            + " |"
        )
    lines += [
        "",
        "(K' = 4 (3 for MNLI), K = 24, mean over 15 runs, 2,000 test examples per task.)",
        "",
    ]
    for model_name in sorted(by_model, key=lambda m: (m != circuitlab.DEFAULT_MODEL, m)):
        lines += _model_section(
            model_name, {t: by_model[model_name][t] for t in TASKS if t in by_model[model_name]}
        )
    lines += _speed()
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=circuitlab.DEFAULT_MODEL)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--demo-sets", type=int, default=5)
    parser.add_argument("--n-test", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if not args.render_only:
        run(args.model, args.tasks, args.demo_sets, args.n_test, args.seed)
    with atomic_file(PAGE) as tmp:
        tmp.write_text(render(), encoding="utf-8")
    print(f"wrote {PAGE}")


if __name__ == "__main__":
    main()
