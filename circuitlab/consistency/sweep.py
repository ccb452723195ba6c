"""Does bias injection make the model more consistent? The α × K sweep with its controls.

`consistency_sweep` measures, on held-out inputs and held-out paraphrases, the consistency
rate and accuracy (mean ± std across paraphrases) of:

- the base model (``method="base"``, α = 0);
- the located heads: the top K heads, each biased by α times its direction (``"located"``);
- random heads: K heads drawn at random (per seed), with their own directions
  (``"random_heads"``);
- random directions: the top K heads, each biased along a random direction of the same norm
  as its own (per seed; ``"random_direction"``).

Each row is one setting; `ConsistencySweep.best` picks the setting with the highest
consistency rate among the located ones (ties: higher accuracy, then smaller K and α).
With ``checkpoint=PATH`` every setting is stored the moment it is measured (a
`circuitlab.checkpoints.CheckpointStore` scoped to the model, the task, the paraphrases and
the heads), so a killed sweep rerun with the same path measures only what is missing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from matplotlib.figure import Figure

from circuitlab.checkpoints import CheckpointStore
from circuitlab.checks import check_integer, check_number, checked_arguments
from circuitlab.components import Head
from circuitlab.consistency.heads import ConsistencyHeads, read_paraphrases
from circuitlab.errors import InputError
from circuitlab.fingerprint import data_fingerprint, model_fingerprint
from circuitlab.model import ModelHandle
from circuitlab.progress import progress_bar
from circuitlab.results import Result

__all__ = ["ConsistencySweep", "consistency_sweep", "random_direction_heads"]

METHODS = ("base", "located", "random_heads", "random_direction")


def random_direction_heads(heads: ConsistencyHeads, seed: int) -> ConsistencyHeads:
    """``heads`` with every direction replaced by a seeded random one of the same norm.

    Args:
        heads: The located heads whose directions are replaced.
        seed: Seed of the random directions.
    """
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(heads.directions.shape, generator=generator)
    norms = heads.directions.norm(dim=-1, keepdim=True)
    scaled = noise / noise.norm(dim=-1, keepdim=True) * norms
    return _replace_directions(heads, scaled, f"random (seed {seed})")


def _replace_directions(heads: ConsistencyHeads, directions: torch.Tensor, method: str) -> Any:
    import dataclasses

    return dataclasses.replace(heads, directions=directions, method=method)


@dataclass(frozen=True)
class ConsistencySweep(Result):
    """Consistency and accuracy of edited models over α, K and the controls.

    Attributes:
        rows: one mapping per setting: method, seed, k, alpha, consistency_rate,
            consistency_mean, consistency_std, accuracy_mean, accuracy_std, heads.
        task: the evaluation task's name.
        model: the model's name.
        settings: inputs, paraphrases, seeds and the locating task.
    """

    rows: tuple[Mapping[str, Any], ...]
    task: str = ""
    model: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", tuple(dict(row) for row in self.rows))

    def __repr__(self) -> str:
        base = self.base()
        best = self.best()
        return (
            f"ConsistencySweep({self.model!r} on {self.task!r}: {len(self.rows)} settings; base "
            f"consistency {base['consistency_rate']:.3f}, best K={best['k']} α={best['alpha']:g} "
            f"{best['consistency_rate']:.3f})"
        )

    def to_frame(self) -> pd.DataFrame:
        """The rows as a table."""
        frame = pd.DataFrame(list(self.rows))
        return frame.drop(columns=["heads"], errors="ignore")

    def base(self) -> Mapping[str, Any]:
        """The unedited model's row."""
        return next(row for row in self.rows if row["method"] == "base")

    def best(self) -> Mapping[str, Any]:
        """The located setting with the highest consistency (then accuracy, then small K, α)."""
        located = [row for row in self.rows if row["method"] == "located"]
        if not located:
            raise InputError("This sweep has no located settings.")
        return max(
            located,
            key=lambda r: (r["consistency_rate"], r["accuracy_mean"], -r["k"], -r["alpha"]),
        )

    def table(self, metric: str = "consistency_rate") -> pd.DataFrame:
        """K × α table of ``metric`` for the located heads, controls averaged over seeds.

        Args:
            metric: The measurement shown in the cells (``consistency_rate``, ``accuracy``, ...).
        """
        frame = self.to_frame()
        if metric not in frame.columns:
            raise InputError(f"Unknown metric {metric!r}; choose from {list(frame.columns)}.")
        edited = frame[frame["method"] != "base"]
        return edited.pivot_table(index=["method", "k"], columns="alpha", values=metric)

    def plot(self, **options: Any) -> Figure:
        """Consistency (left) and accuracy (right) against α, one line per K and control.

        Args:
            options: Keyword options of the figure (e.g. ``title``).
        """
        frame = self.to_frame()
        base = self.base()
        figure = Figure(figsize=options.get("figsize", (10, 3.6)))
        panels = figure.subplots(1, 2, sharex=True)
        for axes, metric, label in (
            (panels[0], "consistency_rate", "consistency rate"),
            (panels[1], "accuracy_mean", "accuracy (mean over paraphrases)"),
        ):
            axes.axhline(base[metric], color="black", linestyle=":", label="base model")
            for (method, k), group in frame[frame["method"] != "base"].groupby(["method", "k"]):
                mean = group.groupby("alpha")[metric].mean()
                style = (
                    "-o" if method == "located" else ("--x" if method == "random_heads" else ":^")
                )
                axes.plot(mean.index, mean.values, style, markersize=4, label=f"{method} K={k}")
            axes.set_xlabel("α (bias strength)")
            axes.set_ylabel(label)
        panels[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
        figure.suptitle(
            f"bias injection on {self.model}: {self.task} (held-out inputs and paraphrases)",
            fontsize=10,
        )
        figure.tight_layout()
        return figure


@checked_arguments
def consistency_sweep(
    model: ModelHandle,
    task: Any,
    heads: ConsistencyHeads,
    *,
    alphas: Sequence[float] = (1, 3, 5, 7, 9),
    ks: Sequence[int] = (5, 15, 25, 35),
    control_seeds: Sequence[int] = (0, 1, 2),
    direction_seeds: Sequence[int] | None = None,
    templates: Sequence[int] | None = None,
    batch_size: int = 8,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
) -> ConsistencySweep:
    """Measure the base model and every (K, α) edit with its controls (module docstring).

    Args:
        model: the model the heads were located on.
        task: the evaluation `ParaphraseTask` (held-out inputs; another task for transfer).
        heads: the located heads and their directions.
        alphas: bias strengths α.
        ks: numbers of heads K.
        control_seeds: seeds of the random-head control, and of the random-direction control
            unless ``direction_seeds`` is given (empty: no controls).
        direction_seeds: seeds of the random-direction control (default: ``control_seeds``).
        templates: the paraphrases to evaluate on (default: the task's held-out ones).
        batch_size: prompts per forward pass.
        checkpoint: a JSON file that keeps every measured setting; rerunning with the same
            file resumes (a file from another model, task or heads is refused).
        progress: progress bar over the settings (default: shown after 2 s).
    """
    alphas = [check_number("alpha", a, lambda v: True, "a finite number, e.g. 3") for a in alphas]
    ks = [check_integer("K", k, minimum=1) for k in ks]
    too_many = [k for k in ks if k > heads.n_heads]
    if too_many:
        raise InputError(
            f"K = {too_many[0]} is more than the model's {heads.n_heads} heads; choose K <= "
            f"{heads.n_heads}."
        )
    if not alphas or not ks:
        raise InputError("Give at least one α and one K.")
    chosen = list(task.heldout if templates is None else templates)
    if len(chosen) < 2:
        raise InputError("Consistency is measured over at least two paraphrases; give more.")

    control_seeds = [check_integer("control seed", seed) for seed in control_seeds]
    direction_seeds = (
        control_seeds
        if direction_seeds is None
        else [check_integer("direction seed", seed) for seed in direction_seeds]
    )
    store = CheckpointStore(
        checkpoint, kind="consistency-sweep", scope=_scope(model, task, chosen, heads)
    )

    def measure(key: dict[str, Any], edits: list[Any]) -> dict[str, float]:
        def step() -> dict[str, float]:
            with model.intervene(*edits):
                answers, _ = read_paraphrases(
                    model, task, chosen, batch_size=batch_size, progress=False
                )
            return answers.summary()

        return dict(store.compute(key, step))

    settings: list[tuple[str, int | None, int, float, ConsistencyHeads, list[Head] | None]] = []
    for k in ks:
        for alpha in alphas:
            settings.append(("located", None, k, alpha, heads, None))
            for seed in control_seeds:
                generator = torch.Generator().manual_seed(seed)
                picked = torch.randperm(heads.n_heads, generator=generator)[:k].tolist()
                n_heads = heads.accuracy.shape[1]
                random_heads = [Head(i // n_heads, i % n_heads) for i in picked]
                settings.append(("random_heads", seed, k, alpha, heads, random_heads))
            for seed in direction_seeds:
                settings.append(
                    ("random_direction", seed, k, alpha, random_direction_heads(heads, seed), None)
                )
    base_key = {"method": "base", "seed": None, "k": 0, "alpha": 0.0}
    rows = [{**base_key, "heads": [], **measure(base_key, [])}]
    for method, seed, k, alpha, source, explicit in progress_bar(
        settings, progress=progress, desc="settings"
    ):
        edits = source.interventions(model, k, alpha, heads=explicit)
        key = {"method": method, "seed": seed, "k": k, "alpha": alpha}
        rows.append({**key, "heads": [str(edit.head) for edit in edits], **measure(key, edits)})
    return ConsistencySweep(
        rows=tuple(rows),
        task=task.task.name,
        model=model.name,
        settings={
            "templates": chosen,
            "inputs": len(task.task),
            "alphas": alphas,
            "ks": ks,
            "control_seeds": list(control_seeds),
            "direction_seeds": list(direction_seeds),
            "located_on": heads.task,
        },
    )


def _scope(
    model: ModelHandle, task: Any, templates: Sequence[int], heads: ConsistencyHeads
) -> dict[str, Any]:
    """What every measured setting depends on: the weights, the prompts, the heads."""
    inner = task.task
    digest = hashlib.sha256()
    for tensor in (heads.accuracy, heads.directions):
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return {
        "model": model.name,
        "model_fingerprint": model_fingerprint(model),
        "task": inner.name,
        "data_fingerprint": data_fingerprint(
            {"prompts": task.prompts(templates=list(templates)), "labels": list(inner.labels)}
        ),
        "heads_fingerprint": digest.hexdigest()[:16],
    }
