"""What each CLI command does; argument parsing lives in `circuitlab.cli.main`."""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from circuitlab.ablation import ablation_study
from circuitlab.cli.output import save_figure, write_json, write_result_json
from circuitlab.decomposition import LogitDiff, direct_logit_attribution
from circuitlab.decomposition import component_accuracy as score_components
from circuitlab.errors import InputError
from circuitlab.files import output_file
from circuitlab.interventions.export import DEFAULT_CHECK_PROMPTS, EXPORT_RECORD, export_hf
from circuitlab.interventions.serialize import load_interventions, read_prompt_file
from circuitlab.json_files import read_json
from circuitlab.loading import load
from circuitlab.model import ModelHandle
from circuitlab.models import (
    KNOWN_MODELS,
    cached_model_dir,
    ensure_cached_model,
    get_spec,
    is_cached,
)
from circuitlab.reweighting import ComponentReweighting, reweighting_study
from circuitlab.tasks import ClassificationTask, load_task

__all__ = [
    "ablate",
    "attention",
    "component_accuracy",
    "consistency_edit",
    "consistency_heads",
    "contrastive_finetune",
    "decompose",
    "export",
    "hallucination_layers",
    "ila_finetune",
    "ila_rank",
    "layer_scores",
    "logit_lens",
    "models_fetch",
    "models_list",
    "patch",
    "preloaded",
    "prune_study",
    "report",
    "reweight",
    "study",
]


_PRELOADED: list[ModelHandle] = []


@contextlib.contextmanager
def preloaded(model: ModelHandle) -> Iterator[ModelHandle]:
    """Within the block, every command uses ``model`` instead of loading one (a study loads
    its model once for all its steps)."""
    _PRELOADED.append(model)
    try:
        yield model
    finally:
        _PRELOADED.pop()


def _device_map(text: str | None) -> str | dict[str, Any] | None:
    """``--device-map`` as given, or its JSON object parsed."""
    if text is None or not text.lstrip().startswith("{"):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"--device-map {text!r} is not valid JSON ({error.msg}); give auto, a device, or a "
            f'JSON object such as \'{{"": "cpu"}}\'.'
        ) from None


def _load(args: argparse.Namespace) -> ModelHandle:
    if _PRELOADED:
        return _PRELOADED[-1]
    return load(
        args.model,
        device=args.device,
        device_map=_device_map(getattr(args, "device_map", None)),
        dtype=args.dtype,
        cache_dir=args.cache_dir,
        progress=True,
    )


def _save_table(frame: Any, path: str) -> None:
    """Write a pandas DataFrame as CSV, atomically."""
    with output_file(Path(path)) as tmp:
        frame.to_csv(tmp, index=False)
    print(f"wrote {path}")


def _task(args: argparse.Namespace) -> ClassificationTask:
    """The task named by ``--task`` (and the shared task options), sampled with ``--limit``."""
    task = load_task(
        args.task,
        text_column=args.text_column,
        label_column=args.label_column,
        label_words=args.label_words,
    )
    if args.limit is not None:
        task = task.balanced_sample(args.limit, seed=args.seed)
    return task


def report(args: argparse.Namespace) -> None:
    """The analysis report: every section on one model, written as a folder."""
    from circuitlab.report import ReportSettings, write_report
    from circuitlab.report.build import check_report_folder

    settings = ReportSettings(
        **({"prompts": tuple(args.prompt)} if args.prompt else {}),
        **({"pairs": tuple(tuple(pair) for pair in args.pair)} if args.pair else {}),
        top_k=args.top_k,
        task=args.task,
        task_examples=args.task_examples,
        k_shot=args.k_shot,
        calibration_texts=args.calibration_texts,
        ground_truth_tasks=tuple(args.ground_truth_tasks),
        ground_truth_tokens=args.ground_truth_tokens,
        ground_truth_examples=args.ground_truth_examples,
        paraphrase_task=args.paraphrase_task,
        paraphrase_inputs=args.paraphrase_inputs,
        factual_questions=args.factual_questions,
        ila_adapter=args.ila_adapter,
        ila_data=args.ila_data,
        ila_steps=args.ila_steps,
        sections=tuple(args.sections),
        seed=args.seed,
        batch_size=args.batch_size,
    )
    check_report_folder(args.out, overwrite=args.overwrite)  # before loading anything
    started = time.perf_counter()
    model = _load(args)
    load_seconds = time.perf_counter() - started
    card = model.model_card()
    print(f"circuitlab report on {card['name']}")
    print(f"  {model.arch.describe().replace(chr(10), chr(10) + '  ')}")
    print(
        f"  parameters {card['parameters']:,}, {card['dtype']} on {card['device']}, "
        f"loaded in {load_seconds:.1f} s; sections: {', '.join(settings.runs)}"
    )
    files = write_report(
        model, args.out, settings, overwrite=args.overwrite, load_seconds=load_seconds
    )
    print("\nTime per stage:")
    for stage, seconds in files.seconds.items():
        print(f"  {stage:<20} {seconds:7.1f} s")
    for section, reason in files.skipped.items():
        print(f"  {section}: not run: {reason}")
    if args.json:
        write_json(json.loads(files.results.read_text(encoding="utf-8")), args.json)
    print(f"\nReport: {files.index.resolve()}")
    print(f"Results: {files.results.resolve()} (figures in {files.folder.resolve() / 'figures'})")


