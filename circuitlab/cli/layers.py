"""The layer-importance commands: ``circuitlab layer-scores`` and ``circuitlab prune-study``."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from circuitlab.cli.output import write_json, write_result_json
from circuitlab.errors import InputError
from circuitlab.evaluation import EvaluationSuite, load_heldout_prose
from circuitlab.evaluation.data import PROSE_SPLITS
from circuitlab.files import output_file, read_text_file
from circuitlab.interventions import PruneLayers
from circuitlab.interventions.export import EXPORT_RECORD, export_hf
from circuitlab.json_files import read_json
from circuitlab.layers import LayerScores, pruning_study, score_layers
from circuitlab.model import ModelHandle

__all__ = ["layer_scores", "prune_study", "read_texts"]


def read_texts(source: str) -> list[str]:
    """Texts to score on: a shipped prose split, a ``.jsonl`` file (``text`` field) or a file."""
    if source in PROSE_SPLITS:
        return load_heldout_prose(source)
    path = Path(source)
    if not path.is_file():
        raise InputError(
            f"--data {source!r} is neither a shipped prose split ({', '.join(PROSE_SPLITS)}) nor "
            f"a file. Pass a .txt file (one text) or a .jsonl file with a 'text' field per line."
        )
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(read_text_file(path, "data file").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                texts.append(str(row["text"]))
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise InputError(
                    f"{path}, line {number}: expected a JSON object with a 'text' field ({error})."
                ) from error
        return texts
    text = read_text_file(path, "data file")
    return [text] if text.strip() else []


def _score(
    model: ModelHandle, args: argparse.Namespace, texts: list[str], methods: list[str]
) -> dict[str, LayerScores]:
    return score_layers(
        model,
        texts,
        methods,
        site=args.site,
        epsilon=args.epsilon,
        window=args.window,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=True,
    )


def _write_figure(figure: object, path: Path) -> None:
    with output_file(path) as tmp:
        figure.savefig(tmp, dpi=130, format="png")  # type: ignore[attr-defined]


def _write_text(text: str, path: Path) -> None:
    with output_file(path) as tmp:
        tmp.write_text(text)


def _scores_table(scores: dict[str, LayerScores]) -> str:
    frames = [s.to_frame().set_index("layer")[[s.method]] for s in scores.values()]
    return frames[0].join(frames[1:]).reset_index().to_csv(index=False)


def _scores_document(scores: dict[str, LayerScores], seconds: float) -> dict[str, object]:
    """Each method's `LayerScores` document (`circuitlab.results`), and the run's facts."""
    return {"results": {m: s.to_document() for m, s in scores.items()}, "run": {"seconds": seconds}}


def layer_scores(args: argparse.Namespace, model: ModelHandle, texts: list[str]) -> None:
    """Score every layer (AVSS and baselines), print the ranking, write tables and figures."""
    started = time.perf_counter()
    scores = _score(model, args, texts, args.methods)
    seconds = time.perf_counter() - started
    tokens = next((s.settings.get("tokens") for s in scores.values() if "tokens" in s.settings), 0)
    print(
        f"{model.name}: {model.n_layers} layers scored on {args.data!r} ({tokens} tokens, site "
        f"{args.site}, ε = {args.epsilon:g}) in {seconds:.1f} s"
    )
    for method, result in scores.items():
        lowest = ", ".join(str(layer) for layer in result.lowest(args.k))
        print(f"  {method:<17} {args.k:g}% lowest: {lowest}")
        for note in result.notes:
            print(f"    note: {note}")
    if args.out:
        folder = Path(args.out)
        folder.mkdir(parents=True, exist_ok=True)
        _write_text(_scores_table(scores), folder / "layer_scores.csv")
        write_json(_scores_document(scores, seconds), str(folder / "layer_scores.json"))
        for method, result in scores.items():
            _write_figure(result.plot(args.k), folder / f"{method}.png")
        print(f"wrote layer_scores.csv, layer_scores.json and one figure per method to {folder}")
    if args.json:
        write_json(_scores_document(scores, seconds), args.json)


def prune_study(args: argparse.Namespace, model: ModelHandle, texts: list[str]) -> None:
    """Score, prune k% by each ranking, evaluate, write tables and figures, optionally export."""
    methods = [method for method in args.methods if method != "ground_truth"]
    suite = EvaluationSuite(
        tasks=tuple(args.tasks),
        qa_questions=args.qa_questions,
        perplexity_tokens=args.perplexity_tokens,
        sentiment_examples=args.sentiment_examples,
        batch_size=args.batch_size,
        seed=args.seed if args.suite_seed is None else args.suite_seed,
    )
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    export_method = args.export_method
    if args.export and export_method not in args.methods:
        raise InputError(
            f"--export-method {export_method!r} is not among --methods {args.methods}."
        )
    scores = _score(model, args, texts, methods) if methods else {}
    study = pruning_study(
        model,
        scores,
        percents=args.k,
        suite=suite,
        ground_truth="ground_truth" in args.methods,
        checkpoint=folder / "evaluations.json",
        progress=True,
    )
    print(
        f"{model.name}: intact "
        + ", ".join(f"{task} {value:.3f}" for task, value in study.original.items())
        + f"; study took {study.seconds:.0f} s"
    )
    for percent in study.percents:
        print(f"  k = {percent:g}%: retention (pruned / original; perplexity inverted)")
        table = study.retention_table(percent)
        for method, row in table.iterrows():
            cells = "  ".join(f"{task} {value:6.1%}" for task, value in row.items())
            print(f"    {method:<17} {cells}")
    spearman = study.spearman()
    if "ground_truth" in study.scores:
        print(
            "  Spearman ρ with the ground truth: "
            + ", ".join(f"{row.method} {row.spearman:+.2f}" for row in spearman.itertuples())
        )
    study.save(folder / "study.json")
    _write_text(study.to_frame().to_csv(index=False), folder / "retention.csv")
    _write_text(spearman.to_csv(index=False), folder / "spearman.csv")
    _write_text(_scores_table(study.scores), folder / "layer_scores.csv")
    _write_figure(study.plot(), folder / "retention.png")
    for method, result in study.scores.items():
        _write_figure(
            result.plot(min(study.percents, key=lambda p: abs(p - 25))), folder / f"{method}.png"
        )
    print(
        f"wrote study.json, retention.csv, spearman.csv, layer_scores.csv and figures to {folder}"
    )
    if args.export:
        layers = study.scores[export_method].lowest(args.export_k)
        pruning = PruneLayers(layers)
        path = export_hf(model, [pruning], args.export, overwrite=args.overwrite, check=True)
        difference = read_json(path / EXPORT_RECORD, "export record")["check"][
            "max_logit_difference"
        ]
        print(
            f"exported {model.name} without layers {list(layers)} ({export_method}, "
            f"{args.export_k:g}%) to {path}; plain transformers reloads it within "
            f"{difference:.1e} logits of the pruned model"
        )
    if args.json:
        write_result_json(study, args.json)
