"""Benchmark: ILA's stage 2 (gates) against its stage 1 (LoRA until the loss is stable).

Usage:
    python benchmarks/ila_speed.py [--model smollm2-135m-instruct] [--data facts]
                                   [--max-steps 300] [--window 20] [--gate-steps 20] [--json OUT]

Both stages run on the shipped training split with the library defaults (batch 8, LoRA r = 8 on
every linear map, AdamW 1e-3, ε = 0.02; stage 2: 20 Adam steps on the gate scores, budget 0.25).
Printed side by side: steps, wall seconds and seconds per step of each stage, and stage 2's
share of stage 1. Both stages backpropagate through the whole model, so a step costs about the
same in both; stage 2 is cheaper because it takes fewer steps.
"""

from __future__ import annotations

import argparse
import json
import os

import torch

import circuitlab
from circuitlab.ila import ila_rank, load_instructions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data", default="facts")
    parser.add_argument("--max-steps", type=int, default=300)
    parser.add_argument("--window", type=int, default=20)
    parser.add_argument("--gate-steps", type=int, default=20)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    model = circuitlab.load(args.model)
    data = load_instructions(args.data)
    ranking = ila_rank(
        model, data, max_steps=args.max_steps, window=args.window, gate_steps=args.gate_steps
    )
    one, two = ranking.stage1, ranking.stage2
    rows = {
        "stage 1 (LoRA, all layers)": (one["steps"], one["seconds"]),
        "stage 2 (gates)": (two["steps"], two["seconds"]),
    }
    print(
        f"{args.model} on {args.data} ({len(data)} pairs), {torch.get_num_threads()} threads, "
        f"{os.cpu_count()} CPUs; stage 1 stopped by {one['stopped']}"
    )
    print(f"{'':28} {'steps':>6} {'seconds':>9} {'s/step':>8}")
    for name, (steps, seconds) in rows.items():
        print(f"{name:28} {steps:>6} {seconds:>9.1f} {seconds / steps:>8.2f}")
    share = two["seconds"] / one["seconds"]
    print(f"stage 2 costs {100 * share:.0f}% of stage 1")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {
                    "model": args.model,
                    "data": args.data,
                    "pairs": len(data),
                    "threads": torch.get_num_threads(),
                    "stage1": {k: one[k] for k in ("steps", "seconds", "stopped")},
                    "stage2": {k: two[k] for k in ("steps", "seconds")},
                    "stage2_share": share,
                    "top_layers": list(ranking.top(percent=25)),
                },
                handle,
                indent=1,
            )


if __name__ == "__main__":
    main()