def decompose(args: argparse.Namespace) -> None:
    """Direct logit attribution of every component to the target tokens."""
    targets = [*args.target, *(LogitDiff(a, b) for a, b in args.diff)]
    if not targets:
        raise InputError("Give at least one --target TOKEN or --diff A B.")
    if args.per_prompt and args.target and args.diff:
        raise InputError(
            "--per-prompt takes one --target per prompt or one --diff A B per prompt, not a mix: "
            "the command line cannot tell their order. Give every prompt a --target, or every "
            "prompt a --diff."
        )
    if args.per_prompt and len(targets) != len(args.prompt):
        raise InputError(
            f"--per-prompt pairs the i-th target with the i-th prompt: {len(targets)} target(s) "
            f"for {len(args.prompt)} prompt(s). Give one --target (or --diff) per --prompt."
        )
    model = _load(args)
    result = direct_logit_attribution(
        model,
        args.prompt,
        targets,
        positions=args.position,
        per_prompt=args.per_prompt,
        batch_size=args.batch_size,
        progress=len(args.prompt) > args.batch_size,
    )
    print(
        f"{model.name}: {len(result)} prompt(s), {len(result.components)} components; "
        f"attributions + constant reproduce the logits to {result.reconstruction_error():.1e}"
    )
    if result.prompt_targets:
        print("one target per prompt: " + ", ".join(result.prompt_targets))
    for column, label in enumerate(result.targets):
        logit = float(result.logits[:, column].mean())
        print(
            f"\ntarget {label}: mean logit {logit:.3f} "
            f"(constant {float(result.constant[:, column].mean()):.3f})"
        )
        for kind, ranked in (
            ("top", result.top(args.top_k, column)),
            ("bottom", result.bottom(args.top_k, column)),
        ):
            print(f"  {kind} {args.top_k}: " + ", ".join(f"{c} {v:+.3f}" for c, v in ranked))
    if args.plot:
        save_figure(result.plot_heads(0), args.plot)
    if args.save:
        print(f"wrote {result.save(args.save)}")
    if args.json:
        write_result_json(
            result, args.json, model=model.name, reconstruction_error=result.reconstruction_error()
        )


