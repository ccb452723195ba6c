"""The paper's few-shot protocol: component reweighting against ICL, Calib+ and oracles.

For each demonstration set ``s`` and template ``t``:

1. draw K labelled examples from a training pool (class-balanced, round robin);
   the first K' are the demonstrations, the other K - K' train the learned read-outs;
2. cache the label-word contributions of the training and test examples, each prompt
   carrying the K' demonstrations (one streaming pass each; the demonstrations are a prefix
   shared by every prompt and run once);
3. score on the balanced test set:
   ``icl_demos``   the full model with the K' demonstrations (K'-shot ICL),
   ``icl_all``     the full model with all K examples as demonstrations (K-shot ICL),
   ``calib_plus``  per-class weights on the model's label probabilities (K - K' examples),
   ``comp_rw``     component reweighting (K - K' examples; the given settings, by
                   default the paper's),
   ``comp_rw_code`` component reweighting with the authors' code settings (L1 0.01,
                   weights clipped to [0, 1]),
   ``oracle_best`` / ``oracle_worst``  the single most / least accurate component *on the
                   test set* (oracles, not methods: they peek at the test labels).

Smaller K use a prefix of the same draw, so K = 12 and K = 24 share demonstrations and
test contributions.
"""

from __future__ import annotations

import copy
import itertools
import math
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab.checkpoints import CheckpointStore
from circuitlab.checks import checked_arguments
from circuitlab.components import Component, parse_components
from circuitlab.errors import InputError
from circuitlab.fingerprint import data_fingerprint, model_fingerprint
from circuitlab.model import ModelHandle
from circuitlab.progress import progress_bar
from circuitlab.results import Result
from circuitlab.reweighting.calibration import CalibPlus
from circuitlab.reweighting.contributions import label_contributions
from circuitlab.reweighting.estimator import ComponentReweighting
from circuitlab.reweighting.icl import label_logits
from circuitlab.tasks import ClassificationTask
from circuitlab.tasks.task import round_robin_draw
from circuitlab.training import TrainingHistory

__all__ = [
    "METHODS",
    "ReweightingStudy",
    "default_demos",
    "draw_examples",
    "reweighting_study",
    "split_pool_test",
]

METHODS: dict[str, str] = {
    "icl_demos": "ICL K'-shot",
    "icl_all": "ICL K-shot",
    "calib_plus": "Calib+",
    "comp_rw": "CompRW",
    "comp_rw_code": "CompRW, code settings (l1 0.01, clip)",
    "oracle_best": "Oracle best single (T1)",
    "oracle_worst": "Oracle worst single (B1)",
}
"""Method keys of a study and their names in tables."""


def default_demos(n_labels: int) -> int:
    """The paper's number of demonstrations: 4, or 3 for 3-class tasks.

    Args:
        n_labels: the task's number of classes.
    """
    return 3 if n_labels == 3 else 4


