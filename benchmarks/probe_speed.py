"""Benchmark: fitting one logistic-regression probe per head, batched, against scikit-learn's loop.

Usage:
    python benchmarks/probe_speed.py [--units 270] [--examples 1000 3000] [--features 64]
                                     [--repeats 3] [--sklearn-units 270] [--json OUT]

Data: per unit, features with random per-feature scales and offsets and labels from a random
linear rule plus logistic noise (learnable, ~85-95% accuracy, not separable), as
[unit, example, feature] float32, the layout of every head's last-token ``z``.

1. `LinearProbes(C=1.0)` (standardised features): median wall seconds of ``--repeats`` fits.
2. scikit-learn: ``make_pipeline(StandardScaler(), LogisticRegression(C=1.0))``, the same
   model, fitted unit by unit on the first ``--sklearn-units`` units with its default lbfgs
   solver, once at its default tol (1e-4) and once at tol 1e-8 (closer to LinearProbes'
   precision); times are scaled to all units when fewer are fitted. Its loop runs on one core
   (BLAS calls this small barely use a second), ours on torch's threads.
3. Agreement on held-out examples of the same units: the largest accuracy difference between
   the two, and the largest relative coefficient difference.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from circuitlab.probes import LinearProbes


def learnable(
    units: int, examples: int, features: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features [unit, example, feature] (float32) and labels [unit, example] (0/1)."""
    generator = torch.Generator().manual_seed(seed)
    rule = torch.randn(units, features, generator=generator) * 3 / features**0.5
    scales = torch.rand(units, 1, features, generator=generator) * 3 + 0.1
    offsets = torch.randn(units, 1, features, generator=generator)
    white = torch.randn(units, examples, features, generator=generator)
    noise = torch.rand(units, examples, generator=generator).clamp(1e-6, 1 - 1e-6)
    logits = torch.einsum("une,ue->un", white, rule) + torch.log(noise / (1 - noise))
    return white * scales + offsets, (logits > 0).long()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=270)
    parser.add_argument("--examples", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sklearn-units", type=int, default=270)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()

    rows = []
    for examples in args.examples:
        X_all, y_all = learnable(args.units, 2 * examples, args.features)
        X, y = X_all[:, :examples], y_all[:, :examples]
        X_test, y_test = X_all[:, examples:], y_all[:, examples:]

        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            probes = LinearProbes(C=1.0).fit(X, y)
            times.append(time.perf_counter() - started)

        n_sk = min(args.sklearn_units, args.units)
        sklearn_seconds, sk_accuracy, sk_coef = {}, [], []
        for name, tol in (("default", 1e-4), ("tight", 1e-8)):
            started = time.perf_counter()
            for unit in range(n_sk):
                model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, tol=tol))
                model.fit(X[unit].numpy(), y[unit].numpy())
                if name == "default":
                    sk_accuracy.append(model.score(X_test[unit].numpy(), y_test[unit].numpy()))
                    scaler, logistic = model
                    sk_coef.append(logistic.coef_[0] / scaler.scale_)
            sklearn_seconds[name] = (time.perf_counter() - started) * args.units / n_sk

        ours = probes.score(X_test, y_test)[:n_sk].numpy()
        coef = probes.coef_[:n_sk].numpy()
        reference = np.stack(sk_coef)
        relative = np.abs(coef - reference).max(-1) / np.abs(reference).max(-1)
        row = {
            "shape": [args.units, examples, args.features],
            "ours_seconds_median": statistics.median(times),
            "ours_seconds_all": times,
            "newton_iterations_mean": float(probes.n_iter_.double().mean()),
            "newton_iterations_max": int(probes.n_iter_.max()),
            "sklearn_loop_seconds": sklearn_seconds["default"],
            "sklearn_loop_seconds_tol_1e-8": sklearn_seconds["tight"],
            "sklearn_units_timed": n_sk,
            "speedup": sklearn_seconds["default"] / statistics.median(times),
            "speedup_tol_1e-8": sklearn_seconds["tight"] / statistics.median(times),
            "heldout_accuracy_mean": float(ours.mean()),
            "max_heldout_accuracy_difference": float(np.abs(ours - np.array(sk_accuracy)).max()),
            "max_relative_coef_difference": float(relative.max()),
        }
        rows.append(row)
        print(
            f"[{args.units}, {examples}, {args.features}]: LinearProbes "
            f"{row['ours_seconds_median']:.2f} s (median of {args.repeats}; "
            f"{row['newton_iterations_mean']:.1f} Newton iterations on average, "
            f"max {row['newton_iterations_max']}); scikit-learn loop "
            f"{sklearn_seconds['default']:.2f} s at its default tol 1e-4 "
            f"({row['speedup']:.2f}x ours), {sklearn_seconds['tight']:.2f} s at tol 1e-8 "
            f"({row['speedup_tol_1e-8']:.2f}x ours); held-out accuracy "
            f"{row['heldout_accuracy_mean']:.3f}, largest difference "
            f"{row['max_heldout_accuracy_difference']:.4f}; coefficients within "
            f"{row['max_relative_coef_difference']:.1e} (relative to each unit's largest, "
            f"sklearn at its default tol 1e-4)"
        )
    result = {
        "runs": rows,
        "torch_threads": torch.get_num_threads(),
        "load_average_1min_at_end": os.getloadavg()[0],
    }
    print(f"torch threads {result['torch_threads']}, load average {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
