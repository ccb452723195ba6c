"""Interventions: ablate, scale, steer and prune components, by hooks or baked into weights."""

from circuitlab.interventions.apply import active_edits, intervene
from circuitlab.interventions.bake import BakeError
from circuitlab.interventions.export import export_hf
from circuitlab.interventions.spec import (
    Ablate,
    Intervention,
    PositionFilter,
    PruneHeads,
    PruneLayers,
    Scale,
    SteerHead,
    SteerResidual,
)

__all__ = [
    "Ablate",
    "BakeError",
    "Intervention",
    "PositionFilter",
    "PruneHeads",
    "PruneLayers",
    "Scale",
    "SteerHead",
    "SteerResidual",
    "active_edits",
    "export_hf",
    "intervene",
]
