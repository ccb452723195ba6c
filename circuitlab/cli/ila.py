"""The ILA commands: ``circuitlab ila-rank`` and ``circuitlab ila-finetune``.

``ila-rank`` runs both ILA stages on each ``--data`` set (and each ``--seeds`` seed), prints each
ranking's top layers and the ``peft`` config that tunes only them, and with several rankings the
Jaccard overlap of their top layers. ``ila-finetune`` trains LoRA on the layers a selection rule
picks (all, the ILA top k%, all but the ILA bottom k%, k% random, the AVSS top k%) and compares
the held-out instruction loss before and after.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from circuitlab.cli.output import save_figure, write_json
from circuitlab.errors import InputError
from circuitlab.ila.data import InstructionSet, load_instructions
from circuitlab.ila.fit import fit_lora, instruction_loss
from circuitlab.ila.rank import ila_rank
from circuitlab.ila.result import ILARanking, layer_budget, ranking_overlap
from circuitlab.model import ModelHandle

__all__ = ["ila_finetune", "ila_rank_command", "read_sets"]


def read_sets(args: argparse.Namespace) -> list[tuple[InstructionSet, InstructionSet]]:
    """``(train, heldout)`` of every ``--data`` set, read and checked before any model loads.
    A file without a ``split`` field holds out a seeded 20%."""
    sets = []
    for source in args.data:
        options = {
            "instruction_column": args.instruction_column,
            "response_column": args.response_column,
        }
        everything = load_instructions(source, split=None, **options)
        train = load_instructions(source, split="train", **options)
        if len(train) == len(everything):  # nothing held out (no split field): hold out 20%
            train, heldout = everything.split_off(0.2, seed=0)
        else:
            heldout = load_instructions(source, split="heldout", **options)
        if args.limit is not None:
            train = InstructionSet(
                train.name, train.instructions[: args.limit], train.responses[: args.limit]
            )
        sets.append((train, heldout))
    return sets


def _budget(args: argparse.Namespace, model: ModelHandle) -> dict[str, Any]:
    """``--top-k`` or ``--percent`` (default 25%) as keyword arguments, checked on the model."""
    if args.top_k is not None:
        try:
            layer_budget(model.n_layers, args.top_k)
        except InputError as error:
            raise InputError(str(error).replace("pass k ", "pass --top-k ")) from None
        return {"k": args.top_k}
    percent = 25.0 if args.percent is None else args.percent
    layer_budget(model.n_layers, percent=percent)
    return {"percent": percent}


def ila_rank_command(
    args: argparse.Namespace,
    model: ModelHandle,
    sets: list[tuple[InstructionSet, InstructionSet]],
) -> None:
    """Rank the layers on every set and seed; print the top layers and their overlap."""
    budget = _budget(args, model)
    rankings: dict[str, ILARanking] = {}
    started = time.perf_counter()
    for train, _ in sets:
        for seed in args.seeds:
            label = train.name if len(args.seeds) == 1 else f"{train.name} seed {seed}"
            folder = (
                Path(args.checkpoint_dir) / f"{train.name}-seed{seed}"
                if args.checkpoint_dir
                else None
            )
            adapter = Path(args.adapters) / f"{train.name}-seed{seed}" if args.adapters else None
            ranking = ila_rank(
                model,
                train,
                modules=args.modules,
                r=args.rank,
                alpha=args.lora_alpha,
                learning_rate=args.learning_rate,
                batch_size=args.batch_size,
                stable=args.stable,
                window=args.window,
                max_steps=args.max_steps,
                unit=args.unit,
                budget=args.budget,
                sparsity=args.sparsity,
                gate_learning_rate=args.gate_learning_rate,
                gate_steps=args.gate_steps,
                seed=seed,
                checkpoint=folder,
                save_adapter=adapter,
            )
            rankings[label] = ranking
            top = ranking.top(**budget)
            print(
                f"{label}: {len(train)} pairs; stage 1 {ranking.stage1['steps']} steps "
                f"({ranking.stage1['stopped']}, {ranking.stage1['seconds']:.0f} s), stage 2 "
                f"{ranking.stage2['steps']} steps ({ranking.stage2['seconds']:.0f} s)"
            )
            gammas = ", ".join(f"{ranking.gamma[i]:.3f}" for i in top)
            print(f"  top {len(top)} layers: {list(top)}  (γ {gammas})")
    first = next(iter(rankings.values()))
    config = first.lora_config(
        model, **budget, modules=args.modules, r=args.rank, alpha=args.lora_alpha
    )
    print(f"  peft LoraConfig for the top layers: layers_to_transform={config.layers_to_transform}")
    overlap = ranking_overlap(rankings, **budget) if len(rankings) > 1 else None
    if overlap is not None:
        print(f"Jaccard overlap of the top {overlap.k} layers (mean {overlap.mean:.2f}):")
        print(overlap.to_frame().round(2).to_string())
    seconds = time.perf_counter() - started
    if args.plot:
        figure = (
            overlap.plot()
            if overlap is not None
            else first.plot(percent=budget.get("percent", 25.0))
        )
        save_figure(figure, args.plot)
    if args.save:
        print(f"wrote {first.save(args.save)}")
    if args.json:
        write_json(
            {
                "kind": "ila-rank",
                "model": model.name,
                "rankings": {label: r.to_document() for label, r in rankings.items()},
                "top": {label: list(r.top(**budget)) for label, r in rankings.items()},
                "overlap": overlap.to_document() if overlap is not None else None,
                "run": {"seconds": seconds},
            },
            args.json,
        )


def _layers(args: argparse.Namespace, model: ModelHandle) -> tuple[list[int], str]:
    """The layers ``--select`` picks, and how they were chosen."""
    n = model.n_layers
    if args.select == "all":
        return list(range(n)), "all layers"
    budget = _budget(args, model)
    count = layer_budget(n, **budget)
    if args.select in ("top", "freeze-bottom"):
        if args.ranking is None:
            raise InputError(
                f"--select {args.select} needs an ILA ranking: pass --ranking FILE (written by "
                f"circuitlab ila-rank --save FILE)."
            )
        ranking = ILARanking.load(args.ranking)
        if ranking.n_layers != n:
            raise InputError(
                f"The ranking in {args.ranking} covers {ranking.n_layers} layers but "
                f"{model.name} has {n}; rank this model first."
            )
        if args.select == "top":
            return list(ranking.top(**budget)), f"ILA top {count}"
        bottom = set(ranking.bottom(**budget))
        return [
            layer for layer in range(n) if layer not in bottom
        ], f"all but the ILA bottom {count}"
    if args.select == "random":
        from circuitlab.layers import random_scores

        ranking_order = random_scores(n, seed=args.seed).ranking
        return sorted(ranking_order[::-1][:count]), f"{count} random layers (seed {args.seed})"
    from circuitlab.evaluation import load_heldout_prose
    from circuitlab.layers import score_layers

    avss = score_layers(model, load_heldout_prose("calibration"), methods=["avss"])["avss"]
    return sorted(avss.ranking[::-1][:count]), f"AVSS top {count} (held-out prose)"


def ila_finetune(
    args: argparse.Namespace,
    model: ModelHandle,
    sets: list[tuple[InstructionSet, InstructionSet]],
) -> None:
    """Train LoRA on the selected layers; compare the held-out instruction loss."""
    train, heldout = sets[0]
    layers, chosen_by = _layers(args, model)
    started = time.perf_counter()
    before = instruction_loss(model, heldout, progress=False)
    fit = fit_lora(
        model,
        train,
        layers,
        modules=args.modules,
        r=args.rank,
        alpha=args.lora_alpha,
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        stable=None,
        max_steps=args.steps,
        seed=args.seed,
        checkpoint=args.checkpoint,
    )
    try:
        after = instruction_loss(model, heldout, progress=False)
        if args.export:
            fit.adapter.save(args.export, overwrite=args.overwrite)
            print(f"wrote {args.export} (a peft adapter: PeftModel.from_pretrained)")
    finally:
        fit.adapter.remove()
    seconds = time.perf_counter() - started
    losses = fit.history.step_losses
    print(
        f"{model.name}: LoRA on {len(layers)} layers {layers} ({chosen_by}); {train.name}: "
        f"{len(train)} training and {len(heldout)} held-out pairs"
    )
    print(
        f"  trained {fit.history.steps} steps in {fit.seconds:.0f} s; loss {losses[0]:.3f} -> "
        f"{losses[-1]:.3f}"
    )
    print(f"  held-out instruction loss (nats/token): {before:.4f} -> {after:.4f}")
    if args.json:
        write_json(
            {
                "kind": "ila-finetune",
                "model": model.name,
                "layers": layers,
                "chosen_by": chosen_by,
                "settings": fit.settings,
                "step_losses": list(losses),
                "heldout_loss_before": before,
                "heldout_loss_after": after,
                "run": {"seconds": seconds},
            },
            args.json,
        )
