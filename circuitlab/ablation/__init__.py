"""Ablation studies: the effect of knocking out each head, MLP or layer on a metric."""

from circuitlab.ablation.metrics import METRICS
from circuitlab.ablation.results import AblationEffects
from circuitlab.ablation.study import COMPONENT_GROUPS, ablation_study, study_components

__all__ = ["COMPONENT_GROUPS", "METRICS", "AblationEffects", "ablation_study", "study_components"]
