"""Benchmark: locating consistency heads, the feature-collection pass next to the probes.

Usage:
    python benchmarks/consistency_speed.py [--model smollm2-135m-instruct] [--inputs 100]
                                           [--batch-size 32] [--repeats 2] [--json OUT]

On the shipped sentiment paraphrase task (``--inputs`` class-balanced inputs x the 6 locating
paraphrases), the median wall seconds over ``--repeats`` of:

1. the streaming pass (`read_paraphrases` with ``heads=True``): label-word logits and every
   head's last-token ``z``, one forward pass per batch;
2. fitting one probe per head (`LinearProbes.fit`, all heads in one batched solve) on half the
   inputs, and scoring them on the other half;
3. the bias directions of every head (`direction`, ``mean_difference``);
4. `locate_consistency_heads` end to end (all of the above, plus the bookkeeping).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import einops
import torch

import circuitlab
from circuitlab.consistency import load_paraphrase_task, locate_consistency_heads
from circuitlab.consistency.heads import read_paraphrases
from circuitlab.directions import direction
from circuitlab.probes import LinearProbes


def timed(step: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall seconds of ``repeats`` runs of ``step``, and its last value."""
    seconds, value = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        value = step()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--inputs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()

    model = circuitlab.load(args.model)
    task = load_paraphrase_task("sentiment").balanced_sample(args.inputs, seed=0)
    templates = list(task.locate)

    def collect_features() -> Any:
        return read_paraphrases(
            model, task, templates, heads=True, batch_size=args.batch_size, progress=False
        )

    collect_seconds, (answers, outputs) = timed(collect_features, args.repeats)
    features = einops.rearrange(outputs, "n p l h d -> (l h) n p d")
    labels = answers.consistent().long()
    half = len(answers) // 2
    x_fit = einops.rearrange(features[:, :half], "u n p d -> u (n p) d")
    x_score = einops.rearrange(features[:, half:], "u n p d -> u (n p) d")
    y_fit, y_score = labels[:half].reshape(-1), labels[half:].reshape(-1)

    def probe() -> torch.Tensor:
        return LinearProbes(C=1.0).fit(x_fit, y_fit).score(x_score, y_score)

    probe_seconds, accuracy = timed(probe, args.repeats)
    every = einops.rearrange(features, "u n p d -> u (n p) d")
    positive = every[:, labels.reshape(-1).bool()]
    direction_seconds, _ = timed(
        lambda: direction(positive, every, reference_is="all"), args.repeats
    )
    locate_seconds, heads = timed(
        lambda: locate_consistency_heads(model, task, batch_size=args.batch_size, progress=False),
        args.repeats,
    )
    numbers = {
        "model": model.name,
        "heads": int(features.shape[0]),
        "prompts": int(labels.numel()),
        "d_head": int(features.shape[-1]),
        "torch_threads": torch.get_num_threads(),
        "collection_pass_s": collect_seconds,
        "probes_fit_and_score_s": probe_seconds,
        "directions_s": direction_seconds,
        "locate_total_s": locate_seconds,
        "best_probe_accuracy": float(accuracy.max()),
    }
    print(
        f"{model.name}: {numbers['heads']} heads, {numbers['prompts']} prompts "
        f"(d_head {numbers['d_head']}, {numbers['torch_threads']} threads)"
    )
    print(f"  collection pass (logits + every head's z): {collect_seconds:7.2f} s")
    print(f"  {numbers['heads']} probes, fit + score (one batched solve): {probe_seconds:7.2f} s")
    print(f"  directions of every head:                  {direction_seconds:7.2f} s")
    print(f"  locate_consistency_heads, end to end:      {locate_seconds:7.2f} s   {heads!r}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(numbers, handle, indent=1)


if __name__ == "__main__":
    main()