@dataclass(frozen=True)
class ReweightingStudy(Result):
    """Accuracies of every method in every run, plus what the runs learned.

    Attributes:
        task: the task's name.
        model_name: the model's name.
        settings: the protocol's settings (ks, demos, demo sets, templates, sizes, seed...).
        records: one dict per (demo set, template, K, method): ``demo_set``, ``template``,
            ``k``, ``method``, ``accuracy`` (0..1, NaN when the method could not run); for
            oracles ``component``, for CompRW the training ``history`` (see `estimator`).
        components: the weighted components.
        component_accuracy: each component's test accuracy in each run [demo_set, template,
            component].
        weights: learned CompRW weights [demo_set, template, k index, component].
        notes: anything that could not run, and why.
        fingerprint: `circuitlab.fingerprint.model_fingerprint` of the model.
    """

    task: str
    model_name: str
    settings: dict[str, Any]
    records: tuple[dict[str, Any], ...]
    components: tuple[Component, ...]
    component_accuracy: Float[Tensor, "demo_set template component"]
    weights: Float[Tensor, "demo_set template k component"]
    notes: tuple[str, ...] = field(default=())
    fingerprint: str | None = None

    def __repr__(self) -> str:
        k = max(self.settings["ks"])
        parts = [
            f"{key} {self.mean(key, k):.3f}"
            for key in ("icl_demos", "icl_all", "calib_plus", "comp_rw")
        ]
        return f"ReweightingStudy({self.task!r} on {self.model_name!r}, K={k}: {', '.join(parts)})"

    def accuracies(self, method: str, k: int) -> list[float]:
        """The accuracy of ``method`` at ``k`` in every run (NaN where it could not run).

        Args:
            method: a method key of `METHODS` (``"comp_rw"``, ``"calib_plus"``...).
            k: the number of labelled examples K (one of the study's ``ks``).
        """
        if method not in METHODS:
            raise InputError(f"Unknown method {method!r}; use one of {list(METHODS)}.")
        if k not in self.settings["ks"]:
            raise InputError(f"K={k} was not run; this study has K in {self.settings['ks']}.")
        return [r["accuracy"] for r in self.records if r["method"] == method and r["k"] == k]

    def mean(self, method: str, k: int) -> float:
        """Mean accuracy over the runs (NaN if any run could not run).

        Args:
            method: a method key of `METHODS` (``"comp_rw"``, ``"calib_plus"``...).
            k: the number of labelled examples K (one of the study's ``ks``).
        """
        values = self.accuracies(method, k)
        return sum(values) / len(values)

    def std(self, method: str, k: int) -> float:
        """Standard deviation over the runs (population, as numpy's default).

        Args:
            method: a method key of `METHODS` (``"comp_rw"``, ``"calib_plus"``...).
            k: the number of labelled examples K (one of the study's ``ks``).
        """
        values = self.accuracies(method, k)
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))

    def to_frame(self) -> Any:
        """Mean and std of every method at every K (pandas DataFrame, accuracies 0..1)."""
        import pandas as pd

        rows = [
            {
                "method": METHODS[method],
                "k": k,
                "mean": self.mean(method, k),
                "std": self.std(method, k),
                "runs": len(self.accuracies(method, k)),
            }
            for k in self.settings["ks"]
            for method in METHODS
        ]
        return pd.DataFrame(rows)

    def plot(self, k: int | None = None, *, title: str | None = None) -> Any:
        """Bar chart of every method's mean test accuracy at ``k`` (default: the largest K),
        with the standard deviation over the runs as error bars (matplotlib Figure).

        Args:
            k: the number of labelled examples K shown (default: the largest of ``ks``).
            title: figure title (default: one naming the task, model and K).
        """
        from matplotlib.figure import Figure

        k = max(self.settings["ks"]) if k is None else k
        if k not in self.settings["ks"]:
            raise InputError(f"K={k} was not part of this study; it has {self.settings['ks']}.")
        from circuitlab.decomposition.plots import mark_short_bars

        names = list(METHODS)
        means = [self.mean(method, k) for method in names]
        stds = [self.std(method, k) for method in names]
        figure = Figure(figsize=(7.5, 3.8), layout="constrained")
        axes = figure.subplots()
        colors = ["tab:blue"] * len(names)
        axes.bar(range(len(names)), means, yerr=stds, color=colors, capsize=3)
        mark_short_bars(axes, range(len(names)), means, colors)
        for index, (mean, std) in enumerate(zip(means, stds, strict=True)):
            text = "not run" if math.isnan(mean) else f"{mean:.2f}"
            top = 0.0 if math.isnan(mean) else mean + (0.0 if math.isnan(std) else std)
            axes.text(index, top + 0.02, text, ha="center", va="bottom", fontsize=7)
        words = self.settings.get("label_words") or []
        if words:
            chance = 1.0 / len(words)
            axes.axhline(chance, color="grey", linestyle=":", linewidth=0.9, zorder=0.5)
            axes.text(len(names) - 0.5, chance, f"chance {chance:.2f}", ha="right",
                      va="bottom", fontsize=7, color="grey")  # fmt: skip
        axes.set_xticks(range(len(names)), [METHODS[m] for m in names], rotation=30, ha="right")
        axes.set_ylabel("test accuracy")
        axes.set_ylim(0, 1.12)
        axes.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
        runs = len(self.accuracies(names[0], k))
        axes.set_title(
            title
            or f"{self.task} on {self.model_name}, K = {k} labelled examples\n"
            f"mean test accuracy over {runs} run{'s' if runs != 1 else ''} (error bars: std)",
            fontsize=10,
        )
        return figure

    def top_weighted(self, k: int | None = None, n: int = 5) -> list[tuple[Component, float]]:
        """The ``n`` components with the largest CompRW weight, averaged over the runs at ``k``.

        Args:
            k: the number of labelled examples K (default: the largest of ``ks``).
            n: how many components to return.
        """
        k = max(self.settings["ks"]) if k is None else k
        index = list(self.settings["ks"]).index(k)
        mean = self.weights[:, :, index].mean(dim=(0, 1))
        order = torch.argsort(mean, descending=True, stable=True)[:n]
        return [(self.components[int(i)], float(mean[i])) for i in order]

    def estimator(
        self, demo_set: int = 0, template: int | None = None, k: int | None = None
    ) -> ComponentReweighting:
        """The fitted `ComponentReweighting` of one run (default: demonstration set 0, the
        first template, the largest K), ready to `predict`, `score` or `save`.

        Its weights are the run's effective weights (already clipped when ``clip``, which
        clipping again leaves unchanged), so it predicts exactly as in the study.

        Args:
            demo_set: index of the demonstration set (``0 .. n_demo_sets - 1``).
            template: the prompt template index (default: the study's first template).
            k: the number of labelled examples K (default: the largest of ``ks``).
        """
        templates = list(self.settings["templates"])
        template = templates[0] if template is None else template
        k = max(self.settings["ks"]) if k is None else k
        if not 0 <= demo_set < self.weights.shape[0]:
            raise InputError(
                f"demo_set {demo_set} was not run; this study has 0 .. {self.weights.shape[0] - 1}."
            )
        if template not in templates or k not in self.settings["ks"]:
            raise InputError(
                f"No run with template {template} and K={k}; this study has templates "
                f"{templates} and K in {self.settings['ks']}."
            )
        record = next(
            r
            for r in self.records
            if r["method"] == "comp_rw"
            and (r["demo_set"], r["template"], r["k"]) == (demo_set, template, k)
        )
        if "history" not in record:
            raise InputError(
                "This study was saved before studies kept their training histories; rerun it "
                "to get its fitted estimators."
            )
        fitted = ComponentReweighting(**self.settings["reweighting"])
        index = self.settings["ks"].index(k)
        fitted.weights_ = self.weights[demo_set, templates.index(template), index].clone()
        fitted.components_ = tuple(self.components)
        fitted.label_words_ = tuple(self.settings["label_words"])
        fitted.fingerprint_ = self.fingerprint or ""
        fitted.model_name_ = self.model_name
        fitted.history_ = TrainingHistory.from_dict(record["history"])
        return fitted

    def transfer(self) -> dict[str, float]:
        """Do component accuracies carry over between runs?

        Mean Pearson correlation of the per-component test accuracies between pairs of runs
        that differ only in the demonstration set (same template), only in the template (same
        demonstration set), or in both.
        """
        acc = self.component_accuracy
        n_sets, n_templates, _ = acc.shape
        groups: dict[str, list[float]] = {
            "across_demo_sets": [],
            "across_templates": [],
            "across_both": [],
        }
        runs = [(s, t) for s in range(n_sets) for t in range(n_templates)]
        for (s1, t1), (s2, t2) in itertools.combinations(runs, 2):
            key = (
                "across_demo_sets"
                if t1 == t2
                else "across_templates"
                if s1 == s2
                else "across_both"
            )
            groups[key].append(_pearson(acc[s1, t1], acc[s2, t2]))
        return {key: (sum(v) / len(v) if v else float("nan")) for key, v in groups.items()}

    @classmethod
    def _from_legacy(cls, data: Mapping[str, Any], tensors: Any, path: Path) -> ReweightingStudy:
        """Files written before the result protocol hold a plain layout."""
        records = tuple(
            {**r, "accuracy": float("nan") if r["accuracy"] is None else r["accuracy"]}
            for r in data["records"]
        )
        return cls(
            task=data["task"],
            model_name=data["model_name"],
            settings=data["settings"],
            records=records,
            components=tuple(parse_components(data["components"])),
            component_accuracy=torch.tensor(data["component_accuracy"]),
            weights=torch.tensor(data["weights"]),
            notes=tuple(data["notes"]),
        )


