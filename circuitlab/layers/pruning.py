"""The pruning study: remove the k% lowest-ranked layers by each score and measure what survives.

Every evaluation is keyed by the set of layers removed, so a layer set two methods agree on
is measured once, and with a ``checkpoint`` file each finished evaluation is written at once
(atomically): an interrupted study rerun with the same checkpoint resumes where it stopped.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure
from tqdm.auto import tqdm

from circuitlab.checkpoints import CheckpointStore
from circuitlab.errors import InputError
from circuitlab.evaluation.suite import EVALUATION_TASKS, EvaluationSuite, retention
from circuitlab.fingerprint import model_fingerprint
from circuitlab.interventions import PruneLayers
from circuitlab.layers.scores import LayerScores, layers_to_remove
from circuitlab.model import ModelHandle
from circuitlab.results import Result
from circuitlab.vocabulary import DEFAULT_PERCENTS

__all__ = ["DEFAULT_PERCENTS", "PruningStudy", "ground_truth_scores", "pruning_study"]


class _Evaluations:
    """Suite results per removed-layer set, memoised in a `CheckpointStore` (a file if given)."""

    def __init__(
        self,
        model: ModelHandle,
        suite: EvaluationSuite,
        checkpoint: str | os.PathLike[str] | None,
        progress: bool,
    ) -> None:
        self.model = model
        self.suite = suite
        self.progress = progress
        scope = {
            "model": model.name,
            "model_fingerprint": model_fingerprint(model),
            "n_layers": model.n_layers,
            "suite": suite.settings(),
        }
        self.store = CheckpointStore(checkpoint, kind="pruning-study", scope=scope)
        self.used: list[dict[str, Any]] = []

    def __call__(self, layers: Sequence[int]) -> dict[str, float]:
        key = {"removed_layers": sorted(int(layer) for layer in layers)}
        if key not in self.used:
            self.used.append(key)
        return dict(self.store.compute(key, lambda: self._evaluate(layers)))

    def _evaluate(self, layers: Sequence[int]) -> dict[str, float]:
        if not layers:
            return self.suite.evaluate(self.model, progress=self.progress)
        with self.model.intervene(PruneLayers(tuple(layers))):
            return self.suite.evaluate(self.model, progress=self.progress)

    @property
    def seconds(self) -> float:
        """Time the evaluations this study used took when they were computed, summed."""
        return sum(self.store.seconds(key) for key in self.used)


def _mean_retention(kept: Mapping[str, float]) -> float:
    values = [kept[task] for task in EVALUATION_TASKS if task in kept and math.isfinite(kept[task])]
    return float(np.mean(values)) if values else math.nan


def ground_truth_scores(
    model: ModelHandle,
    suite: EvaluationSuite | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> LayerScores:
    """The ground truth of layer importance: the performance lost when each layer alone is removed.

    Value of layer i = 1 − mean retention over the suite's tasks with layer i pruned (so 0.3
    means 30% of the performance is lost; higher = more important). The per-task retentions
    are kept as details. Costs one suite evaluation per layer (plus the intact model).

    Args:
        model: the model handle.
        suite: what to evaluate (default: the full `EvaluationSuite`).
        checkpoint: JSON file keeping every finished evaluation; rerunning resumes from it.
        progress: show progress bars.
    """
    suite = suite or EvaluationSuite()
    return _ground_truth(model, suite, _Evaluations(model, suite, checkpoint, progress), progress)


def _ground_truth(
    model: ModelHandle, suite: EvaluationSuite, evaluations: _Evaluations, progress: bool
) -> LayerScores:
    """`ground_truth_scores` from memoised ``evaluations`` (shared with a pruning study)."""
    original = evaluations(())
    per_task: dict[str, list[float]] = {task: [] for task in original}
    values = []
    for layer in tqdm(range(model.n_layers), desc="ground truth", disable=not progress):
        kept = retention(original, evaluations((layer,)))
        for task, value in kept.items():
            per_task[task].append(value)
        values.append(1.0 - _mean_retention(kept))
    if not all(math.isfinite(value) for value in values):
        raise InputError(
            f"The intact model scores 0 on every task of the suite ({original}), so no drop "
            f"can be measured. Use tasks the model can do."
        )
    return LayerScores(
        "ground_truth",
        values,
        details={f"retention_{task}": column for task, column in per_task.items()},
        settings={"suite": suite.settings(), "original": original},
        model=model.name,
    )


@dataclass
class PruningStudy(Result):
    """Results of `pruning_study`.

    Attributes:
        model: model name.
        n_layers: its number of layers.
        suite: the evaluation settings.
        original: the intact model's metrics.
        scores: every ranking used, by method (with ``"ground_truth"`` when computed).
        rows: one per (method, k): layers removed, metrics, retention per task, mean.
        seconds: wall time of this call (small when resumed from a checkpoint).
        notes: anything the reader should know.
        evaluation_seconds: time spent on every evaluation the study uses, summed (including
            evaluations a checkpoint carried over from an interrupted run).
        evaluations: number of distinct evaluations (removed-layer sets) the study uses.
    """

    model: str
    n_layers: int
    suite: dict[str, Any]
    original: dict[str, float]
    scores: dict[str, LayerScores]
    rows: list[dict[str, Any]]
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    evaluation_seconds: float = 0.0
    evaluations: int = 0

    def to_frame(self) -> pd.DataFrame:
        """One row per (method, k): removed layers, metrics and retentions."""
        records = []
        for row in self.rows:
            record = {
                "method": row["method"],
                "k": row["percent"],
                "removed": len(row["layers"]),
                "layers": " ".join(str(layer) for layer in row["layers"]),
                **row["metrics"],
            }
            record.update({f"retention_{task}": value for task, value in row["retention"].items()})
            record["retention_mean"] = row["mean_retention"]
            records.append(record)
        return pd.DataFrame.from_records(records)

    def retention_table(self, percent: float = 25.0) -> pd.DataFrame:
        """Retention per task (and the mean) of every method at one k, as a method x task table.

        Args:
            percent: the k of the table, in percent (one of `percents`).
        """
        frame = self.to_frame()
        frame = frame[np.isclose(frame["k"], percent)]
        if frame.empty:
            raise InputError(f"The study has no k = {percent}%; it ran {self.percents}.")
        columns = [column for column in frame.columns if column.startswith("retention_")]
        table = frame.set_index("method")[columns]
        return table.rename(columns=lambda name: name.removeprefix("retention_"))

    @property
    def percents(self) -> list[float]:
        """The k values of the sweep."""
        return sorted({row["percent"] for row in self.rows})

    def __repr__(self) -> str:
        return (
            f"PruningStudy({self.model!r}: {len(self.scores)} rankings x k = "
            f"{self.percents} %, {self.evaluations} evaluations)"
        )

    def spearman(self) -> pd.DataFrame:
        """Spearman correlation of every score with the ground truth (NaN without one)."""
        truth = self.scores.get("ground_truth")
        records = [
            {
                "method": method,
                "spearman": scores.spearman(truth) if truth is not None else math.nan,
            }
            for method, scores in self.scores.items()
            if method != "ground_truth"
        ]
        return pd.DataFrame.from_records(records)

    def plot(self) -> Figure:
        """Retention against k, one line per method, one panel per task and one for the mean.

        Each method has its own marker, so methods whose lines coincide stay visible; the
        legend sits outside the panels.
        """
        frame = self.to_frame()
        tasks = [t for t in (*EVALUATION_TASKS, "mean") if f"retention_{t}" in frame.columns]
        figure = Figure(figsize=(2.9 * len(tasks) + 1.8, 3.4), layout="constrained")
        axes = np.atleast_1d(figure.subplots(1, len(tasks), sharey=True))
        markers = "osD^vP*Xh"
        methods = list(dict.fromkeys(frame["method"]))
        palette = colormaps["tab10" if len(methods) <= 10 else "tab20"].colors  # no repeats
        for ax, task in zip(axes, tasks, strict=True):
            for index, (method, group) in enumerate(frame.groupby("method", sort=False)):
                style = "--" if method in ("random", "ground_truth") else "-"
                ax.plot(
                    group["k"],
                    group[f"retention_{task}"],
                    style,
                    marker=markers[index % len(markers)],
                    color=palette[index % len(palette)],
                    markersize=6 - 0.6 * min(index, 4),  # later markers smaller: overlaps show
                    label=method,
                )
            ax.axhline(0.9, color="grey", linewidth=0.8, linestyle=":", label="90% retained")
            if frame[f"retention_{task}"].isna().all():
                ax.text(0.5, 0.5, "not measurable\n(intact score 0)", ha="center",
                        va="center", transform=ax.transAxes, fontsize=8, color="grey")  # fmt: skip
            ax.set_title(task, fontsize=10)
            ax.set_xlabel("layers removed (%)")
            ax.set_xticks(self.percents)
        axes[0].set_ylabel("performance retained\n(pruned / original)")
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(
            handles, labels, loc="outside right upper", fontsize=8, title="ranking",
            title_fontsize=8,
        )  # fmt: skip
        figure.suptitle(
            f"{self.model}: retention after pruning the k% lowest-ranked layers "
            f"({len(methods)} rankings)",
            fontsize=10,
        )
        return figure

    # --------------------------------------------------------------- storage
    @classmethod
    def _from_plain(cls, data: Mapping[str, Any]) -> PruningStudy:
        """Rebuild from the plain layout results had before the result protocol."""
        try:
            return cls(
                model=data["model"],
                n_layers=int(data["n_layers"]),
                suite=dict(data["suite"]),
                original=dict(data["original"]),
                scores={m: LayerScores._from_plain(s) for m, s in data["scores"].items()},
                rows=list(data["rows"]),
                seconds=float(data.get("seconds", 0.0)),
                notes=list(data.get("notes", [])),
                evaluation_seconds=float(data.get("evaluation_seconds", 0.0)),
                evaluations=int(data.get("evaluations", 0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"Not pruning study data ({error!r}).") from error

    @classmethod
    def _from_legacy(cls, data: Mapping[str, Any], tensors: Any, path: Path) -> PruningStudy:
        """Files written before the result protocol hold the plain layout."""
        return cls._from_plain(data)


def pruning_study(
    model: ModelHandle,
    scores: Mapping[str, LayerScores] | Sequence[LayerScores],
    *,
    percents: Sequence[float] = DEFAULT_PERCENTS,
    suite: EvaluationSuite | None = None,
    ground_truth: bool | LayerScores = True,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> PruningStudy:
    """Prune the k% lowest-ranked layers by each score; evaluate; report retention per task.

    Args:
        model: the model handle.
        scores: the rankings to compare (e.g. the output of `score_layers`).
        percents: the k values, each in (0, 100), none removing every layer.
        suite: what to evaluate (default: the full `EvaluationSuite`).
        ground_truth: ``True`` measures the single-layer-removal ground truth (one evaluation
            per layer), correlates every score with it, and prunes by it too; pass a computed
            `LayerScores` to reuse one; ``False`` skips it.
        checkpoint: JSON file keeping every finished evaluation; rerunning resumes from it.
        progress: show progress bars.
    """
    started = time.perf_counter()
    rankings = dict(scores) if isinstance(scores, Mapping) else {s.method: s for s in scores}
    if not rankings and ground_truth is False:
        raise InputError("No layer scores to prune by. Pass the output of score_layers.")
    for method, ranking in rankings.items():
        if ranking.n_layers != model.n_layers:
            raise InputError(
                f"The {method} scores cover {ranking.n_layers} layers but {model.name} has "
                f"{model.n_layers}: they were computed on another model."
            )
    percents = [float(p) for p in percents]
    if not percents:
        raise InputError("No k given: pass percentages of layers to prune, e.g. (10, 25, 40).")
    for percent in percents:
        layers_to_remove(model.n_layers, percent)  # validates k before any evaluation
    suite = suite or EvaluationSuite()
    evaluations = _Evaluations(model, suite, checkpoint, progress)
    original = evaluations(())
    if isinstance(ground_truth, LayerScores):
        rankings["ground_truth"] = ground_truth
    elif ground_truth:
        rankings["ground_truth"] = _ground_truth(model, suite, evaluations, progress)
    rows = []
    for method, ranking in rankings.items():
        for percent in percents:
            layers = ranking.lowest(percent)
            metrics = evaluations(layers)
            kept = retention(original, metrics)
            rows.append(
                {
                    "method": method,
                    "percent": percent,
                    "layers": list(layers),
                    "metrics": metrics,
                    "retention": kept,
                    "mean_retention": _mean_retention(kept),
                }
            )
    notes = []
    if "ground_truth" in rankings:
        notes.append(
            "ground_truth prunes by the measured single-layer drops on the evaluation data "
            "itself: an oracle, not a method."
        )
    return PruningStudy(
        model=model.name,
        n_layers=model.n_layers,
        suite=suite.settings(),
        original=original,
        scores=rankings,
        rows=rows,
        seconds=time.perf_counter() - started,
        notes=notes,
        evaluation_seconds=evaluations.seconds,
        evaluations=len(evaluations.used),
    )