def component_accuracy(args: argparse.Namespace) -> None:
    """Accuracy and type of every component on a labelled task."""
    task = _task(args)
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
        save_figure(result.plot_heads(), args.plot)
    if args.csv:
        _save_table(result.to_frame(), args.csv)
    if args.json:
        write_result_json(
            result,
            args.json,
            model=model.name,
            examples=len(task),
            k_shot=args.k_shot,
            template=args.template,
            component_types=types,
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


def ablate(args: argparse.Namespace) -> None:
    """Ablate each chosen component in turn and report the effect on a metric."""
    if args.prompt is not None and not (args.target or args.diff):
        raise InputError(
            "--prompt needs --target TOKEN (the next token whose metric to measure) or --diff A B "
            "(the logit difference)."
        )
    if args.target and args.diff:
        raise InputError("Give --target TOKEN or --diff A B, not both.")
    if args.task is not None and (args.target or args.diff):
        raise InputError(
            "--target and --diff go with --prompt; a --task brings its own label words."
        )
    data: ClassificationTask | list[str] = _task(args) if args.task else args.prompt
    reference = read_prompt_file(args.reference) if args.reference else None
    if reference is not None and args.method == "zero":
        raise InputError("--reference is for --method mean or resample; zero ablation needs none.")
    model = _load(args)
    targets = None
    if args.prompt is not None:
        chosen = args.target or [LogitDiff(a, b) for a, b in args.diff]
        targets = chosen[0] if len(chosen) == 1 else chosen
    started = time.perf_counter()
    result = ablation_study(
        model,
        data,
        targets,
        components=args.components,
        method=args.method,
        reference=reference,
        metric=args.metric,
        template=args.template,
        k_shot=args.k_shot,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=True,
    )
    seconds = time.perf_counter() - started
    print(
        f"{model.name}: {result.method} ablation of {len(result.components)} components, one at "
        f"a time, on {result.data!r} ({len(result)} examples) in {seconds:.1f} s"
    )
    print(f"  {result.metric} of the intact model: {result.baseline_value:.4f}")
    errors = dict(zip(result.components, result.standard_errors.tolist(), strict=True))
    k = min(args.top_k, len(result.components))
    for label, ranked in (
        ("ablating hurts most", result.bottom(k)),
        ("ablating helps most", result.top(k)),
    ):
        print(f"  {label}: " + ", ".join(f"{c} {v:+.3f}±{errors[c]:.3f}" for c, v in ranked))
    if args.plot:
        save_figure(result.plot(), args.plot)
    if args.csv:
        _save_table(result.to_frame(), args.csv)
    if args.save:
        print(f"wrote {result.save(args.save)}")
    if args.json:
        write_result_json(result, args.json, model=model.name, seconds=seconds)


def reweight(args: argparse.Namespace) -> None:
    """Few-shot component reweighting against ICL, Calib+ and oracles on one task."""
    task = _task(args)
    settings = ComponentReweighting(
        l1=args.l1, learning_rate=args.lr, max_epochs=args.epochs, clip=args.clip
    )
    model = _load(args)
    started = time.perf_counter()
    study = reweighting_study(
        model,
        task,
        ks=args.k,
        n_demos=args.demos,
        n_demo_sets=args.demo_sets,
        templates=args.templates,
        n_test=args.n_test,
        reweighting=settings,
        run_icl_all=not args.skip_icl_all,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=True,
        checkpoint=args.checkpoint,
    )
    seconds = time.perf_counter() - started
    runs = args.demo_sets * len(args.templates)
    print(
        f"{model.name} on {task.name!r}: {runs} run(s), K' = {study.settings['n_demos']} "
        f"demonstrations, {study.settings['n_test']} balanced test examples, {seconds:.1f} s"
    )
    summary = study.to_frame()
    for k in study.settings["ks"]:
        print(f"  K = {k}:")
        for row in summary[summary["k"] == k].itertuples():
            value = "n/a" if row.mean != row.mean else f"{row.mean:.3f} ± {row.std:.3f}"
            print(f"    {row.method:<40} {value}")
    top = study.top_weighted(n=args.top_k)
    print("  largest weights: " + ", ".join(f"{c} {w:.2f}" for c, w in top))
    for note in study.notes:
        print(f"  note: {note}")
    if args.save:
        fitted = study.estimator()  # demonstration set 0, the first template, the largest K
        print(
            f"wrote {fitted.save(args.save)} (weights of demo set 0, template "
            f"{study.settings['templates'][0]}, K = {max(study.settings['ks'])})"
        )
    if args.csv:
        _save_table(summary, args.csv)
    if args.json:
        write_result_json(study, args.json, seconds=seconds)


def export(args: argparse.Namespace) -> None:
    """Bake the interventions of a spec file into a Hugging Face checkpoint, and check it."""
    spec = load_interventions(args.spec)
    if args.model is not None and spec.model is not None and args.model != spec.model:
        print(f"note: the spec was written for {spec.model}; exporting {args.model} as asked")
    if args.model is None:
        args.model = spec.model
    model = _load(args)
    started = time.perf_counter()
    folder = export_hf(  # with the check, a checkpoint that fails it is never put in place
        model,
        list(spec.interventions),
        args.output,
        overwrite=args.overwrite,
        check=args.check,
        tolerance=args.tolerance,
        check_prompts=args.check_prompt or DEFAULT_CHECK_PROMPTS,
    )
    seconds = time.perf_counter() - started
    record = read_json(folder / EXPORT_RECORD, "export record")
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    print(
        f"{model.name}: {len(spec.interventions)} intervention(s) baked into {folder} "
        f"({size / 1e6:.0f} MB) in {seconds:.1f} s"
    )
    for item in spec.interventions:
        print(f"  {item!r}")
    run: dict[str, object] = {"output": str(folder), "seconds": seconds, "megabytes": size / 1e6}
    if args.check:
        difference = record["check"]["max_logit_difference"]
        run["max_logit_difference"] = difference
        print(
            f"  check: plain transformers reloads it to the hooked model's logits within "
            f"{difference:.1e} (tolerance {args.tolerance:g}): ok"
        )
    if args.json:  # the export's own record (a spec that loads again), and the run's facts
        write_json({**record, "run": run}, args.json)


def layer_scores(args: argparse.Namespace) -> None:
    """AVSS and baseline scores of every layer (see `circuitlab.cli.layers`)."""
    from circuitlab.cli import layers
    from circuitlab.layers import check_percent

    check_percent(args.k)
    texts = layers.read_texts(args.data)  # a bad --data fails before the model loads
    layers.layer_scores(args, _load(args), texts)


def prune_study(args: argparse.Namespace) -> None:
    """The pruning study (see `circuitlab.cli.layers`)."""
    from circuitlab.cli import layers
    from circuitlab.layers import check_percent

    for percent in [*args.k, args.export_k]:
        check_percent(percent)
    texts = layers.read_texts(args.data)
    layers.prune_study(args, _load(args), texts)


def consistency_heads(args: argparse.Namespace) -> None:
    """Probe and rank the consistency heads (see `circuitlab.cli.consistency`)."""
    from circuitlab.cli import consistency

    consistency._tasks(args)  # a bad task fails before the model loads
    consistency.consistency_heads(args, _load(args))


def consistency_edit(args: argparse.Namespace) -> None:
    """The bias-injection sweep and export (see `circuitlab.cli.consistency`)."""
    from circuitlab.cli import consistency

    consistency._tasks(args)
    consistency.consistency_edit(args, _load(args))


def hallucination_layers(args: argparse.Namespace) -> None:
    """Rank hallucination-prone layers (see `circuitlab.cli.hallucination`)."""
    from circuitlab.cli import hallucination

    questions = hallucination.read_questions(args)  # a bad file fails before the model loads
    hallucination.hallucination_layers(args, _load(args), questions)


def contrastive_finetune(args: argparse.Namespace) -> None:
    """Contrastive LoRA fine-tuning of chosen layers (see `circuitlab.cli.hallucination`)."""
    from circuitlab.cli import hallucination

    questions = hallucination.read_questions(args)
    hallucination.contrastive_finetune(args, _load(args), questions)


def ila_rank(args: argparse.Namespace) -> None:
    """Rank layers by learned gates on LoRA updates (see `circuitlab.cli.ila`)."""
    from circuitlab.cli import ila

    sets = ila.read_sets(args)  # a bad file fails before the model loads
    ila.ila_rank_command(args, _load(args), sets)


def attention(args: argparse.Namespace) -> None:
    """Heads' attention patterns on a prompt, or every head's summary (see
    `circuitlab.cli.attention`)."""
    from circuitlab.cli import attention as views

    views.check_arguments(args)  # options that do not go together fail before the model loads
    views.attention_command(args, _load(args))


def patch(args: argparse.Namespace) -> None:
    """Activation or attribution patching (see `circuitlab.cli.patching`)."""
    from circuitlab.cli import patching

    pairs = patching.read_pairs(args)  # a bad file fails before the model loads
    patching.patch_command(args, _load(args), pairs)


def logit_lens(args: argparse.Namespace) -> None:
    """The logit lens of prompts (see `circuitlab.cli.lens`)."""
    from circuitlab.cli import lens

    lens.logit_lens_command(args, _load(args))


def ila_finetune(args: argparse.Namespace) -> None:
    """LoRA on the layers a selection rule picks (see `circuitlab.cli.ila`)."""
    from circuitlab.cli import ila

    sets = ila.read_sets(args)
    ila.ila_finetune(args, _load(args), sets)


def study(args: argparse.Namespace) -> None:
    """Run a study file (see `circuitlab.cli.study`)."""
    from circuitlab.cli import study as studies

    studies.study_command(args)
