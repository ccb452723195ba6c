"""Benchmark: scoring a data set with AVSS against a plain forward pass over it.

Usage:
    python benchmarks/avss_speed.py [--model smollm2-135m-instruct] [--data calibration]
                                    [--repeats 3] [--json OUT]

Same windows (128 tokens, batch 8) of the shipped calibration prose, timed round robin in one
process, ``--repeats`` times each (medians):

(a)  plain forward passes: ``model.bridge(ids, attention_mask=...)`` (logits at every position);
(a') forward passes that unembed one position (``logits_to_keep=1``), as the scoring does;
(b)  `score_layers` with AVSS only (one hook per layer, statistics streamed);
(c)  `score_layers` with AVSS, Block Influence and the angular distance in the same pass.

The goal is (b) / (a) <= 1.1.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import circuitlab
from circuitlab.cli.layers import read_texts
from circuitlab.layers import score_layers
from circuitlab.tokenization import pad_rows, token_windows


def timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=circuitlab.DEFAULT_MODEL)
    parser.add_argument("--data", default="calibration", help="prose split or text file")
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()

    model = circuitlab.load(args.model)
    texts = read_texts(args.data)
    rows = token_windows(model.tokenizer, texts, prepend_bos=model.prepend_bos, window=args.window)
    batches = [
        pad_rows(rows[start : start + args.batch_size], model.pad_token_id)
        for start in range(0, len(rows), args.batch_size)
    ]
    tokens = sum(len(row) for row in rows)
    data = pad_rows(rows, model.pad_token_id)

    def plain(**kwargs: object) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for batch in batches:
                    model.bridge(batch.input_ids, attention_mask=batch.attention_mask, **kwargs)

        return run

    runs: dict[str, Callable[[], object]] = {
        "plain_forward": plain(),
        "forward_one_position": plain(logits_to_keep=1),
        "avss": lambda: score_layers(model, data, ("avss",), batch_size=args.batch_size),
        "avss_bi_angular": lambda: score_layers(
            model,
            data,
            ("avss", "block_influence", "angular_distance"),
            batch_size=args.batch_size,
        ),
    }
    plain()()  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            seconds[name].append(timed(run))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    ratios = {
        "avss / plain_forward": median["avss"] / median["plain_forward"],
        "avss / forward_one_position": median["avss"] / median["forward_one_position"],
        "avss_bi_angular / plain_forward": median["avss_bi_angular"] / median["plain_forward"],
    }
    print(
        f"{model.name}: {len(rows)} windows, {tokens} tokens, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, medians of {args.repeats}"
    )
    for name, value in median.items():
        print(f"  {name:<22} {value:7.2f} s  ({tokens / value:.0f} tokens/s)")
    for name, value in ratios.items():
        print(f"  {name:<34} {value:.3f}")
    goal = ratios["avss / plain_forward"] <= 1.1
    print(f"  goal avss / plain_forward <= 1.1: {'met' if goal else 'NOT met'}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "model": model.name,
                    "windows": len(rows),
                    "tokens": tokens,
                    "batch_size": args.batch_size,
                    "threads": torch.get_num_threads(),
                    "seconds": seconds,
                    "median": median,
                    "ratios": ratios,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
