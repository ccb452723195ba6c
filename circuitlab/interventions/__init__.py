"""Interventions: ablate, scale, steer and prune components, by hooks or baked into weights."""

from circuitlab.interventions.apply import intervene
from circuitlab.interventions.bake import BakeError
from circuitlab.interventions.export import check_export, export_hf
from circuitlab.interventions.serialize import (
    InterventionSpec,
    from_spec,
    load_interventions,
    save_interventions,
    to_spec,
)
from circuitlab.interventions.spec import (
    Ablate,
    Intervention,
    Patch,
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
    "InterventionSpec",
    "Patch",
    "PositionFilter",
    "PruneHeads",
    "PruneLayers",
    "Scale",
    "SteerHead",
    "SteerResidual",
    "check_export",
    "export_hf",
    "from_spec",
    "intervene",
    "load_interventions",
    "save_interventions",
    "to_spec",
]
