"""The EAVSS experiment (issue 17, in progress): does fine-tuning the hallucination-prone
layers reduce hallucinations more than fine-tuning other layers?

On the embedded model: grade its answers to the 660 shipped questions, split the questions
60/20/20 (train / validation / test, stratified), score the layers on the training answers
(EAVSS, HSAV, HSS, the probe baseline) and by plain AVSS on the calibration prose, then give
every condition the same contrastive fine-tuning (LoRA on k layers, same epochs, batch size and
learning rate): the top-k layers of each score, k random layers (3 seeds), and all layers. Each
run is evaluated on the test questions (accuracy, hallucination rate, abstentions) and on the
held-out prose (perplexity). Each run's numbers are checkpointed as they finish
(``--work-dir``), so an interrupted run resumes; results go to
``docs/reproductions/data/eavss-<model>.json``.

    python scripts/reproduce_eavss.py --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import circuitlab
from circuitlab.checkpoints import CheckpointStore
from circuitlab.evaluation import load_factual_qa, load_heldout_prose, perplexity
from circuitlab.fingerprint import model_fingerprint
from circuitlab.hallucination import (
    contrastive_finetune,
    hallucination_rates,
    hallucination_scores,
    label_model_answers,
)
from circuitlab.layers import random_scores, score_layers
from circuitlab.models.cache import atomic_file, cache_root

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "reproductions" / "data"
SPLIT = (0.6, 0.2, 0.2)
RANDOM_SEEDS = (0, 1, 2)


def run(args: argparse.Namespace) -> None:
    model = circuitlab.load(args.model)
    work = Path(args.work_dir) / args.model
    work.mkdir(parents=True, exist_ok=True)
    questions = load_factual_qa(extended=True)
    if args.limit:  # a smoke run on a few questions
        questions = questions[:: max(1, len(questions) // args.limit)][: args.limit]
    by_text = {question.question: question for question in questions}
    started = time.perf_counter()
    answers = label_model_answers(model, questions, progress=True)
    train_q, _, test_q = answers.split_questions(SPLIT, seed=args.seed)
    train = answers.subset(train_q)
    test_questions = [by_text[answers.questions[q]] for q in test_q]
    print(answers, f"({time.perf_counter() - started:.0f} s)")

    scores = hallucination_scores(model, train, progress=True)
    avss = score_layers(model, load_heldout_prose("calibration"), methods=["avss"])["avss"]
    k = args.k
    chosen: dict[str, list[int]] = {
        name: sorted(scores[name].ranking[::-1][:k]) for name in ("eavss", "hsav", "hss", "probe")
    }
    chosen["avss"] = sorted(avss.ranking[::-1][:k])
    for seed in RANDOM_SEEDS:
        ranking = random_scores(model.n_layers, seed=seed).ranking
        chosen[f"random_{seed}"] = sorted(ranking[::-1][:k])
    chosen["all"] = list(range(model.n_layers))
    store = CheckpointStore(
        work / "runs.json",
        kind="eavss-experiment",
        scope={"model_fingerprint": model_fingerprint(model), "seed": args.seed, "k": k,
               "epochs": args.epochs, "learning_rate": args.learning_rate},
    )  # fmt: skip

    def evaluate() -> dict[str, Any]:
        rates = hallucination_rates(model, test_questions, progress=False).as_dict()
        ppl = perplexity(model, max_tokens=args.perplexity_tokens, progress=False)
        return {**rates, "perplexity": float(ppl.perplexity)}

    results = {"base": store.compute({"condition": "base"}, evaluate)}
    for name, layers in chosen.items():

        def step(layers: list[int] = layers, name: str = name) -> dict[str, Any]:
            began = time.perf_counter()
            finetuned = contrastive_finetune(
                model,
                train,
                layers,
                epochs=args.epochs,
                learning_rate=args.learning_rate,
                seed=args.seed,
                checkpoint=work / f"train-{name}.safetensors",
            )
            try:
                measured = evaluate()
            finally:
                finetuned.adapter.remove()
            return {
                **measured,
                "layers": layers,
                "train_losses": list(finetuned.history.losses),
                "seconds": time.perf_counter() - began,
            }

        results[name] = store.compute({"condition": name}, step)
        print(name, layers, {key: results[name][key] for key in ("accuracy", "hallucination_rate")})
    target = DATA / f"eavss-{args.model}.json"
    with atomic_file(target) as tmp:
        tmp.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "answers": {
                        "truthful": answers.counts()[0],
                        "hallucinated": answers.counts()[1],
                    },
                    "split": {"train": len(train_q), "test": len(test_q)},
                    "k": k,
                    "scores": {name: list(score.values) for name, score in scores.items()},
                    "avss": list(avss.values),
                    "results": results,
                },
                indent=1,
            )
        )
    print(f"wrote {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--perplexity-tokens", type=int, default=4096)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="use only this many questions")
    parser.add_argument(
        "--work-dir", default=str(cache_root() / "reproductions" / "eavss"), help="checkpoints"
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