def _pearson(a: Tensor, b: Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denominator = float(a.norm() * b.norm())
    return float((a * b).sum()) / denominator if denominator > 0 else float("nan")


def _draw(pool: ClassificationTask, n: int, n_demos: int, seed: int) -> tuple[list[int], list[int]]:
    """Round-robin class-balanced draw of ``n`` pool indices: (demonstrations, training).

    Every prefix of the draw is as balanced as the pool allows, so smaller K take a prefix.
    """
    rng = random.Random(seed)
    drawn, _ = round_robin_draw(pool, n, rng)
    demos, train = drawn[:n_demos], drawn[n_demos:]
    rng.shuffle(demos)
    return demos, train


def split_pool_test(
    task: ClassificationTask,
    k: int,
    *,
    pool_size: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
) -> tuple[ClassificationTask, ClassificationTask]:
    """Set aside a pool to draw K labelled examples from; the rest, balanced, is the test set.

    Args:
        task: the task.
        k: the largest K the pool must supply.
        pool_size: pool examples (default ``2 * k``), stratified by class.
        n_test: test examples, the same number per class (default: as many as balance allows).
        seed: seed of the split and of the test sample.

    Returns:
        ``(pool, test)``, disjoint.
    """
    pool_size = 2 * k if pool_size is None else pool_size
    if pool_size < k or pool_size >= len(task):
        raise InputError(
            f"Task {task.name!r} has {len(task)} examples; the pool of {pool_size} must hold "
            f"K={k} and leave a test set. Use a larger task or a smaller K or pool_size."
        )
    pool, rest = task.split(pool_size, seed=seed)
    smallest = min(rest.label_counts().values())
    if smallest == 0:
        raise InputError(
            f"After setting aside the pool, task {task.name!r} has no test example of some "
            f"class ({rest.label_counts()}). Use a larger task or a smaller pool_size."
        )
    n_test = task.n_labels * smallest if n_test is None else n_test
    return pool, rest.balanced_sample(n_test, seed=seed)


def draw_examples(
    pool: ClassificationTask, k: int, n_demos: int, *, seed: int = 0
) -> tuple[list[tuple[str, int]], ClassificationTask]:
    """K labelled examples from ``pool``: ``n_demos`` demonstrations and K - K' to train on.

    Classes take turns, so the demonstrations and every prefix of the training examples are
    as balanced as the pool allows.

    Args:
        pool: the labelled examples to draw from.
        k: how many examples to draw (K), demonstrations included.
        n_demos: how many of them become demonstrations (K'); the other K - K' train.
        seed: seed of the draw (and of the demonstrations' order).

    Returns:
        ``(demos, train)``: ``(text, label)`` demonstration pairs and a task of the others.
    """
    _check_protocol(pool, [k], n_demos)
    demo_idx, train_idx = _draw(pool, k, n_demos, seed)
    return [(pool.texts[i], pool.labels[i]) for i in demo_idx], pool.subset(train_idx)


def _check_protocol(task: ClassificationTask, ks: Sequence[int], n_demos: int) -> None:
    if not ks:
        raise InputError("ks is empty; give at least one K, e.g. ks=(12, 24).")
    if n_demos < 0:
        raise InputError(f"n_demos must be 0 or more, got {n_demos}.")
    for k in ks:
        if k - n_demos < task.n_labels:
            raise InputError(
                f"K={k} labelled examples with {n_demos} of them as demonstrations leave "
                f"{k - n_demos} to train on, fewer than one per class ({task.n_labels} classes). "
                f"Use K >= {n_demos + task.n_labels} or fewer demonstrations."
            )


@checked_arguments
def reweighting_study(
    model: ModelHandle,
    task: ClassificationTask,
    *,
    ks: Sequence[int] = (12, 24),
    n_demos: int | None = None,
    n_demo_sets: int = 5,
    templates: Sequence[int] | None = None,
    pool_size: int | None = None,
    n_test: int | None = None,
    reweighting: ComponentReweighting | None = None,
    run_icl_all: bool = True,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> ReweightingStudy:
    """Run the paper's few-shot protocol on one task.

    Args:
        model: the model handle (frozen).
        task: a labelled classification task.
        ks: the numbers of labelled examples K (the paper: 12 and 24 for the 24-example runs).
        n_demos: demonstrations K' per prompt (default: 4, or 3 for 3-class tasks).
        n_demo_sets: demonstration sets (the paper: 5).
        templates: template indices (default: all of the task's; the paper uses 3).
        pool_size: examples set aside to draw the K from (default 2 * max(ks)); the rest is
            the test set.
        n_test: test examples (balanced; default: as many as keep the test set balanced).
        reweighting: the `ComponentReweighting` settings to fit (default: its defaults).
        run_icl_all: also run K-shot ICL (long prompts; the costliest baseline).
        seed: seed of the pool/test split and of every draw.
        batch_size: prompts per forward pass.
        progress: progress bar over the runs (default: shown once the call
            runs past 2 s; ``False`` never; see `circuitlab.progress`).
        checkpoint: JSON file keeping every finished run (demonstration set x template);
            rerunning with the same path resumes from it, also after the process was killed.

    Returns:
        A `ReweightingStudy`.

    Example:
        >>> study = reweighting_study(model, load_task("sentiment"), n_demo_sets=5)
        >>> study.to_frame()
    """
    ks = sorted({int(k) for k in ks})
    n_demos = default_demos(task.n_labels) if n_demos is None else int(n_demos)
    _check_protocol(task, ks, n_demos)
    templates = list(range(len(task.templates))) if templates is None else list(templates)
    if n_demo_sets < 1 or not templates:
        raise InputError("Give at least one demonstration set and one template.")
    for template in templates:
        task.prompt("x", template=template)  # a clear error for a missing template
    pool, test = split_pool_test(task, max(ks), pool_size=pool_size, n_test=n_test, seed=seed)
    pool_size, n_test = len(pool), len(test)
    reweighting = reweighting or ComponentReweighting()

    settings = {
        "ks": ks,
        "n_demos": n_demos,
        "pool_size": pool_size,
        "n_test": n_test,
        "seed": seed,
        "reweighting": reweighting.get_params(),
        "run_icl_all": run_icl_all,
    }
    store = CheckpointStore(
        checkpoint,
        kind="reweighting-study",
        scope={"model_fingerprint": model_fingerprint(model), "task": _task_fingerprint(task)},
    )
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    accuracy_runs, weight_runs = [], []
    components: tuple[Component, ...] = ()
    runs = list(itertools.product(range(n_demo_sets), templates))
    for demo_set, template in progress_bar(runs, desc=f"{task.name} runs", progress=progress):
        run = store.compute(
            {"demo_set": demo_set, "template": template, "run_format": 2, **settings},
            lambda demo_set=demo_set, template=template: _run(
                model, task, pool, test, reweighting, ks, n_demos, demo_set, template, seed,
                run_icl_all, batch_size,
            ),
        )  # fmt: skip
        records.extend(run["records"])
        notes.extend(run["notes"])
        components = tuple(parse_components(run["components"]))
        accuracy_runs.append(torch.tensor(run["component_accuracy"]))
        weight_runs.append(torch.tensor(run["weights"]))
    n_templates = len(templates)
    return ReweightingStudy(
        task=task.name,
        model_name=model.name,
        settings={
            "ks": ks,
            "n_demos": n_demos,
            "n_demo_sets": n_demo_sets,
            "templates": templates,
            "pool_size": pool_size,
            "n_test": n_test,
            "seed": seed,
            "reweighting": reweighting.get_params(),
            "label_words": list(task.label_words),
        },
        records=tuple(records),
        components=components,
        component_accuracy=torch.stack(accuracy_runs).reshape(n_demo_sets, n_templates, -1),
        weights=torch.stack(weight_runs).reshape(n_demo_sets, n_templates, len(ks), -1),
        notes=tuple(dict.fromkeys(notes)),
        fingerprint=model_fingerprint(model),
    )


def _run(
    model: ModelHandle,
    task: ClassificationTask,
    pool: ClassificationTask,
    test: ClassificationTask,
    reweighting: ComponentReweighting,
    ks: list[int],
    n_demos: int,
    demo_set: int,
    template: int,
    seed: int,
    run_icl_all: bool,
    batch_size: int,
) -> dict[str, Any]:
    """One run (a demonstration set and a template) as plain data: records, component
    accuracies, CompRW weights per K, components and notes."""
    labels = torch.tensor(test.labels)
    records: list[dict[str, Any]] = []
    notes: list[str] = []
    demo_idx, train_idx = _draw(pool, max(ks), n_demos, seed * 1000 + demo_set)
    demos = [(pool.texts[i], pool.labels[i]) for i in demo_idx]
    train_c = label_contributions(
        model, pool.subset(train_idx), template=template, demos=demos, batch_size=batch_size
    )
    test_c = label_contributions(model, test, template=template, demos=demos, batch_size=batch_size)
    base = {"demo_set": demo_set, "template": template}
    chosen = reweighting._chosen(test_c)
    component_acc = (test_c.select(chosen).argmax(dim=-1) == labels[:, None]).float().mean(0)
    best, worst = int(component_acc.argmax()), int(component_acc.argmin())
    icl_demos = float((test_c.logits.argmax(dim=-1) == labels).float().mean())
    run_weights = []
    for k in ks:
        train_k = train_c.subset(list(range(k - n_demos)))
        rw = copy.deepcopy(reweighting).fit(train_k)
        run_weights.append(rw.effective_weights_)
        code_rw = ComponentReweighting(l1=0.01, clip=True, components=reweighting.components)
        calib = CalibPlus().fit(train_k)
        icl_all = float("nan")
        if run_icl_all:
            icl_all = _icl_all(
                model,
                task,
                pool,
                test,
                demo_idx,
                train_idx,
                k,
                n_demos,
                template,
                seed * 1000 + demo_set,
                batch_size,
                notes,
            )
        found = {
            "icl_demos": icl_demos,
            "icl_all": icl_all,
            "calib_plus": calib.score(test_c),
            "comp_rw": rw.score(test_c),
            "comp_rw_code": code_rw.fit(train_k).score(test_c),
            "oracle_best": float(component_acc[best]),
            "oracle_worst": float(component_acc[worst]),
        }
        for method, accuracy in found.items():
            record = {**base, "k": k, "method": method, "accuracy": accuracy}
            if method.startswith("oracle"):
                record["component"] = str(chosen[best if method == "oracle_best" else worst])
            if method == "comp_rw":
                record["history"] = rw.history_.to_dict()
            records.append(record)
    return {
        "records": records,
        "notes": notes,
        "components": [str(c) for c in chosen],
        "component_accuracy": component_acc.tolist(),
        "weights": torch.stack(run_weights).tolist(),
    }


def _task_fingerprint(task: ClassificationTask) -> str:
    """What a study's runs depend on in a task: its texts, labels, templates and label words."""
    return data_fingerprint(
        {
            "texts": list(task.texts),
            "labels": list(task.labels),
            "templates": [str(template) for template in task.templates],
            "label_words": list(task.label_words),
        }
    )


def _icl_all(
    model: ModelHandle,
    task: ClassificationTask,
    pool: ClassificationTask,
    test: ClassificationTask,
    demo_idx: list[int],
    train_idx: list[int],
    k: int,
    n_demos: int,
    template: int,
    seed: int,
    batch_size: int,
    notes: list[str],
) -> float:
    """K-shot ICL accuracy: all K examples as demonstrations (NaN if the prompts do not fit)."""
    chosen = demo_idx + train_idx[: k - n_demos]
    random.Random(seed + k).shuffle(chosen)
    demos = [(pool.texts[i], pool.labels[i]) for i in chosen]
    prompts = [task.prompt(text, template=template, demos=demos) for text in test.texts]
    try:
        logits = label_logits(model, prompts, task.label_words, batch_size=batch_size)
    except InputError as error:
        if "context" not in str(error):
            raise
        notes.append(
            f"ICL K-shot skipped for K={k}, template {template}, demo set {seed % 1000}: {error}"
        )
        return float("nan")
    return float((logits.argmax(dim=-1) == torch.tensor(test.labels)).float().mean())
