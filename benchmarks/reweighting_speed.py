"""Benchmark: fitting component weights, and what caching the contributions costs.

Usage:
    python benchmarks/reweighting_speed.py [--model smollm2-135m-instruct] [--task topic]
                                           [--n-test 64] [--repeats 3] [--json OUT]

1. Fit: `ComponentReweighting().fit` on K = 24 examples (K' = 4 demonstrations, 20 training
   examples, contributions cached), repeated 20 times; median wall seconds. Calib+ too.
2. Caching: `label_contributions` over the training and test prompts (4-shot) against
   (a) plain batched forward passes over the same prompts (`model.next_token_logits`, which
   unembeds only the last position and shares nothing), and (a') forward passes that reuse
   the shared demonstration prefix the way the caching does (`label_logits`). The three are
   timed round robin in one process, ``--repeats`` times each; medians and ratios printed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import torch

import circuitlab
from circuitlab import ComponentReweighting, label_contributions
from circuitlab.reweighting import CalibPlus, label_logits


def timed(function: Callable[..., object], *args: object, **kwargs: object) -> float:
    started = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - started


def plain_forward(model: circuitlab.ModelHandle, prompts: list[str], batch_size: int) -> None:
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            model.next_token_logits(prompts[start : start + batch_size])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=circuitlab.DEFAULT_MODEL)
    parser.add_argument("--task", default="topic")
    parser.add_argument("--n-test", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()

    model = circuitlab.load(args.model)
    task = circuitlab.load_task(args.task)
    n_test = args.n_test - args.n_test % task.n_labels
    pool, test = circuitlab.reweighting.split_pool_test(task, 24, n_test=n_test, seed=0)
    n_demos = 3 if task.n_labels == 3 else 4
    demos, train = circuitlab.reweighting.draw_examples(pool, 24, n_demos, seed=0)
    prompts = [task.prompt(text, demos=demos) for text in train.texts + test.texts]
    n_tokens = int(model.tokenize(prompts).lengths.sum())

    # 1. fitting on cached contributions
    train_c = label_contributions(model, train, demos=demos, batch_size=args.batch_size)
    fits = [timed(ComponentReweighting().fit, train_c) for _ in range(20)]
    calib = [timed(CalibPlus().fit, train_c) for _ in range(20)]
    fitted = ComponentReweighting().fit(train_c)

    # 2. caching cost against forward passes, round robin
    times: dict[str, list[float]] = {"cache": [], "plain": [], "shared": []}
    for _ in range(args.repeats):
        times["plain"].append(timed(plain_forward, model, prompts, args.batch_size))
        times["shared"].append(
            timed(label_logits, model, prompts, task.label_words, batch_size=args.batch_size)
        )
        times["cache"].append(
            timed(
                label_contributions,
                model,
                prompts,
                label_words=task.label_words,
                batch_size=args.batch_size,
            )
        )
    medians = {key: statistics.median(values) for key, values in times.items()}
    result = {
        "model": model.name,
        "task": task.name,
        "train_examples": len(train_c),
        "components": len(fitted.components_),
        "fit_seconds_median": statistics.median(fits),
        "fit_seconds_max": max(fits),
        "fit_epochs": fitted.history_.epochs,
        "fit_stopped": fitted.history_.stopped,
        "calib_plus_fit_seconds_median": statistics.median(calib),
        "prompts": len(prompts),
        "prompt_tokens": n_tokens,
        "cache_seconds": medians["cache"],
        "plain_forward_seconds": medians["plain"],
        "shared_prefix_forward_seconds": medians["shared"],
        "ratio_cache_over_plain_forward": medians["cache"] / medians["plain"],
        "ratio_cache_over_shared_prefix_forward": medians["cache"] / medians["shared"],
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"{model.name}, {task.name}: fit on {len(train_c)} examples x {result['components']} "
        f"components: median {1000 * result['fit_seconds_median']:.1f} ms "
        f"(max {1000 * result['fit_seconds_max']:.1f} ms, {fitted.history_.epochs} epochs, "
        f"stopped by {fitted.history_.stopped}); Calib+ "
        f"{1000 * result['calib_plus_fit_seconds_median']:.1f} ms"
    )
    print(
        f"caching {len(prompts)} 4-shot prompts ({n_tokens} tokens): {medians['cache']:.2f} s; "
        f"plain forward {medians['plain']:.2f} s "
        f"(ratio {result['ratio_cache_over_plain_forward']:.3f}); "
        f"shared-prefix forward {medians['shared']:.2f} s "
        f"(ratio {result['ratio_cache_over_shared_prefix_forward']:.3f})"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
