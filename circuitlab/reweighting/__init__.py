"""Component reweighting: few-shot learned weights on per-component label-word contributions."""

from circuitlab.reweighting.calibration import CalibPlus
from circuitlab.reweighting.contributions import (
    LabelContributions,
    label_contributions,
    model_fingerprint,
)
from circuitlab.reweighting.estimator import COMPONENT_SETS, ComponentReweighting
from circuitlab.reweighting.icl import label_logits
from circuitlab.reweighting.study import (
    METHODS,
    ReweightingStudy,
    draw_examples,
    reweighting_study,
    split_pool_test,
)

__all__ = [
    "COMPONENT_SETS",
    "METHODS",
    "CalibPlus",
    "ComponentReweighting",
    "LabelContributions",
    "ReweightingStudy",
    "draw_examples",
    "label_contributions",
    "label_logits",
    "model_fingerprint",
    "reweighting_study",
    "split_pool_test",
]
