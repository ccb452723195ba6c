"""Reproduce the AVSS pruning table (docs/reproductions/avss.md).

For every model: score the layers on the calibration split of the shipped prose (AVSS with
circuitlab's ε and with the authors' ε = 1e-5, Block Influence, its angular variant, a seeded
random ranking, drop-the-last), measure the single-layer-removal ground truth, prune 10/25/40%
by each ranking, and evaluate QA / perplexity / sentiment. Each model's study is saved as
``docs/reproductions/data/avss-<model>.json``; evaluations are checkpointed as they finish
(``--work-dir``), so an interrupted run resumes. The page is rendered from whatever JSON exists.

    python scripts/reproduce_avss.py --model smollm2-135m-instruct
    python scripts/reproduce_avss.py --model gemma3-270m
    python scripts/reproduce_avss.py --render-only
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import circuitlab
from circuitlab.evaluation import EvaluationSuite, load_heldout_prose
from circuitlab.layers import PruningStudy, pruning_study, random_scores, score_layers
from circuitlab.models.cache import atomic_file, cache_root

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "reproductions" / "data"
FIGURES = ROOT / "docs" / "reproductions" / "figures"
PAGE = ROOT / "docs" / "reproductions" / "avss.md"
INTRO = ROOT / "scripts" / "avss_intro.md"
BENCHMARKS = ROOT / "benchmarks" / "results"
MODELS = ("smollm2-135m-instruct", "gemma3-270m")
AUTHORS_EPSILON = 1e-5
EXTRA_RANDOM_SEEDS = (1, 2)  # besides seed 0 from score_layers: three random rankings in all
RANDOMS = ("random", *(f"random_{seed}" for seed in EXTRA_RANDOM_SEEDS))
LABELS = {
    "avss": "AVSS (ε = 0.05)",
    "avss_authors_eps": "AVSS (ε = 1e-5, the authors')",
    "avss_attn": "AVSS on attention outputs",
    "avss_mlp": "AVSS on MLP outputs",
    "block_influence": "Block Influence (ShortGPT)",
    "angular_distance": "angular distance",
    "random": "random (seed 0)",
    "random_1": "random (seed 1)",
    "random_2": "random (seed 2)",
    "random_mean": "random (mean of 3 seeds)",
    "drop_last": "drop the last layers",
    "ground_truth": "ground truth (oracle)",
}


def suite_from(args: argparse.Namespace) -> EvaluationSuite:
    """The evaluation suite of the reproduction (reduced sizes: see the page)."""
    return EvaluationSuite(
        qa_questions=args.qa_questions,
        perplexity_tokens=args.perplexity_tokens,
        sentiment_examples=args.sentiment_examples,
    )


def run(model_name: str, args: argparse.Namespace) -> None:
    """Score, measure the ground truth, prune and evaluate one model; save its JSON."""
    target = DATA / f"avss-{model_name}.json"
    if target.exists() and not args.rerun:
        print(f"{target.name} exists, skipped (pass --rerun to redo it)")
        return
    model = circuitlab.load(model_name)
    calibration = load_heldout_prose("calibration")
    started = time.perf_counter()
    scores = score_layers(model, calibration, progress=True)
    scoring_seconds = time.perf_counter() - started
    variants = {
        "avss_authors_eps": {"epsilon": AUTHORS_EPSILON},
        "avss_attn": {"site": "attn"},
        "avss_mlp": {"site": "mlp"},
    }
    rankings = {"avss": scores["avss"]}
    for name, options in variants.items():
        variant = score_layers(model, calibration, ("avss",), **options)["avss"]
        rankings[name] = replace(variant, method=name)
    rankings.update({method: value for method, value in scores.items() if method != "avss"})
    for seed in EXTRA_RANDOM_SEEDS:
        rankings[f"random_{seed}"] = replace(
            random_scores(model.n_layers, seed=seed, model=model.name), method=f"random_{seed}"
        )
    checkpoint = Path(args.work_dir) / f"avss-{model_name}.evaluations.json"
    study = pruning_study(
        model, rankings, suite=suite_from(args), checkpoint=checkpoint, progress=True
    )
    study.notes.append(f"scoring all layers on the calibration split took {scoring_seconds:.1f} s")
    study.save(target)
    print(f"wrote {target} ({study.seconds:.0f} s)")


# ------------------------------------------------------------------------------- rendering
def _pct(value: float) -> str:
    return "n/a" if not math.isfinite(value) else f"{100 * value:.1f}"


def _model_section(study: PruningStudy) -> list[str]:
    frame = study.to_frame()
    original = study.original
    lines = [
        f"## {study.model} ({study.n_layers} layers)",
        "",
        f"Intact model: QA contains-gold {_pct(original['qa'])}% (exact match "
        f"{_pct(original['qa_exact'])}%), perplexity {original['perplexity']:.2f}, sentiment "
        f"accuracy {_pct(original['sentiment'])}%. {study.evaluations} distinct evaluations "
        f"(removed-layer sets), {study.evaluation_seconds / 60:.0f} min of evaluation in all "
        f"(one CPU thread each, with the other model's study on the second core).",
        "",
    ]
    for percent in study.percents:
        rows = frame[frame["k"] == percent]
        removed = int(rows["removed"].iloc[0])
        lines += [
            f"### k = {percent:g}% ({removed} of {study.n_layers} layers removed)",
            "",
            "Performance retained (pruned / original, %; perplexity: original / pruned):",
            "",
            "| ranking | layers removed | QA | perplexity | sentiment | mean | ≥ 90% on all 3 |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in rows.itertuples():
            kept = [row.retention_qa, row.retention_perplexity, row.retention_sentiment]
            verdict = "yes" if all(value >= 0.9 for value in kept) else "no"
            lines.append(
                f"| {LABELS.get(row.method, row.method)} | {row.layers} | "
                + " | ".join(_pct(value) for value in kept)
                + f" | **{_pct(row.retention_mean)}** | {verdict} |"
            )
        lines.append("")
    spearman = study.spearman()
    lines += [
        "### Agreement with the ground truth",
        "",
        "Spearman correlation of each score with the measured single-layer drop:",
        "",
        "| score | Spearman ρ |",
        "|---|---|",
    ]
    for row in spearman.itertuples():
        lines.append(f"| {LABELS.get(row.method, row.method)} | {row.spearman:+.2f} |")
    avss = study.scores["avss"]
    truth = study.scores.get("ground_truth")
    lines += [
        "",
        f"![per-layer AVSS of {study.model}](figures/avss-{study.model}-scores.png)",
        "",
        f"![retention of {study.model}](figures/avss-{study.model}-retention.png)",
        "",
        "Per-layer values (AVSS statistics on the calibration split; ground truth = share of "
        "performance lost when the layer alone is removed):",
        "",
        "| layer | variance | sparsity | AVSS | CAVSS | Block Influence | ground truth |",
        "|---|---|---|---|---|---|---|",
    ]
    bi = study.scores.get("block_influence")
    for layer in range(study.n_layers):
        lines.append(
            f"| {layer} | {avss.details['variance'][layer]:.4g} | "
            f"{avss.details['sparsity'][layer]:.4f} | {avss.values[layer]:.4g} | "
            f"{avss.details['cavss'][layer]:.3f} | "
            + (f"{bi.values[layer]:.4f}" if bi else "n/a")
            + " | "
            + (f"{truth.values[layer]:+.3f}" if truth else "n/a")
            + " |"
        )
    lines.append("")
    return lines


TIE = 0.02  # mean-retention differences below 2 points are called ties (paired, 80 items)


def _names(methods: list[str]) -> str:
    return ", ".join(LABELS.get(method, method) for method in methods) or "none"


def _study_findings(study: PruningStudy) -> list[str]:
    frame = study.to_frame()
    at25 = frame[frame["k"] == 25.0].set_index("method")
    avss = at25.loc["avss"]
    kept = [avss.retention_qa, avss.retention_perplexity, avss.retention_sentiment]
    holds = sum(value >= 0.9 for value in kept)
    means = at25["retention_mean"].copy()
    randoms = [m for m in RANDOMS if m in means.index]
    if len(randoms) > 1:  # compare with the average random ranking, not one draw
        means["random_mean"] = means[randoms].mean()
        means = means.drop(randoms)
    others = [m for m in means.index if m not in ("avss", "ground_truth")]
    better = [m for m in others if means[m] > avss.retention_mean + TIE]
    worse = [m for m in others if means[m] < avss.retention_mean - TIE]
    tied = [m for m in others if m not in better and m not in worse]
    best = means.drop("ground_truth", errors="ignore").idxmax()
    anyone = [
        m
        for m in at25.index
        if all(at25.loc[m, f"retention_{t}"] >= 0.9 for t in ("qa", "perplexity", "sentiment"))
    ]
    spearman = study.spearman().set_index("method")["spearman"]
    lines = [
        f"- **{study.model}**, 25% pruning: AVSS keeps ≥ 90% on {holds} of 3 tasks "
        f"(QA {_pct(kept[0])}%, perplexity {_pct(kept[1])}%, sentiment {_pct(kept[2])}%; "
        f"mean {_pct(avss.retention_mean)}%). The paper's claim "
        + ("holds here." if holds == 3 else "does not hold here.")
        + " Rankings that keep ≥ 90% on all three tasks at 25%: "
        + _names(anyone)
        + ".",
        f"    - Against the baselines (mean retention at 25%; within {100 * TIE:.0f} points "
        f"counts as a tie): AVSS loses to {_names(better)}; ties with {_names(tied)}; beats "
        f"{_names(worse)}. The best non-oracle ranking is {LABELS.get(best, best)} "
        f"({_pct(means[best])}%).",
        f"    - Spearman ρ with the ground truth: AVSS {spearman.get('avss', math.nan):+.2f}, "
        f"Block Influence {spearman.get('block_influence', math.nan):+.2f}, drop-last "
        f"{spearman.get('drop_last', math.nan):+.2f}, random "
        + " / ".join(f"{spearman.get(m, math.nan):+.2f}" for m in randoms)
        + (" (seeds 0 / 1 / 2)." if len(randoms) > 1 else "."),
    ]
    depth = study.scores["avss"].spearman(list(range(study.n_layers)))
    variance = study.scores["avss"].spearman(study.scores["avss"].details["variance"])
    lines.append(
        f"    - Spearman ρ(AVSS, layer index) = {depth:+.2f}; ρ(AVSS, block-output variance) "
        f"= {variance:+.2f}."
        + (
            " AVSS follows depth: the residual stream's variance grows through the layers, "
            "so AVSS rates the first layers least important."
            if depth > 0.5 and variance > 0.5
            else ""
        )
    )
    truth = study.scores.get("ground_truth")
    if truth is not None:
        costly = sum(value > 0.1 for value in truth.values)
        lowest_avss = study.scores["avss"].lowest(10.0)
        truth_rank = {layer: rank for rank, layer in enumerate(reversed(truth.ranking))}
        places = ", ".join(f"layer {layer} is #{truth_rank[layer] + 1}" for layer in lowest_avss)
        among_top = all(truth_rank[layer] < study.n_layers / 3 for layer in lowest_avss)
        lines.append(
            f"    - Removing a single layer costs more than 10% of the mean performance for "
            f"{costly} of {study.n_layers} layers"
            + (": this model has little redundancy." if costly > study.n_layers / 2 else ".")
            + f" The ground truth's rank of the layers AVSS rates least important: {places} "
            f"of {study.n_layers}, most important first"
            + (" — AVSS prunes some of the most important layers." if among_top else ".")
        )
        oracle = means.get("ground_truth", math.nan)
        if means[best] > oracle + TIE:
            lines.append(
                f"    - At 25%, {LABELS.get(best, best)} beats the ground-truth oracle "
                f"({_pct(means[best])}% vs {_pct(oracle)}%): single-layer drops do not add up "
                f"when several layers go at once."
            )
    return lines


def _findings(studies: list[PruningStudy]) -> list[str]:
    lines = ["## What we find", ""]
    for study in studies:
        if "avss" in study.scores and 25.0 in study.percents:
            lines += _study_findings(study)
    lines.append("")
    return lines


def _speed_section() -> list[str]:
    lines = [
        "## Speed",
        "",
        "`benchmarks/avss_speed.py` times scoring against plain forward passes over the same "
        "windows of the calibration prose (128 tokens, batch 8), round robin in one process, "
        "medians of 3, 2 threads on an otherwise idle machine. The goal is AVSS ≤ 1.1× a "
        "plain forward pass. Much of the margin comes from unembedding one position only "
        "(Gemma 3's 262k-word vocabulary makes the full unembedding the larger part of its "
        "plain forward pass); against a forward pass that also unembeds one position, the "
        "hooks and streamed statistics cost the last column.",
        "",
        "| model | tokens | plain forward | forward, one position unembedded | AVSS | "
        "AVSS + Block Influence + angular | AVSS / plain | AVSS / one-position forward |",
        "|---|---|---|---|---|---|---|---|",
    ]
    found = False
    for name in MODELS:
        path = BENCHMARKS / f"avss_speed_{name}.json"
        if not path.exists():
            continue
        found = True
        data = json.loads(path.read_text())
        median, ratios = data["median"], data["ratios"]
        lines.append(
            f"| {data['model']} | {data['tokens']} | {median['plain_forward']:.1f} s | "
            f"{median['forward_one_position']:.1f} s | {median['avss']:.1f} s | "
            f"{median['avss_bi_angular']:.1f} s | "
            f"**{ratios['avss / plain_forward']:.2f}** | "
            f"{ratios['avss / forward_one_position']:.2f} |"
        )
    if not found:
        lines = [*lines[:3], "No benchmark has been run yet."]
    return [*lines, ""]


def render() -> None:
    """Write the markdown page (and figures) from the saved studies."""
    studies = [
        PruningStudy.load(path) for name in MODELS if (path := DATA / f"avss-{name}.json").exists()
    ]
    FIGURES.mkdir(parents=True, exist_ok=True)
    for study in studies:
        for suffix, figure in (
            ("scores", study.scores["avss"].plot(25.0)),
            ("retention", study.plot()),
        ):
            with atomic_file(FIGURES / f"avss-{study.model}-{suffix}.png") as tmp:
                figure.savefig(tmp, dpi=110, format="png")
    lines = [INTRO.read_text().rstrip(), ""]
    if studies:
        suite = studies[0].suite
        lines += [
            f"Evaluation suite of these runs: {suite['qa_questions'] or 240} factual questions "
            f"(balanced over the six categories), the first "
            f"{suite['perplexity_tokens'] or 'all'} predicted tokens of the held-out prose "
            f"(evaluation split, windows of {suite['window']}), and "
            f"{suite['sentiment_examples'] or 200} sentiment examples ({suite['k_shot']}-shot).",
            "",
        ]
        lines += _findings(studies)
    else:
        lines += ["No study has been run yet: see the commands above.", ""]
    for study in studies:
        lines += _model_section(study)
    lines += _speed_section()
    with atomic_file(PAGE) as tmp:
        tmp.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {PAGE}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", choices=MODELS, help="model(s) to run")
    parser.add_argument("--render-only", action="store_true", help="only rebuild the page")
    parser.add_argument("--rerun", action="store_true", help="redo a model that has JSON")
    parser.add_argument("--qa-questions", type=int, default=80)
    parser.add_argument("--perplexity-tokens", type=int, default=2048)
    parser.add_argument("--sentiment-examples", type=int, default=80)
    parser.add_argument(
        "--work-dir",
        default=str(cache_root() / "reproductions"),
        help="where evaluation checkpoints go (default: the circuitlab cache)",
    )
    args = parser.parse_args()
    if not args.render_only:
        for name in args.model or MODELS:
            run(name, args)
    render()


if __name__ == "__main__":
    main()
