"""Hallucination-prone layers (arXiv 2411.10069): truthful vs hallucinated answers, HSAV / HSS /
EAVSS per layer, and contrastive fine-tuning of the chosen layers.

Work in progress (issue 17): the data, the scores and the fine-tuning are in place; the
experiment, the CLI and the guide are not yet.
"""

from circuitlab.hallucination.contrastive import (
    ContrastiveRun,
    ContrastPair,
    continuation_logprobs,
    contrastive_finetune,
    contrastive_loss,
    contrastive_pairs,
    representation_loss,
)
from circuitlab.hallucination.data import AnswerSet, label_model_answers, load_labelled_answers
from circuitlab.hallucination.evaluate import HallucinationRates, hallucination_rates
from circuitlab.hallucination.scores import (
    HALLUCINATION_METHODS,
    answer_starts,
    hallucination_scores,
)

__all__ = [
    "HALLUCINATION_METHODS",
    "AnswerSet",
    "ContrastPair",
    "ContrastiveRun",
    "HallucinationRates",
    "answer_starts",
    "continuation_logprobs",
    "contrastive_finetune",
    "contrastive_loss",
    "contrastive_pairs",
    "hallucination_rates",
    "hallucination_scores",
    "label_model_answers",
    "load_labelled_answers",
    "representation_loss",
]
