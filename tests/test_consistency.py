"""Semantic consistency: answers and metrics, head probes, directions as edits, the sweep and
the export (tiny models; the embedded-model integration is marked real_model)."""

from __future__ import annotations

import math

import pytest
import torch

from circuitlab.consistency.answers import ParaphraseAnswers, majority_agreement, pair_agreement
from circuitlab.errors import InputError


def _answers(answers: list[list[int]], labels: list[int], classes: int = 2) -> ParaphraseAnswers:
    table = torch.tensor(answers)
    logits = torch.nn.functional.one_hot(table, classes).float() * 3.0
    return ParaphraseAnswers(
        logits=logits,
        labels=torch.tensor(labels),
        paraphrases=tuple(range(table.shape[1])),
        label_words=tuple(f" w{i}" for i in range(classes)),
        task="toy",
    )


def test_consistency_rate_counts_pairs_answered_alike() -> None:
    # input 0: all three agree (3 consistent pairs); input 1: one odd answer (1 of 3 pairs)
    result = _answers([[1, 1, 1], [0, 1, 0]], labels=[1, 0])
    assert result.consistency_rate() == pytest.approx(4 / 6)
    assert torch.equal(pair_agreement(result.answers), torch.tensor(
        [[1.0, 0.5, 1.0], [0.5, 1.0, 0.5], [1.0, 0.5, 1.0]]
    ))  # fmt: skip
    table = result.per_paraphrase()
    assert table["accuracy"].tolist() == [1.0, 0.5, 1.0]
    assert table["consistency"].tolist() == [0.75, 0.5, 0.75]
    summary = result.summary()
    assert summary["accuracy_mean"] == pytest.approx(2.5 / 3)
    assert summary["accuracy_std"] == pytest.approx(
        math.sqrt(((1 - 2.5 / 3) ** 2 * 2 + (0.5 - 2.5 / 3) ** 2) / 3)
    )
    assert summary["consistency_rate"] == pytest.approx(4 / 6)


def test_majority_labels_and_ties() -> None:
    result = _answers([[1, 1, 0], [0, 1, 1]], labels=[1, 0])
    assert result.consistent().tolist() == [[True, True, False], [False, True, True]]
    logits = torch.tensor([[[2.0, 0.0], [0.0, 5.0]]])  # a tie: one vote each; class 1 surer
    assert majority_agreement(logits).tolist() == [[False, True]]


def test_one_paraphrase_has_no_pairs() -> None:
    with pytest.raises(InputError, match="at least two paraphrases"):
        _answers([[1], [0]], labels=[1, 0]).consistency_rate()


def test_answers_shape_is_checked() -> None:
    with pytest.raises(InputError, match=r"\[input, paraphrase, label\]"):
        ParaphraseAnswers(
            logits=torch.zeros(2, 3), labels=torch.tensor([0, 1]), paraphrases=(0, 1, 2),
            label_words=(" a", " b"),
        )  # fmt: skip
