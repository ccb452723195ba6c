"""Decomposition of the residual stream, direct logit attribution and component accuracy."""

from circuitlab.decomposition.accuracy import ComponentAccuracy, component_accuracy
from circuitlab.decomposition.attribution import direct_logit_attribution
from circuitlab.decomposition.residual import ResidualDecomposition, decompose_residual
from circuitlab.decomposition.results import Attribution
from circuitlab.decomposition.targets import LogitDiff

__all__ = [
    "Attribution",
    "ComponentAccuracy",
    "LogitDiff",
    "ResidualDecomposition",
    "component_accuracy",
    "decompose_residual",
    "direct_logit_attribution",
]
