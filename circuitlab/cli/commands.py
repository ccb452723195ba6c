"""What each CLI command does; argument parsing lives in `circuitlab.cli.main`."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from circuitlab.cli.output import write_json
from circuitlab.decomposition import LogitDiff, direct_logit_attribution
from circuitlab.decomposition import component_accuracy as score_components
from circuitlab.errors import InputError
from circuitlab.loading import load
from circuitlab.model import ModelHandle
from circuitlab.models import (
    KNOWN_MODELS,
    cached_model_dir,
    ensure_cached_model,
    get_spec,
    is_cached,
)
from circuitlab.models.cache import atomic_file
from circuitlab.tasks import load_task

__all__ = ["component_accuracy", "decompose", "models_fetch", "models_list", "report"]


def _load(args: argparse.Namespace) -> ModelHandle:
    return load(
        args.model, device=args.device, dtype=args.dtype, cache_dir=args.cache_dir, progress=True
    )


def _save_figure(figure: object, path: str) -> None:
    """Write a matplotlib figure atomically (PNG, SVG or PDF by extension)."""
    destination = Path(path)
    with atomic_file(destination) as tmp:
        figure.savefig(tmp, dpi=150, format=destination.suffix.lstrip(".") or "png")
    print(f"wrote {destination}")


def report(args: argparse.Namespace) -> None:
    """Model card, the top next-token predictions, and the components that write the top one."""
    started = time.perf_counter()
    model = _load(args)
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
    best = predictions[0]
    attribution = direct_logit_attribution(model, args.prompt, best.token_id)
    writers = attribution.top(args.top_k)
    print(
        f"\nComponents writing {best.token!r} most (direct logit attribution, logits; they sum "
        f"with the rest to its logit within {attribution.reconstruction_error():.0e}):"
    )
    print("  " + ", ".join(f"{component} {value:+.2f}" for component, value in writers))
    if args.json:
        write_json(
            {
                "model": card,
                "prompt": args.prompt,
                "prompt_tokens": model.to_str_tokens(args.prompt),
                "top_next_tokens": [vars(prediction) for prediction in predictions],
                "top_writers": [
                    {"component": str(component), "attribution": value}
                    for component, value in writers
                ],
            },
            args.json,
        )


def decompose(args: argparse.Namespace) -> None:
    """Direct logit attribution of every component to the target tokens."""
    targets = [*args.target, *(LogitDiff(a, b) for a, b in args.diff)]
    if not targets:
        raise InputError("Give at least one --target TOKEN or --diff A B.")
    model = _load(args)
    result = direct_logit_attribution(
        model,
        args.prompt,
        targets,
        positions=args.position,
        batch_size=args.batch_size,
        progress=len(args.prompt) > args.batch_size,
    )
    print(
        f"{model.name}: {len(result)} prompt(s), {len(result.components)} components; "
        f"attributions + constant reproduce the logits to {result.reconstruction_error():.1e}"
    )
    summary = []
    for column, label in enumerate(result.targets):
        logit = float(result.logits[:, column].mean())
        print(
            f"\ntarget {label}: mean logit {logit:.3f} "
            f"(constant {float(result.constant[:, column].mean()):.3f})"
        )
        rows = {"target": label, "mean_logit": logit, "top": [], "bottom": []}
        for kind, ranked in (
            ("top", result.top(args.top_k, column)),
            ("bottom", result.bottom(args.top_k, column)),
        ):
            print(f"  {kind} {args.top_k}: " + ", ".join(f"{c} {v:+.3f}" for c, v in ranked))
            rows[kind] = [{"component": str(c), "attribution": v} for c, v in ranked]
        summary.append(rows)
    if args.plot:
        _save_figure(result.plot_heads(0), args.plot)
    if args.save:
        print(f"wrote {result.save(args.save)}")
    if args.json:
        write_json(
            {
                "model": model.name,
                "prompts": list(result.prompts),
                "positions": result.positions.tolist(),
                "reconstruction_error": result.reconstruction_error(),
                "targets": summary,
                "components": [str(c) for c in result.components],
                "mean_attribution": result.values.mean(dim=0).T.tolist(),
            },
            args.json,
        )


def component_accuracy(args: argparse.Namespace) -> None:
    """Accuracy and type of every component on a labelled task."""
    task = load_task(
        args.task,
        text_column=args.text_column,
        label_column=args.label_column,
        label_words=args.label_words,
    )
    if args.limit is not None:
        task = task.balanced_sample(args.limit, seed=args.seed)
    model = _load(args)
    result = score_components(
        model,
        task,
        template=args.template,
        k_shot=args.k_shot,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=True,
    )
    types = result.component_types()
    print(
        f"{model.name} on {task.name!r} ({len(task)} examples, {args.k_shot}-shot, template "
        f"{args.template}): full model accuracy {types['model_accuracy']:.3f}, chance "
        f"{types['chance']:.3f}"
    )
    print("  best:  " + ", ".join(f"{c} {v:.3f}" for c, v in result.good(args.top_k)))
    print("  worst: " + ", ".join(f"{c} {v:.3f}" for c, v in result.bad(args.top_k)))
    print(
        f"  label-biased: {len(types['label_biased'])} of {len(result.components)} components "
        f"({types['label_biased_fraction']:.1%}) predict one label for every example"
    )
    if args.plot:
        _save_figure(result.plot_heads(), args.plot)
    if args.csv:
        with atomic_file(Path(args.csv)) as tmp:
            result.to_dataframe().to_csv(tmp, index=False)
        print(f"wrote {args.csv}")
    if args.json:
        write_json(
            {
                "model": model.name,
                "task": task.name,
                "examples": len(task),
                "k_shot": args.k_shot,
                "template": args.template,
                **types,
                "accuracy": dict(
                    zip([str(c) for c in result.components], result.accuracy.tolist(), strict=True)
                ),
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
