"""Benchmark: batched activation patching and attribution patching on an embedded model.

Usage:
    python benchmarks/patching_speed.py [--model smollm2-135m-instruct] [--json OUT]

1. A layer × position sweep (``resid_pre``) over one country-swap pair, batched
   (`activation_patching`), against the naive loop of one `Patch` per forward pass; both
   give the same map (the largest difference is reported).
2. Attribution patching of every component (EMBED, every head, every MLP, plus the residual
   stream at every layer and position) against one plain forward pass over the same prompts:
   the cost in forward-pass equivalents (median of 5 runs each).
3. On several tasks, the Spearman rank correlation of the attribution estimates with exact
   patching: over all components, heads only, MLPs only, and the residual stream's
   layer × position cells.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from scipy.stats import spearmanr

import circuitlab
from circuitlab import sites
from circuitlab.components import Head, Mlp
from circuitlab.interventions import Patch
from circuitlab.patching import PromptPair, activation_patching, attribution_patching

SWAP = PromptPair(
    "The Eiffel Tower is in the city of", "The Colosseum is in the city of", " Paris", " Rome"
)

TASKS: dict[str, list[PromptPair]] = {
    "landmarks": [
        SWAP,
        PromptPair(SWAP.corrupted, SWAP.clean, " Rome", " Paris"),
        PromptPair("The Brandenburg Gate is in the city of", SWAP.clean, " Berlin", " Paris"),
    ],
    "capitals": [
        PromptPair("The capital of France is", "The capital of Italy is", " Paris", " Rome"),
        PromptPair("The capital of Germany is", "The capital of Japan is", " Berlin", " Tokyo"),
        PromptPair("The capital of Greece is", "The capital of Spain is", " Athens", " Madrid"),
        PromptPair("The capital of Japan is", "The capital of France is", " Tokyo", " Paris"),
    ],
    "names (IOI)": [
        PromptPair(
            "When Mary and John went to the store, John gave a drink to",
            "When Mary and John went to the store, Mary gave a drink to",
            " Mary",
            " John",
        ),
        PromptPair(
            "When Tom and Anna went to the park, Anna gave a ball to",
            "When Tom and Anna went to the park, Tom gave a ball to",
            " Tom",
            " Anna",
        ),
    ],
    "names (IOI, 8 pairs)": [
        PromptPair(
            f"When {a} and {b} went to the {place}, {b} gave a {thing} to",
            f"When {a} and {b} went to the {place}, {a} gave a {thing} to",
            f" {a}",
            f" {b}",
        )
        for a, b, place, thing in [
            ("Mary", "John", "store", "drink"),
            ("Tom", "Anna", "park", "ball"),
            ("James", "Sarah", "office", "book"),
            ("Paul", "Emma", "school", "pen"),
            ("John", "Mary", "beach", "towel"),
            ("Anna", "Tom", "station", "ticket"),
            ("Sarah", "James", "market", "bag"),
            ("Emma", "Paul", "garden", "flower"),
        ]
    ],
    "pronouns": [
        PromptPair("The king said that", "The queen said that", " he", " she"),
        PromptPair("The boy said that", "The girl said that", " he", " she"),
    ],
}


def median_seconds(run: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def naive_sweep(model: circuitlab.ModelHandle, pair: PromptPair) -> torch.Tensor:
    """One forward pass per (layer, position), the clean activations cached once: the loop a
    user would write by hand."""
    answer, wrong = model.token_id(pair.answer), model.token_id(pair.wrong)
    length = len(model.to_str_tokens(pair.corrupted))
    names = [sites.resid_pre(layer) for layer in range(model.n_layers)]
    _, cache = model.run_with_cache([pair.clean], names=names)
    values = torch.empty(model.n_layers, length)
    for layer in range(model.n_layers):
        source = cache[sites.resid_pre(layer).hook_name]
        for position in range(length):
            patch = Patch(sites.resid_pre(layer), source=source, positions=position)
            with model.intervene(patch):
                logits = model.next_token_logits([pair.corrupted])[0]
            values[layer, position] = logits[answer] - logits[wrong]
    return values


def plain_forward(model: circuitlab.ModelHandle, prompts: list[str]) -> None:
    tokens = model.tokenize(prompts).to(model.device)
    with torch.no_grad():
        model.hf_model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)


def rho(a: np.ndarray, b: np.ndarray) -> float:
    return float(spearmanr(a, b).statistic)


def task_correlations(model: circuitlab.ModelHandle, pairs: list[PromptPair]) -> dict[str, object]:
    estimate = attribution_patching(model, pairs, exact=True, progress=False)
    heads = [i for i, c in enumerate(estimate.components) if isinstance(c, Head)]
    mlps = [i for i, c in enumerate(estimate.components) if isinstance(c, Mlp)]
    exact, approx = estimate.mean_exact().numpy(), estimate.mean_estimates().numpy()
    residual = activation_patching(model, pairs, site="resid_pre", progress=False)
    exact_residual = (residual.values - residual.corrupted[:, None, None]).mean(dim=0)
    approx_residual = estimate.residual[:, :, : exact_residual.shape[1]].mean(dim=0)
    top_exact = [str(estimate.components[i]) for i in np.argsort(-np.abs(exact))[:5]]
    top_estimate = [str(estimate.components[i]) for i in np.argsort(-np.abs(approx))[:5]]
    return {
        "pairs": len(pairs),
        "clean_metric": float(estimate.clean.mean()),
        "corrupted_metric": float(estimate.corrupted.mean()),
        "spearman_all": estimate.spearman,
        "spearman_heads": rho(approx[heads], exact[heads]),
        "spearman_mlps": rho(approx[mlps], exact[mlps]),
        "spearman_residual": rho(
            approx_residual.flatten().numpy(), exact_residual.flatten().numpy()
        ),
        "top5_exact": top_exact,
        "top5_estimate": top_estimate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=circuitlab.DEFAULT_MODEL)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    model = circuitlab.load(args.model)
    results: dict[str, object] = {"model": model.name, "torch_threads": torch.get_num_threads()}

    length = len(model.to_str_tokens(SWAP.corrupted))
    activation_patching(model, [SWAP], layers=[0], progress=False)  # warm-up
    batched = median_seconds(lambda: activation_patching(model, [SWAP], progress=False), 3)
    started = time.perf_counter()
    naive = naive_sweep(model, SWAP)
    naive_seconds = time.perf_counter() - started
    swept = activation_patching(model, [SWAP], progress=False)
    forward = median_seconds(lambda: plain_forward(model, [SWAP.corrupted]))
    results["sweep"] = {
        "runs": model.n_layers * length,
        "positions": length,
        "batched_seconds": batched,
        "naive_seconds": naive_seconds,
        "speedup": naive_seconds / batched,
        "max_difference": float((swept.values[0] - naive).abs().max()),
        "one_forward_seconds": forward,
    }
    print(json.dumps(results["sweep"], indent=1))

    results["attribution"] = {}
    for name in ("capitals", "names (IOI, 8 pairs)"):
        pairs = TASKS[name]
        prompts = [pair.corrupted for pair in pairs]
        attribution_patching(model, pairs, batch_size=len(pairs), progress=False)  # warm-up
        forward = median_seconds(lambda: plain_forward(model, prompts))  # noqa: B023
        estimate = median_seconds(
            lambda: attribution_patching(model, pairs, batch_size=len(pairs), progress=False)  # noqa: B023
        )
        results["attribution"][name] = {
            "pairs": len(pairs),
            "tokens": len(model.to_str_tokens(prompts[0])),
            "components": 1 + model.n_layers * (model.n_heads + 1),
            "plain_forward_seconds": forward,
            "attribution_seconds": estimate,
            "forward_equivalents": estimate / forward,
        }
        print(name, json.dumps(results["attribution"][name], indent=1))

    results["tasks"] = {}
    for name, task in TASKS.items():
        results["tasks"][name] = task_correlations(model, task)
        print(name, json.dumps(results["tasks"][name], indent=1))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
