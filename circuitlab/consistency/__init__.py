"""Semantic consistency across instruction paraphrases (arXiv 2501.11041).

Example:
    >>> from circuitlab.consistency import load_paraphrase_task
    >>> ptask = load_paraphrase_task("sentiment")        # 200 inputs x 10 paraphrases
    >>> probe, evaluate = ptask.split_inputs(0.5, seed=0)
    >>> prompts = probe.locating().prompts()              # input-major, 100 x 6
"""

from circuitlab.consistency.answers import ParaphraseAnswers
from circuitlab.consistency.data import (
    PARAPHRASE_TASKS,
    ParaphraseTask,
    ParaphraseView,
    load_paraphrase_task,
    shipped_paraphrases,
)
from circuitlab.consistency.export import export_consistency_edit, plain_answers
from circuitlab.consistency.heads import (
    ConsistencyHeads,
    locate_consistency_heads,
    read_paraphrases,
)
from circuitlab.consistency.sweep import ConsistencySweep, consistency_sweep

__all__ = [
    "PARAPHRASE_TASKS",
    "ConsistencyHeads",
    "ConsistencySweep",
    "ParaphraseAnswers",
    "ParaphraseTask",
    "ParaphraseView",
    "consistency_sweep",
    "export_consistency_edit",
    "load_paraphrase_task",
    "locate_consistency_heads",
    "plain_answers",
    "read_paraphrases",
    "shipped_paraphrases",
]
