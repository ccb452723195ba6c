"""Evaluation of a model on the pruning study's task kinds, with shipped data."""

from circuitlab.evaluation.classification import classification_accuracy
from circuitlab.evaluation.data import FactualQuestion, load_factual_qa, load_heldout_prose
from circuitlab.evaluation.generation import greedy_continuations
from circuitlab.evaluation.language_model import PerplexityResult, perplexity
from circuitlab.evaluation.qa import QAResult, answer_matches, normalize_answer, qa_accuracy
from circuitlab.evaluation.suite import EVALUATION_TASKS, EvaluationSuite, retention

__all__ = [
    "EVALUATION_TASKS",
    "EvaluationSuite",
    "FactualQuestion",
    "PerplexityResult",
    "QAResult",
    "answer_matches",
    "classification_accuracy",
    "greedy_continuations",
    "load_factual_qa",
    "load_heldout_prose",
    "normalize_answer",
    "perplexity",
    "qa_accuracy",
    "retention",
]
