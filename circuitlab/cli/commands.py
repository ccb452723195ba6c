"""What each CLI command does; argument parsing lives in :mod:`circuitlab.cli.main`."""

from __future__ import annotations

import argparse
import time

from circuitlab.cli.output import write_json
from circuitlab.loading import load
from circuitlab.models import (
    KNOWN_MODELS,
    cached_model_dir,
    ensure_cached_model,
    get_spec,
    is_cached,
)

__all__ = ["models_fetch", "models_list", "report"]


def report(args: argparse.Namespace) -> None:
    """Model card plus the top next-token predictions for a prompt."""
    started = time.perf_counter()
    model = load(
        args.model, device=args.device, dtype=args.dtype, cache_dir=args.cache_dir, progress=True
    )
    load_seconds = time.perf_counter() - started
    card = model.model_card()
    predictions = model.top_next_tokens(args.prompt, k=args.top_k)
    print(f"circuitlab model card: {card['name']}")
    print(f"  {model.arch.describe().replace(chr(10), chr(10) + '  ')}")
    print(
        f"  parameters {card['parameters']:,}, {card['dtype']} on {card['device']}, "
        f"BOS policy: {card['bos_policy']}, loaded in {load_seconds:.1f} s"
    )
    print(f"\nTop {len(predictions)} next tokens after {args.prompt!r}:")
    for rank, prediction in enumerate(predictions, start=1):
        print(
            f"  {rank:>2}. {prediction.token!r:<20} p={prediction.probability:.4f}  "
            f"logit={prediction.logit:.3f}"
        )
    if args.json:
        write_json(
            {
                "model": card,
                "prompt": args.prompt,
                "prompt_tokens": model.to_str_tokens(args.prompt),
                "top_next_tokens": [vars(prediction) for prediction in predictions],
            },
            args.json,
        )


def models_list(args: argparse.Namespace) -> None:
    """The registry, with each model's cache state."""
    rows = [
        {
            "name": spec.name,
            "architecture": spec.architecture,
            "cached": is_cached(spec, args.cache_dir),
            "path": str(cached_model_dir(spec, args.cache_dir)),
            "description": spec.description,
        }
        for spec in KNOWN_MODELS.values()
    ]
    for row in rows:
        state = "cached" if row["cached"] else "not cached"
        print(f"{row['name']:<24} {state:<11} {row['description']}")
    if args.json:
        write_json(rows, args.json)


def models_fetch(args: argparse.Namespace) -> None:
    """Fetch, convert and verify one registry model."""
    spec = get_spec(args.name)
    started = time.perf_counter()
    folder = ensure_cached_model(spec, args.cache_dir, progress=True)
    seconds = time.perf_counter() - started
    print(f"{spec.name}: cached at {folder} ({seconds:.1f} s)")
    if args.json:
        write_json({"name": spec.name, "path": str(folder), "seconds": seconds}, args.json)
