"""Labelled classification tasks with label words and prompt templates.

Example:
    >>> from circuitlab.tasks import load_task
    >>> task = load_task("sentiment")
    >>> demos, test = task.split(8, seed=0)
    >>> prompts = test.prompts(template=0, k_shot=4, demo_pool=demos, seed=0)
"""

from circuitlab.tasks.io import BUILTIN_TASKS, load_task, save_task, task_from_dataset
from circuitlab.tasks.task import ClassificationTask

__all__ = ["BUILTIN_TASKS", "ClassificationTask", "load_task", "save_task", "task_from_dataset"]
