"""Activation patching, attribution patching and prompt pairs for circuit discovery."""

from circuitlab.patching.attribution import attribution_patching
from circuitlab.patching.metrics import PATCH_METRICS
from circuitlab.patching.pairs import PromptPair, load_pairs
from circuitlab.patching.results import AttributionPatching, PatchingMap
from circuitlab.patching.sweep import DIRECTIONS, activation_patching

__all__ = [
    "DIRECTIONS",
    "PATCH_METRICS",
    "AttributionPatching",
    "PatchingMap",
    "PromptPair",
    "activation_patching",
    "attribution_patching",
    "load_pairs",
]
