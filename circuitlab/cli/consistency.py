"""The consistency commands: ``circuitlab consistency-heads`` and ``circuitlab consistency-edit``.

Both split the task's inputs the same way (``--locate-fraction``, ``--seed``): heads are located
on the first part under the locating paraphrases; the sweep and the export's check use the
rest under the held-out paraphrases. ``consistency-edit --heads FILE --evaluate-all`` skips the
split and uses every input (heads located on another task: transfer).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from circuitlab.cli.output import save_figure, write_result_json
from circuitlab.consistency import load_paraphrase_task
from circuitlab.consistency.export import export_consistency_edit
from circuitlab.consistency.heads import ConsistencyHeads, locate_consistency_heads
from circuitlab.consistency.sweep import consistency_sweep
from circuitlab.errors import InputError
from circuitlab.model import ModelHandle

__all__ = ["consistency_edit", "consistency_heads"]


def _tasks(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(locate, evaluate)``: the task's inputs split by ``--locate-fraction``, or with
    ``--evaluate-all`` (consistency-edit with ``--heads``) nothing to locate on and every input
    to evaluate. Checked before any model loads."""
    task = load_paraphrase_task(args.task, paraphrases=args.paraphrases)
    if args.limit is not None:
        task = task.balanced_sample(args.limit, seed=args.seed)
    if getattr(args, "evaluate_all", False):
        if args.heads is None:
            raise InputError(
                "--evaluate-all evaluates heads located beforehand on every input of --task; "
                "pass --heads FILE (from consistency-heads --save), or drop --evaluate-all to "
                "locate on part of the inputs and evaluate on the rest."
            )
        return None, task
    return task.split_inputs(args.locate_fraction, seed=args.seed)


def _locate(model: ModelHandle, task: Any, args: argparse.Namespace) -> ConsistencyHeads:
    task.check_label_words(model)
    return locate_consistency_heads(
        model,
        task,
        C=args.C,
        method=args.method,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=True,
    )


def consistency_heads(args: argparse.Namespace, model: ModelHandle) -> None:
    """Probe every head, print the top K, write the heatmap and the result."""
    locate_task, _ = _tasks(args)
    started = time.perf_counter()
    heads = _locate(model, locate_task, args)
    seconds = time.perf_counter() - started
    settings = heads.settings
    print(
        f"{model.name} on {locate_task.name!r}: {heads.n_heads} heads probed on "
        f"{settings['probe_inputs']} + {settings['locate_inputs']} inputs x "
        f"{len(settings['paraphrases'])} paraphrases ({settings['consistent']} consistent, "
        f"{settings['inconsistent']} inconsistent prompts) in {seconds:.1f} s; chance "
        f"{heads.chance:.3f}"
    )
    top = heads.top(min(args.top_k, heads.n_heads))
    print("  top heads: " + ", ".join(f"{h} {v:.3f}" for h, v in top))
    if args.plot:
        save_figure(heads.plot(), args.plot)
    if args.save:
        print(f"wrote {heads.save(args.save)}")
    if args.json:
        write_result_json(heads, args.json, seconds=seconds)


def consistency_edit(args: argparse.Namespace, model: ModelHandle) -> None:
    """Locate, sweep α × K with controls on held-out data, pick the best, optionally export."""
    locate_task, test_task = _tasks(args)
    if args.heads:
        heads = ConsistencyHeads.load(args.heads)
        test_task.check_label_words(model)
    else:
        heads = _locate(model, locate_task, args)
    started = time.perf_counter()
    sweep = consistency_sweep(
        model,
        test_task,
        heads,
        alphas=args.alphas,
        ks=args.ks,
        control_seeds=args.control_seeds,
        direction_seeds=args.direction_seeds,
        batch_size=args.batch_size,
        checkpoint=args.checkpoint,
        progress=True,
    )
    seconds = time.perf_counter() - started
    base, best = sweep.base(), sweep.best()
    inputs = "every input" if locate_task is None else "held-out inputs"
    print(f"{model.name} on {test_task.name!r} ({inputs}, held-out paraphrases), {seconds:.0f} s:")
    print(
        f"  base: consistency {base['consistency_rate']:.3f}, accuracy "
        f"{base['accuracy_mean']:.3f} ± {base['accuracy_std']:.3f}"
    )
    print(
        f"  best located: K={best['k']} α={best['alpha']:g}: consistency "
        f"{best['consistency_rate']:.3f}, accuracy {best['accuracy_mean']:.3f} ± "
        f"{best['accuracy_std']:.3f}"
    )
    print(sweep.table().round(3).to_string())
    if args.plot:
        save_figure(sweep.plot(), args.plot)
    run: dict[str, Any] = {"seconds": seconds, "best": dict(best)}
    if args.export:
        k = args.k if args.k is not None else best["k"]
        alpha = args.alpha if args.alpha is not None else best["alpha"]
        edits = heads.interventions(model, k, alpha)
        folder, _ = export_consistency_edit(
            model, edits, args.export, test_task, overwrite=args.overwrite
        )
        print(
            f"exported K={k} α={alpha:g} to {folder}; plain transformers gives the edited "
            f"model's answer on every held-out prompt"
        )
        run["export"] = {"path": str(folder), "k": k, "alpha": alpha}
    if args.json:
        write_result_json(sweep, args.json, **run)
