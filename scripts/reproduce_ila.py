"""The ILA experiment (issue 18): which layers matter when the embedded model is fine-tuned on
instructions, how stable is that ranking, and does fine-tuning only those layers pay off?

On the embedded model, for each shipped instruction set (facts, steps, rewrite): stage 1 (LoRA
on every layer until the training loss is ε-stable) and stage 2 (gates γ on the frozen updates)
give a layer ranking; the "rewrite" set is ranked again with two more seeds. The top-25% Jaccard
overlaps across sets and across seeds follow. Then, on the "rewrite" set, every condition trains
the same number of steps (stage 1's): LoRA on all layers, on the ILA top 25%, on all but the
ILA bottom 25%, on 25% random layers (3 seeds), on the AVSS top 25%. Each is measured on the
held-out splits (instruction loss), on the 660 factual questions (knowledge retention) and on
held-out prose (perplexity). Every step is checkpointed (``--work-dir``): an interrupted run
resumes. Results go to ``docs/reproductions/data/ila-<model>.json``; ``--render-only`` writes
``docs/reproductions/ila.md`` from them.

    python scripts/reproduce_ila.py --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import circuitlab
from circuitlab.checkpoints import CheckpointStore
from circuitlab.evaluation import load_factual_qa, load_heldout_prose, perplexity, qa_accuracy
from circuitlab.fingerprint import model_fingerprint
from circuitlab.ila import (
    INSTRUCTION_SETS,
    ILARanking,
    fit_lora,
    ila_rank,
    instruction_loss,
    load_instructions,
    ranking_overlap,
)
from circuitlab.layers import random_scores, score_layers
from circuitlab.lora import load_lora
from circuitlab.models.cache import atomic_file, cache_root

ROOT = Path(__file__).resolve().parent.parent
INTRO = ROOT / "scripts" / "ila_intro.md"
TUNED_SET = "rewrite"
SEEDS = (0, 1, 2)
PERCENT = 25.0


def run(args: argparse.Namespace) -> None:
    model = circuitlab.load(args.model)
    work = Path(args.work_dir) / args.model
    work.mkdir(parents=True, exist_ok=True)
    train = {name: load_instructions(name, split="train") for name in INSTRUCTION_SETS}
    heldout = {name: load_instructions(name, split="heldout") for name in INSTRUCTION_SETS}
    questions = load_factual_qa(extended=True)[: args.questions]
    output = Path(args.output_dir)
    data_folder, figures = output / "data", output / "figures"
    store = CheckpointStore(
        work / "steps.json",
        kind="ila-experiment",
        scope={"model_fingerprint": model_fingerprint(model), "max_steps": args.max_steps,
               "gate_steps": args.gate_steps, "stable": args.stable, "window": args.window},
    )  # fmt: skip
    options = {
        "max_steps": args.max_steps,
        "stable": args.stable,
        "window": args.window,
        "gate_steps": args.gate_steps,
        "learning_rate": args.learning_rate,
    }

    rankings: dict[str, ILARanking] = {}
    runs = [(name, 0) for name in INSTRUCTION_SETS] + [(TUNED_SET, s) for s in SEEDS[1:]]
    for name, seed in runs:
        label = f"{name}-seed{seed}"

        def rank(name: str = name, seed: int = seed, label: str = label) -> dict[str, Any]:
            ranking = ila_rank(
                model,
                train[name],
                seed=seed,
                checkpoint=work / f"rank-{label}",
                save_adapter=work / f"adapter-{label}",
                **options,
            )
            return ranking.to_document()

        rankings[label] = ILARanking.from_document(store.compute({"ranking": label}, rank))
        ranking = rankings[label]
        print(label, ranking, f"stage 1 {ranking.stage1['seconds']:.0f} s, "
              f"stage 2 {ranking.stage2['seconds']:.0f} s")  # fmt: skip
    by_set = ranking_overlap(
        {name: rankings[f"{name}-seed0"] for name in INSTRUCTION_SETS}, percent=PERCENT
    )
    by_seed = ranking_overlap(
        {f"seed {s}": rankings[f"{TUNED_SET}-seed{s}"] for s in SEEDS}, percent=PERCENT
    )
    print(by_set, by_seed)

    reference = rankings[f"{TUNED_SET}-seed0"]
    steps = reference.stage1["steps"]
    avss = score_layers(model, load_heldout_prose("calibration"), methods=["avss"])["avss"]
    count = by_set.k
    chosen: dict[str, list[int]] = {
        "all": list(range(model.n_layers)),
        "ila_top": list(reference.top(percent=PERCENT)),
        "ila_freeze_bottom": sorted(
            set(range(model.n_layers)) - set(reference.bottom(percent=PERCENT))
        ),
        "avss_top": sorted(avss.ranking[::-1][:count]),
    }
    for seed in SEEDS:
        chosen[f"random_{seed}"] = sorted(
            random_scores(model.n_layers, seed=seed).ranking[::-1][:count]
        )

    def evaluate() -> dict[str, Any]:
        began = time.perf_counter()
        losses = {name: instruction_loss(model, heldout[name], progress=False) for name in heldout}
        qa = qa_accuracy(model, questions, progress=False)
        ppl = perplexity(model, max_tokens=args.perplexity_tokens, progress=False)
        return {
            "heldout_loss": losses,
            "qa_accuracy": qa.contains,
            "qa_exact_match": qa.exact_match,
            "perplexity": float(ppl.perplexity),
            "eval_seconds": time.perf_counter() - began,
        }

    results = {"base": store.compute({"condition": "base"}, evaluate)}
    print("base", results["base"])
    for name, layers in chosen.items():

        def condition(name: str = name, layers: list[int] = layers) -> dict[str, Any]:
            began = time.perf_counter()
            if name == "all":  # stage 1 of the reference ranking is exactly this run
                adapter = load_lora(model, work / f"adapter-{TUNED_SET}-seed0")
                history = reference.stage1
                train_seconds = reference.stage1["seconds"]
            else:
                fit = fit_lora(
                    model,
                    train[TUNED_SET],
                    layers,
                    learning_rate=args.learning_rate,
                    stable=None,
                    max_steps=steps,
                    checkpoint=work / f"train-{name}.safetensors",
                )
                adapter, train_seconds = fit.adapter, fit.seconds
                history = {"steps": fit.history.steps, "step_losses": fit.history.step_losses}
            try:
                measured = evaluate()
            finally:
                adapter.remove()
            return {
                **measured,
                "layers": layers,
                "steps": history["steps"],
                "final_train_loss": sum(history["step_losses"][-10:]) / 10,
                "train_seconds": train_seconds,
                "seconds": time.perf_counter() - began,
            }

        results[name] = store.compute({"condition": name}, condition)
        print(name, layers, results[name])

    figures.mkdir(parents=True, exist_ok=True)
    by_set.plot(title=f"ILA rankings across instruction sets ({args.model})").savefig(
        figures / f"ila-{args.model}-sets.png", dpi=120
    )
    by_seed.plot(title=f"ILA rankings across seeds, '{TUNED_SET}' set ({args.model})").savefig(
        figures / f"ila-{args.model}-seeds.png", dpi=120
    )
    reference.plot(percent=PERCENT).savefig(figures / f"ila-{args.model}-ranking.png", dpi=120)
    reference.save(data_folder / f"ila-{args.model}-ranking.json")
    _write_json(
        {
            "model": args.model,
            "n_layers": model.n_layers,
            "settings": {
                **options,
                "percent": PERCENT,
                "tuned_set": TUNED_SET,
                "perplexity_tokens": args.perplexity_tokens,
                "batch_size": 8,
                "r": 8,
                "alpha": 16.0,
            },
            "sets": {
                name: {"train": len(train[name]), "heldout": len(heldout[name])}
                for name in INSTRUCTION_SETS
            },
            "rankings": {label: ranking.to_document() for label, ranking in rankings.items()},
            "overlap_sets": {"names": by_set.names, "k": by_set.k, "matrix": by_set.matrix},
            "overlap_seeds": {"names": by_seed.names, "k": by_seed.k, "matrix": by_seed.matrix},
            "avss": list(avss.values),
            "chosen": chosen,
            "results": results,
        },
        data_folder / f"ila-{args.model}.json",
    )


def _write_json(data: Any, path: Path) -> None:
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--stable", type=float, default=0.02)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--gate-steps", type=int, default=20)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--perplexity-tokens", type=int, default=4096)
    parser.add_argument(
        "--work-dir", default=str(cache_root() / "reproductions" / "ila"), help="checkpoints"
    )
    parser.add_argument("--questions", type=int, default=None, help="use only N QA questions")
    parser.add_argument(
        "--output-dir", default=str(ROOT / "docs" / "reproductions"), help="page, data, figures"
    )
    parser.add_argument("--render-only", action="store_true", help="only rebuild the page")
    args = parser.parse_args()
    if not args.render_only:
        run(args)
    render(Path(args.output_dir))


def render(output: Path) -> None:
    """Write the markdown page from the saved JSON."""
    raise SystemExit("render: not written yet")


if __name__ == "__main__":
    main()
