"""One training loop for everything circuitlab learns: parameters, batches, a loss, a stop rule."""

from circuitlab.training.batches import shuffled_batches
from circuitlab.training.loop import (
    Step,
    Stopping,
    TrainingHistory,
    check_learning_rate,
    check_number,
    train,
)
from circuitlab.training.objectives import accuracy, classification_objective

__all__ = [
    "Step",
    "Stopping",
    "TrainingHistory",
    "accuracy",
    "check_learning_rate",
    "check_number",
    "classification_objective",
    "shuffled_batches",
    "train",
]
