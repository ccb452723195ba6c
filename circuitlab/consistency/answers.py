"""The model's answers to every input under every paraphrase, and how consistent they are.

For a task with inputs ``n`` and instruction paraphrases ``p``, the model's answer to prompt
``(n, p)`` is the label word with the highest next-token logit. Two paraphrases are answered
consistently on an input when they get the same answer (arXiv 2501.11041). Metrics, as the
paper reports them:

- **consistency rate**: the share of (input, paraphrase pair) combinations answered the same,
  over all pairs ``p < q``;
- **accuracy**: the share of prompts answered with the gold label;
- both per paraphrase, and their mean ± std across paraphrases (a paraphrase's consistency is
  the mean over its pairs with the others).

A prompt is labelled *consistent* when its answer agrees with the input's majority answer over
the paraphrases read (ties broken by the summed label probabilities). This per-prompt label is
what the consistency probes learn (`circuitlab.consistency.heads`): it turns the paper's pair
labels into one label per head output.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from jaxtyping import Bool, Float, Int
from matplotlib.figure import Figure
from torch import Tensor

from circuitlab.errors import InputError
from circuitlab.results import Result

__all__ = ["ParaphraseAnswers", "majority_agreement", "pair_agreement"]


def pair_agreement(answers: Int[Tensor, "input paraphrase"]) -> Float[Tensor, "pp pp"]:
    """Share of inputs on which each pair of paraphrases gives the same answer (diagonal 1).

    Args:
        answers: The answer (label index) to each input under each paraphrase [input, paraphrase].
    """
    same = answers[:, :, None] == answers[:, None, :]
    return same.float().mean(dim=0)


def majority_agreement(
    logits: Float[Tensor, "input paraphrase label"],
) -> Bool[Tensor, "input paraphrase"]:
    """Whether each prompt's answer is its input's majority answer over the paraphrases.

    Ties between classes go to the class with the larger summed probability.

    Args:
        logits: Label logits [input, paraphrase, label].
    """
    answers = logits.argmax(dim=-1)
    n_labels = logits.shape[-1]
    votes = torch.nn.functional.one_hot(answers, n_labels).sum(dim=1).float()
    soft = logits.float().softmax(dim=-1).sum(dim=1)
    majority = (votes + 1e-3 * soft / logits.shape[1]).argmax(dim=-1)
    return answers == majority[:, None]


@dataclass(frozen=True)
class ParaphraseAnswers(Result):
    """Label-word logits for every (input, paraphrase) prompt of a task.

    Attributes:
        logits: next-token logits of the label words [input, paraphrase, label] (logits).
        labels: gold label index of each input [input].
        paraphrases: the template index of each paraphrase column.
        label_words: the label words, in label order.
        task: the task's name.
        model: the model's name.
        settings: how the answers were read (split, batch size, interventions, ...).
    """

    logits: Float[Tensor, "input paraphrase label"]
    labels: Int[Tensor, " input"]
    paraphrases: tuple[int, ...]
    label_words: tuple[str, ...]
    task: str = ""
    model: str = ""
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.logits.ndim != 3 or self.logits.shape[:2] != (
            len(self.labels),
            len(self.paraphrases),
        ):
            raise InputError(
                f"ParaphraseAnswers needs logits [input, paraphrase, label] matching "
                f"{len(self.labels)} labels and {len(self.paraphrases)} paraphrases, got "
                f"{tuple(self.logits.shape)}."
            )
        object.__setattr__(self, "paraphrases", tuple(int(p) for p in self.paraphrases))
        object.__setattr__(self, "label_words", tuple(self.label_words))

    def __len__(self) -> int:
        return int(self.logits.shape[0])

    def __repr__(self) -> str:
        summary = self.summary()
        return (
            f"ParaphraseAnswers({self.task!r}: {len(self)} inputs x {len(self.paraphrases)} "
            f"paraphrases; consistency {summary['consistency_rate']:.3f}, accuracy "
            f"{summary['accuracy_mean']:.3f} ± {summary['accuracy_std']:.3f})"
        )

    @property
    def answers(self) -> Int[Tensor, "input paraphrase"]:
        """The answer (label index) to every prompt."""
        return self.logits.argmax(dim=-1)

    @property
    def correct(self) -> Bool[Tensor, "input paraphrase"]:
        """Whether each prompt is answered with its gold label."""
        return self.answers == self.labels[:, None]

    def consistent(self) -> Bool[Tensor, "input paraphrase"]:
        """Whether each prompt agrees with its input's majority answer (the probes' label)."""
        return majority_agreement(self.logits)

    def pair_agreement(self) -> Float[Tensor, "pp pp"]:
        """Share of inputs each pair of paraphrases answers the same way."""
        return pair_agreement(self.answers)

    def consistency_rate(self) -> float:
        """Share of (input, paraphrase pair) combinations answered the same (pairs p < q)."""
        count = len(self.paraphrases)
        if count < 2:
            raise InputError("Consistency needs at least two paraphrases; got one.")
        agreement = self.pair_agreement()
        pairs = list(itertools.combinations(range(count), 2))
        return float(sum(float(agreement[p, q]) for p, q in pairs) / len(pairs))

    def per_paraphrase(self) -> pd.DataFrame:
        """Accuracy and consistency (mean agreement with every other paraphrase) per paraphrase."""
        agreement = self.pair_agreement()
        count = len(self.paraphrases)
        consistency = (agreement.sum(dim=1) - 1) / max(count - 1, 1)
        return pd.DataFrame(
            {
                "paraphrase": list(self.paraphrases),
                "accuracy": self.correct.float().mean(dim=0).tolist(),
                "consistency": consistency.tolist(),
            }
        )

    def summary(self) -> dict[str, float]:
        """Consistency rate, and accuracy and consistency as mean ± std across paraphrases."""
        table = self.per_paraphrase()
        deviation = (lambda column: float(column.std(ddof=0))) if len(table) > 1 else lambda _: 0.0
        return {
            "consistency_rate": self.consistency_rate(),
            "consistency_mean": float(table["consistency"].mean()),
            "consistency_std": deviation(table["consistency"]),
            "accuracy_mean": float(table["accuracy"].mean()),
            "accuracy_std": deviation(table["accuracy"]),
            "inputs": float(len(self)),
            "paraphrases": float(len(self.paraphrases)),
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per prompt: input, paraphrase, gold label, answer, correct, consistent."""
        answers, consistent = self.answers, self.consistent()
        rows = [
            {
                "input": n,
                "paraphrase": paraphrase,
                "label": int(self.labels[n]),
                "answer": int(answers[n, p]),
                "correct": bool(answers[n, p] == self.labels[n]),
                "consistent": bool(consistent[n, p]),
            }
            for n in range(len(self))
            for p, paraphrase in enumerate(self.paraphrases)
        ]
        return pd.DataFrame(rows)

    def plot(self, **options: Any) -> Figure:
        """Accuracy and consistency of each paraphrase (bars), with the means as lines.

        Args:
            options: Keyword options of the figure (e.g. ``title``).
        """
        table = self.per_paraphrase()
        figure = Figure(figsize=options.get("figsize", (max(5.0, 0.6 * len(table) + 2), 3.2)))
        axes = figure.add_subplot()
        positions = torch.arange(len(table)).float()
        width = 0.4
        axes.bar(positions - width / 2, table["accuracy"], width, label="accuracy")
        axes.bar(positions + width / 2, table["consistency"], width, label="consistency")
        for column, style in (("accuracy", "C0"), ("consistency", "C1")):
            axes.axhline(float(table[column].mean()), color=style, linestyle=":", linewidth=1)
        axes.set_xticks(positions.tolist(), [f"p{p}" for p in table["paraphrase"]])
        axes.set_ylim(0, 1.05)
        axes.set_xlabel("paraphrase (template index); dotted: means")
        axes.set_ylabel("share of prompts")
        axes.set_title(
            f"{self.model or 'model'} on {self.task or 'task'}: {len(self)} inputs, consistency "
            f"rate {self.consistency_rate():.3f}",
            fontsize=10,
        )
        axes.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
        return figure
