"""The patching command: ``circuitlab patch``.

Activation patching over one pair (``--clean``/``--corrupted``) or a file of pairs
(``--pairs``): a layer × position map for residual and branch sites, a layer × head map for
``--site z``; or, with ``--attribution``, the gradient estimate of every component's effect
(``--exact`` adds the exact effects and their Spearman ρ). ``--json`` writes the result's
document plus a ``map`` entry: one row per layer, one column per position (or head), the mean
raw metric over pairs, and the clean and corrupted baselines.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

from circuitlab.cli.output import save_figure, write_json
from circuitlab.errors import InputError
from circuitlab.model import ModelHandle
from circuitlab.patching import (
    AttributionPatching,
    PatchingMap,
    PromptPair,
    activation_patching,
    attribution_patching,
    load_pairs,
)

__all__ = ["patch_command", "read_pairs"]


def read_pairs(args: argparse.Namespace) -> list[PromptPair]:
    """The pairs of ``--pairs FILE`` or ``--clean``/``--corrupted``, with ``--diff`` or
    ``--target`` applied to every pair (read before the model loads)."""
    if args.pairs and (args.clean or args.corrupted):
        raise InputError("Give --pairs FILE or --clean and --corrupted, not both.")
    if args.pairs:
        pairs = load_pairs(args.pairs)
    elif args.clean and args.corrupted:
        pairs = [PromptPair(args.clean, args.corrupted)]
    else:
        raise InputError(
            "Say what to patch: --clean TEXT --corrupted TEXT (one pair) or --pairs FILE "
            "(.jsonl/.json/.csv with clean, corrupted, answer, wrong)."
        )
    if args.diff and args.target:
        raise InputError("Give --diff A B (logit difference) or --target TOKEN, not both.")
    if args.diff:
        answer, wrong = args.diff
        pairs = [dataclasses.replace(pair, answer=answer, wrong=wrong) for pair in pairs]
    elif args.target:
        pairs = [dataclasses.replace(pair, answer=args.target) for pair in pairs]
    return pairs


def _metric(args: argparse.Namespace) -> str:
    if args.metric:
        return args.metric
    return "log_prob" if args.target else "logit_diff"


def _layer_map(result: PatchingMap) -> dict[str, object]:
    """The map a reader wants: one row per layer, one column per position (or head)."""
    values = result.mean(normalised=False)

    def plain(value: float) -> float | None:
        return None if math.isnan(value) else value

    return {
        "site": result.site,
        "direction": result.direction,
        "metric": result.metric,
        "layers": list(result.layers),
        f"{result.column_kind}s": list(result.columns),
        "labels": list(result.labels),
        "values": [[plain(float(v)) for v in row] for row in values],
        "clean": plain(float(result.clean.mean())),
        "corrupted": plain(float(result.corrupted.mean())),
        "pairs": result.n_pairs,
    }


def _print_map(result: PatchingMap) -> None:
    mean = result.mean()
    print(
        f"{result.direction} patching of {result.site}, metric {result.metric}: clean "
        f"{float(result.clean.mean()):.3f}, corrupted {float(result.corrupted.mean()):.3f} "
        f"(mean of {result.n_pairs} pair{'s' if result.n_pairs != 1 else ''}); normalised effect:"
    )
    labels = [label.strip()[:7] or repr(label)[:7] for label in result.labels]
    print("layer " + " ".join(f"{label:>7}" for label in labels))
    for row, layer in enumerate(result.layers):
        print(f"{layer:>5} " + " ".join(f"{float(v):>7.2f}" for v in mean[row]))
    best = ", ".join(
        f"L{layer} {result.column_kind} {column}: {value:.2f}"
        for layer, column, value in result.top(5)
    )
    print(f"strongest: {best}")


def _print_attribution(result: AttributionPatching) -> None:
    print(
        f"attribution patching ({result.direction}, metric {result.metric}): clean "
        f"{float(result.clean.mean()):.3f}, corrupted {float(result.corrupted.mean()):.3f}"
    )
    frame = result.to_frame()
    order = frame["estimate"].abs().sort_values(ascending=False).index[:10]
    for index in order:
        row = frame.loc[index]
        exact = f"  exact {row['exact']:+.3f}" if "exact" in frame else ""
        print(f"  {row['component']:>8}  estimate {row['estimate']:+.3f}{exact}")
    if result.exact is not None:
        print(
            f"Spearman ρ (estimate vs exact, {len(result.components)} components): "
            f"{result.spearman:.3f}"
        )


def patch_command(args: argparse.Namespace, model: ModelHandle, pairs: list[PromptPair]) -> None:
    """Run the sweep (or attribution patching), print it, and write ``--json``/``--plot``."""
    if args.exact and not args.attribution:
        raise InputError(
            "--exact compares attribution patching with exact patching; add --attribution."
        )
    started = time.perf_counter()
    if args.attribution:
        result: PatchingMap | AttributionPatching = attribution_patching(
            model, pairs, _metric(args), direction=args.direction, exact=args.exact,
            batch_size=args.batch_size, progress=True,
        )  # fmt: skip
        _print_attribution(result)
        extra: dict[str, object] = {}
    else:
        result = activation_patching(
            model, pairs, _metric(args), site=args.site, direction=args.direction,
            layers=args.layers, positions=args.positions, batch_size=args.batch_size,
            progress=True,
        )  # fmt: skip
        _print_map(result)
        extra = {"map": _layer_map(result)}
    seconds = time.perf_counter() - started
    if args.json:
        document = {**result.to_document(), **extra, "run": {"seconds": round(seconds, 2)}}
        write_json(document, args.json)
    if args.plot:
        save_figure(result.plot(), args.plot)
