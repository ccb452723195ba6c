"""Layer importance: AVSS and baseline scores, and the pruning study (arXiv 2411.02117)."""

from circuitlab.layers.pruning import (
    DEFAULT_PERCENTS,
    PruningStudy,
    ground_truth_scores,
    pruning_study,
)
from circuitlab.layers.scores import LayerScores, check_percent, layers_to_remove
from circuitlab.layers.scoring import (
    DEFAULT_EPSILON,
    DEFAULT_SPARSITY_FLOOR,
    SCORE_METHODS,
    SITES,
    avss_scores,
    drop_last_scores,
    random_scores,
    score_layers,
)

__all__ = [
    "DEFAULT_EPSILON",
    "DEFAULT_PERCENTS",
    "DEFAULT_SPARSITY_FLOOR",
    "SCORE_METHODS",
    "SITES",
    "LayerScores",
    "PruningStudy",
    "avss_scores",
    "check_percent",
    "drop_last_scores",
    "ground_truth_scores",
    "layers_to_remove",
    "pruning_study",
    "random_scores",
    "score_layers",
]
