"""Benchmark: what an ablation study costs next to the plain forward passes it is made of.

Usage:
    python benchmarks/ablation_speed.py [--model smollm2-135m-instruct] [--examples 40]
                                        [--components layers mlps] [--json OUT]

Runs `ablation_study` on a balanced sample of the built-in sentiment task (zero and mean
ablation) and times it against (components + 1) plain Hugging Face forward passes over the same
prompts in the same batches (full logits, as a user's own loop would compute them). A ratio
below 1 means the study costs less than the forward passes it needs.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

import circuitlab
from circuitlab.ablation import ablation_study, study_components


def plain_forward_seconds(model: circuitlab.ModelHandle, prompts: list[str], batch: int) -> float:
    """One pass of plain transformers over ``prompts`` in batches of ``batch`` (wall seconds)."""
    started = time.perf_counter()
    with torch.no_grad():
        for tokens in model.batches(prompts, batch):
            tokens = tokens.to(model.device)
            model.hf_model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=circuitlab.DEFAULT_MODEL)
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--components", nargs="+", default=["layers", "mlps"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()

    model = circuitlab.load(args.model)
    task = circuitlab.load_task("sentiment").balanced_sample(args.examples, seed=0)
    prompts = task.prompts()
    n_components = len(study_components(model, args.components))
    plain_forward_seconds(model, prompts[: args.batch_size], args.batch_size)  # warm-up
    forward = min(plain_forward_seconds(model, prompts, args.batch_size) for _ in range(3))
    results: dict[str, object] = {
        "model": model.name,
        "examples": len(prompts),
        "components": n_components,
        "plain_forward_seconds": forward,
        "torch_threads": torch.get_num_threads(),
    }
    for method in ("zero", "mean"):
        started = time.perf_counter()
        ablation_study(
            model, task, components=args.components, method=method, batch_size=args.batch_size
        )
        seconds = time.perf_counter() - started
        ratio = seconds / ((n_components + 1) * forward)
        results[method] = {"seconds": seconds, "ratio_to_forward_passes": ratio}
        print(
            f"{model.name}: {method} ablation of {n_components} components on {len(prompts)} "
            f"prompts: {seconds:.1f} s; {n_components + 1} plain forward passes take "
            f"{(n_components + 1) * forward:.1f} s (one: {forward:.2f} s); ratio {ratio:.2f}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=2)
            handle.write("\n")


if __name__ == "__main__":
    main()
