"""Locating the attention heads that decide whether paraphrases get the same answer.

`locate_consistency_heads` follows arXiv 2501.11041, with the choices the paper leaves open
made explicit:

1. **One streaming pass** (`circuitlab.collector.collect`) over every (input, locating
   paraphrase) prompt reads the label-word logits and every head's output at the last token:
   the head site ``z`` (the input of the output projection, [head, d_head] per layer; with
   grouped-query attention one row per *query* head).
2. **Labels.** A prompt is *consistent* when its answer agrees with its input's majority
   answer over the locating paraphrases (`circuitlab.consistency.answers.majority_agreement`).
3. **Probes.** The inputs are split (seeded) into a probe split and a locate split, so no
   input's prompts appear in both. One logistic-regression probe per head is fitted on the
   probe split, all heads in one batched solve (`circuitlab.probes.LinearProbes`), and each
   head is scored by its accuracy on the locate split. The top K heads are the consistency
   heads.
4. **Directions.** Per head, the paper's bias direction ``mean(z | consistent) − mean(z | all)``
   over every prompt read (`circuitlab.directions.direction`, ``"mean_difference"``), in
   ``z`` units; other methods (ITI's mass-mean shift, the probe's weights, PCA, random) are
   one argument away.
5. **Edit.** Head ``k``'s bias ``α · bias_k`` is added to its output; as a `SteerHead` it is
   the d_model vector ``W_O[k]ᵀ · α · bias_k`` added to the attention output, which export
   bakes into the output projection's bias.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import einops
import numpy as np
import pandas as pd
import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab import sites
from circuitlab.checks import check_integer, check_number, checked_arguments
from circuitlab.collector import collect
from circuitlab.components import Head
from circuitlab.consistency.answers import ParaphraseAnswers
from circuitlab.errors import InputError, NoContrastError
from circuitlab.interventions.spec import SteerHead
from circuitlab.model import ModelHandle
from circuitlab.readers import Keep, Logits
from circuitlab.results import Result

__all__ = ["ConsistencyHeads", "locate_consistency_heads", "read_paraphrases"]


@checked_arguments
def read_paraphrases(
    model: ModelHandle,
    task: Any,
    templates: Sequence[int],
    *,
    heads: bool = False,
    batch_size: int = 8,
    progress: bool | None = None,
) -> tuple[ParaphraseAnswers, Float[Tensor, "input paraphrase layer head d_head"] | None]:
    """Label-word logits of every (input, paraphrase) prompt, and optionally every head's
    last-token output, in one streaming pass.

    Args:
        model: the model handle (interventions in force apply).
        task: a `circuitlab.consistency.data.ParaphraseTask`.
        templates: the paraphrases (template indices) to read.
        heads: also keep every head's output ``z`` at the last token.
        batch_size: prompts per forward pass.
        progress: progress bar (default: shown once the call runs past 2 s).

    Returns:
        The answers, and the head outputs [input, paraphrase, layer, head, d_head] (float32,
        CPU) or None.
    """
    templates = [int(t) for t in templates]
    if not templates:
        raise InputError("No paraphrases to read: pass at least one template index.")
    inner = task.task
    prompts = task.prompts(templates=templates)
    readers: dict[str, Any] = {"logits": Logits(columns=model.token_ids(list(inner.label_words)))}
    if heads:
        readers.update({f"z{layer}": Keep(sites.z(layer)) for layer in range(model.n_layers)})
    out = collect(
        model, prompts, readers, batch_size=batch_size, progress=progress, desc="paraphrases"
    )
    shape = (len(inner), len(templates))
    logits = out["logits"].float().cpu().reshape(*shape, -1)
    answers = ParaphraseAnswers(
        logits=logits,
        labels=torch.as_tensor(inner.labels, dtype=torch.long),
        paraphrases=tuple(templates),
        label_words=tuple(inner.label_words),
        task=inner.name,
        model=model.name,
        settings={"batch_size": batch_size},
    )
    if not heads:
        return answers, None
    stacked = torch.stack([out[f"z{layer}"].float().cpu() for layer in range(model.n_layers)], 1)
    return answers, stacked.reshape(*shape, *stacked.shape[1:])


@dataclass(frozen=True)
class ConsistencyHeads(Result):
    """Per-head probe accuracies at predicting consistency, and each head's bias direction.

    Attributes:
        accuracy: locate-split accuracy of each head's probe [layer, head] (0..1).
        probe_accuracy: probe-split (training) accuracy [layer, head].
        directions: each head's bias direction in ``z`` units [layer, head, d_head].
        chance: locate-split accuracy of always predicting the majority label.
        task: the task's name.
        method: how the directions were computed.
        model: the model's name.
        settings: split sizes, seed, C, label counts.
    """

    accuracy: Float[Tensor, "layer head"]
    probe_accuracy: Float[Tensor, "layer head"]
    directions: Float[Tensor, "layer head d_head"]
    chance: float
    task: str = ""
    method: str = "mean_difference"
    model: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        best = self.top(3)
        return (
            f"ConsistencyHeads({self.model!r} on {self.task!r}: "
            f"{self.accuracy.numel()} heads probed, chance {self.chance:.3f}; best "
            + ", ".join(f"{head} {value:.3f}" for head, value in best)
            + ")"
        )

    @property
    def n_heads(self) -> int:
        return int(self.accuracy.numel())

    def ranking(self) -> list[tuple[Head, float]]:
        """Every head with its locate accuracy, best first (ties: lower layer, lower head)."""
        n_heads = self.accuracy.shape[1]
        flat = self.accuracy.flatten().tolist()
        order = sorted(range(len(flat)), key=lambda i: (-flat[i], i))
        return [(Head(i // n_heads, i % n_heads), flat[i]) for i in order]

    def top(self, k: int) -> list[tuple[Head, float]]:
        """The ``k`` heads whose probes predict consistency best on the locate split.

        Args:
            k: How many heads to return.
        """
        k = check_integer("k", k, minimum=1)
        if k > self.n_heads:
            raise InputError(
                f"k = {k} is more than the model's {self.n_heads} heads; choose k <= "
                f"{self.n_heads}."
            )
        return self.ranking()[:k]

    def interventions(
        self, model: ModelHandle, k: int, alpha: float, *, heads: Sequence[Head] | None = None
    ) -> list[SteerHead]:
        """`SteerHead` edits adding ``alpha`` times each chosen head's bias to its output.

        Args:
            model: the model the heads belong to (its output projections map the ``z``
                directions to d_model vectors).
            k: how many top heads (ignored when ``heads`` is given).
            alpha: the bias strength α (the paper sweeps 1..9).
            heads: explicit heads instead of the top ``k`` (e.g. random heads, a control).
        """
        from circuitlab.directions import steering_edits

        alpha = check_number("alpha", alpha, lambda v: True, "a finite number, e.g. 3")
        chosen = list(heads) if heads is not None else [head for head, _ in self.top(k)]
        layers, n_heads = self.accuracy.shape
        if model.n_layers != layers or model.n_heads != n_heads:
            raise InputError(
                f"These heads were located on a model with {layers} layers x {n_heads} heads; "
                f"{model.name} has {model.n_layers} x {model.n_heads}. Use the model they were "
                f"located on."
            )
        edits: list[SteerHead] = []
        for head in chosen:
            head.check(model.arch)
            site = sites.z(head.layer)
            edits += steering_edits(  # type: ignore[arg-type]
                model, site, self.directions[head.layer], alpha, heads=[head.head]
            )
        return edits

    def to_frame(self) -> pd.DataFrame:
        """One row per head: layer, head, locate accuracy, probe accuracy, direction norm."""
        layers, n_heads = self.accuracy.shape
        return pd.DataFrame(
            {
                "layer": [layer for layer in range(layers) for _ in range(n_heads)],
                "head": [head for _ in range(layers) for head in range(n_heads)],
                "accuracy": self.accuracy.flatten().tolist(),
                "probe_accuracy": self.probe_accuracy.flatten().tolist(),
                "direction_norm": self.directions.norm(dim=-1).flatten().tolist(),
            }
        )

    def plot(self, **options: Any) -> Any:
        """Layer x head heatmap of the locate accuracies, centred on chance.

        Args:
            options: Keyword options of the figure (e.g. ``title``).
        """
        from circuitlab.decomposition.plots import plot_head_heatmap

        n_heads = self.accuracy.shape[1]
        return plot_head_heatmap(
            np.asarray(self.accuracy, dtype=float),
            heads=list(range(n_heads)),
            title=options.get(
                "title",
                f"consistency probes per head ({self.model}, {self.task})\n"
                f"locate accuracy; chance {self.chance:.3f}",
            ),
            colorbar_label="probe accuracy (locate split)",
            center=self.chance,
        )


@checked_arguments
def locate_consistency_heads(
    model: ModelHandle,
    task: Any,
    *,
    probe_fraction: float = 0.5,
    C: float = 1.0,
    method: str = "mean_difference",
    seed: int = 0,
    batch_size: int = 8,
    progress: bool | None = None,
) -> ConsistencyHeads:
    """Probe every head for consistency on the task's locating paraphrases (module docstring).

    Args:
        model: the model handle.
        task: a `circuitlab.consistency.data.ParaphraseTask`; its locating paraphrases are
            read (at least two).
        probe_fraction: share of the inputs whose prompts train the probes; the rest rank them.
        C: inverse L2 strength of the probes (scikit-learn's convention).
        method: how each head's bias direction is computed (`circuitlab.directions`).
        seed: seed of the input split.
        batch_size: prompts per forward pass.
        progress: progress bar (default: shown once the call runs past 2 s).

    Returns:
        A `ConsistencyHeads`.
    """
    from circuitlab.directions import direction
    from circuitlab.probes import LinearProbes

    check_number("probe_fraction", probe_fraction, lambda v: 0 < v < 1, "between 0 and 1")
    templates = list(task.locate)
    if len(templates) < 2:
        raise InputError(
            f"Locating needs at least two paraphrases to compare answers; the task has "
            f"{len(templates)} locating paraphrase(s)."
        )
    answers, outputs = read_paraphrases(
        model, task, templates, heads=True, batch_size=batch_size, progress=progress
    )
    assert outputs is not None
    consistent = answers.consistent()  # [input, paraphrase]
    counts = (int(consistent.sum()), int((~consistent).sum()))
    if min(counts) < 2:
        raise NoContrastError(
            f"The model answers the paraphrases of {answers.task!r} "
            f"{'consistently' if counts[1] < 2 else 'inconsistently'} on almost every prompt "
            f"({counts[0]} consistent, {counts[1]} inconsistent): there is nothing to probe. "
            f"Use more inputs, or paraphrases that the model answers differently."
        )
    n_inputs = len(answers)
    order = torch.randperm(n_inputs, generator=torch.Generator().manual_seed(seed))
    n_probe = round(probe_fraction * n_inputs)
    if not 1 <= n_probe < n_inputs:
        raise InputError(f"{n_inputs} inputs cannot be split into probe and locate inputs.")
    probe_inputs, locate_inputs = order[:n_probe], order[n_probe:]
    features = einops.rearrange(outputs, "n p l h d -> (l h) n p d")
    labels = consistent.long()

    def rows(inputs: Tensor) -> tuple[Tensor, Tensor]:
        x = einops.rearrange(features[:, inputs], "u n p d -> u (n p) d")
        return x, einops.rearrange(labels[inputs], "n p -> (n p)")

    x_probe, y_probe = rows(probe_inputs)
    x_locate, y_locate = rows(locate_inputs)
    probes = LinearProbes(C=C).fit(x_probe, y_probe)
    layers, n_heads = outputs.shape[2], outputs.shape[3]
    accuracy = probes.score(x_locate, y_locate).reshape(layers, n_heads).float()
    probe_accuracy = probes.score(x_probe, y_probe).reshape(layers, n_heads).float()
    every = einops.rearrange(features, "u n p d -> u (n p) d")
    flat_labels = einops.rearrange(labels, "n p -> (n p)").bool()
    found = direction(every[:, flat_labels], every, method=method, reference_is="all", seed=seed)
    vectors = found.vectors
    majority = float(max(y_locate.float().mean(), 1 - y_locate.float().mean()))
    return ConsistencyHeads(
        accuracy=accuracy,
        probe_accuracy=probe_accuracy,
        directions=vectors.reshape(layers, n_heads, -1).float(),
        chance=majority,
        task=answers.task,
        method=method,
        model=model.name,
        settings={
            "probe_inputs": int(n_probe),
            "locate_inputs": int(n_inputs - n_probe),
            "paraphrases": templates,
            "consistent": counts[0],
            "inconsistent": counts[1],
            "C": C,
            "seed": seed,
        },
    )
