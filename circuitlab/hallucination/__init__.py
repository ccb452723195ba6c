"""Hallucination-prone layers (arXiv 2411.10069): truthful vs hallucinated answers, HSAV / HSS /
EAVSS per layer with a probe baseline, contrastive fine-tuning of the chosen layers, and its
export as a peft adapter and a merged checkpoint (guide: ``docs/guides/hallucination.md``).
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
from circuitlab.hallucination.data import (
    AnswerSet,
    label_model_answers,
    load_labelled_answers,
    load_questions,
)
from circuitlab.hallucination.evaluate import (
    ChoiceAccuracy,
    HallucinationRates,
    choice_accuracy,
    hallucination_rates,
)
from circuitlab.hallucination.export import export_contrastive
from circuitlab.hallucination.result import HallucinationScores
from circuitlab.hallucination.scores import (
    HALLUCINATION_METHODS,
    answer_starts,
    hallucination_scores,
)

__all__ = [
    "HALLUCINATION_METHODS",
    "AnswerSet",
    "ChoiceAccuracy",
    "ContrastPair",
    "ContrastiveRun",
    "HallucinationRates",
    "HallucinationScores",
    "answer_starts",
    "choice_accuracy",
    "continuation_logprobs",
    "contrastive_finetune",
    "contrastive_loss",
    "contrastive_pairs",
    "export_contrastive",
    "hallucination_rates",
    "hallucination_scores",
    "label_model_answers",
    "load_labelled_answers",
    "load_questions",
    "representation_loss",
]
