"""Benchmark: how long `export_hf` takes, and how faithful the exported checkpoint is.

Usage:
    python benchmarks/export_speed.py [--model smollm2-135m-instruct] [--repeats 3] [--json OUT]

Exports the model with a set of interventions covering every bakeable kind (head zero and mean
ablation, MLP and layer scaling, head steering, head and layer pruning) into a temporary folder
``--repeats`` times, timing each export (wall seconds, median reported), then reloads the last
one with plain ``transformers.AutoModelForCausalLM.from_pretrained`` (timed too) and reports the
largest absolute logit difference between the hooked model and the reloaded checkpoint.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab.interventions import Ablate, PruneHeads, PruneLayers, Scale, SteerHead
from circuitlab.interventions.export import export_hf

PROMPTS = ["The capital of France is", "Once upon a time, there was a little"]
REFERENCE = ["The weather today is", "My favourite food is", "The Eiffel Tower is in"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=circuitlab.DEFAULT_MODEL)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()

    model = circuitlab.load(args.model)
    last = model.n_layers - 1
    edits = [
        Ablate(f"L{last}H0"),
        Ablate(f"L{last - 1}H1", "mean", reference=REFERENCE),
        Scale(f"MLP{last}", 0.5),
        Scale(f"L{last - 2}", 1.5),
        SteerHead(f"L{last - 3}H0", torch.linspace(-0.5, 0.5, model.d_model)),
        PruneHeads([f"L{last - 4}H0"]),
        PruneLayers([2, 5]),
    ]
    batch = model.tokenize(PROMPTS)
    with model.intervene(*edits):
        hooked = model.logits(batch)

    export_seconds = []
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "edited"
        for _ in range(args.repeats):
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_hf(model, edits, target, overwrite=True)
            export_seconds.append(time.perf_counter() - start)
        size_mb = sum(f.stat().st_size for f in target.iterdir()) / 1e6  # MB, not MiB
        start = time.perf_counter()
        reloaded = AutoModelForCausalLM.from_pretrained(
            target, dtype=torch.float32, attn_implementation="eager"
        ).eval()
        reload_seconds = time.perf_counter() - start
        with torch.no_grad():
            exported = reloaded(
                input_ids=batch.input_ids, attention_mask=batch.attention_mask
            ).logits
    mask = batch.attention_mask.bool()
    difference = float((exported[mask] - hooked[mask]).abs().max())
    result = {
        "model": model.name,
        "interventions": [repr(edit) for edit in edits],
        "export_seconds_median": statistics.median(export_seconds),
        "export_seconds_all": export_seconds,
        "checkpoint_mb": size_mb,
        "reload_seconds": reload_seconds,
        "max_abs_logit_difference": difference,
    }
    print(
        f"{model.name}: export {result['export_seconds_median']:.2f} s (median of "
        f"{args.repeats}: {', '.join(f'{s:.2f}' for s in export_seconds)}), checkpoint "
        f"{size_mb:.0f} MB, plain reload {reload_seconds:.2f} s, max |logit difference| "
        f"hooked vs reloaded {difference:.2e}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
