"""circuitlab: mechanistic interpretability on TransformerLens 4 bridges over real HF models.

The top level holds the core names: loading, the model handle, components and sites, the
collector, interventions and export, the main analyses and their result classes. Helpers of a
protocol live in their submodules (``circuitlab.reweighting.split_pool_test``,
``circuitlab.evaluation.EvaluationSuite``, ``circuitlab.errors.OfflineError``, ...), reachable
as attributes too (``circuitlab.reweighting``).

Names are imported on first use: ``import circuitlab`` loads neither torch nor any analysis,
and ``circuitlab.load`` (say) imports what it needs when it is first touched.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, imported eagerly, for type checkers and the docs
    from circuitlab.ablation import AblationEffects, ablation_study
    from circuitlab.collector import collect
    from circuitlab.components import (
        AttnBias,
        Component,
        Embedding,
        Head,
        Layer,
        Mlp,
        parse_component,
    )
    from circuitlab.consistency import (
        ConsistencyHeads,
        consistency_sweep,
        load_paraphrase_task,
        locate_consistency_heads,
    )
    from circuitlab.decomposition import (
        Attribution,
        ComponentAccuracy,
        LogitDiff,
        ResidualDecomposition,
        component_accuracy,
        decompose_residual,
        direct_logit_attribution,
    )
    from circuitlab.directions import direction
    from circuitlab.errors import CircuitlabError, InputError
    from circuitlab.evaluation import perplexity
    from circuitlab.ila import (
        ILARanking,
        RankingOverlap,
        ila_rank,
        load_instructions,
        ranking_overlap,
    )
    from circuitlab.interventions import (
        Ablate,
        Patch,
        PruneHeads,
        PruneLayers,
        Scale,
        SteerHead,
        SteerResidual,
        export_hf,
        load_interventions,
        save_interventions,
    )
    from circuitlab.layers import (
        LayerScores,
        PruningStudy,
        pruning_study,
        score_layers,
    )
    from circuitlab.lens import logit_lens
    from circuitlab.loading import load
    from circuitlab.model import ModelHandle
    from circuitlab.models import DEFAULT_MODEL, KNOWN_MODELS
    from circuitlab.patching import PromptPair, activation_patching
    from circuitlab.reweighting import (
        ComponentReweighting,
        LabelContributions,
        ReweightingStudy,
        label_contributions,
        reweighting_study,
    )
    from circuitlab.sites import Site
    from circuitlab.tasks import ClassificationTask, load_task

__version__ = "0.1.0"
"""The circuitlab version (PEP 440)."""

_EXPORTS: dict[str, str] = {
    "collect": "circuitlab.collector",
    "AblationEffects": "circuitlab.ablation",
    "ablation_study": "circuitlab.ablation",
    "AttnBias": "circuitlab.components",
    "Component": "circuitlab.components",
    "Embedding": "circuitlab.components",
    "Head": "circuitlab.components",
    "Layer": "circuitlab.components",
    "Mlp": "circuitlab.components",
    "parse_component": "circuitlab.components",
    "ConsistencyHeads": "circuitlab.consistency",
    "consistency_sweep": "circuitlab.consistency",
    "load_paraphrase_task": "circuitlab.consistency",
    "locate_consistency_heads": "circuitlab.consistency",
    "ILARanking": "circuitlab.ila",
    "RankingOverlap": "circuitlab.ila",
    "ila_rank": "circuitlab.ila",
    "load_instructions": "circuitlab.ila",
    "ranking_overlap": "circuitlab.ila",
    "direction": "circuitlab.directions",
    "Attribution": "circuitlab.decomposition",
    "ComponentAccuracy": "circuitlab.decomposition",
    "LogitDiff": "circuitlab.decomposition",
    "ResidualDecomposition": "circuitlab.decomposition",
    "component_accuracy": "circuitlab.decomposition",
    "decompose_residual": "circuitlab.decomposition",
    "direct_logit_attribution": "circuitlab.decomposition",
    "CircuitlabError": "circuitlab.errors",
    "InputError": "circuitlab.errors",
    "perplexity": "circuitlab.evaluation",
    "Ablate": "circuitlab.interventions",
    "Patch": "circuitlab.interventions",
    "logit_lens": "circuitlab.lens",
    "PromptPair": "circuitlab.patching",
    "activation_patching": "circuitlab.patching",
    "PruneHeads": "circuitlab.interventions",
    "PruneLayers": "circuitlab.interventions",
    "Scale": "circuitlab.interventions",
    "SteerHead": "circuitlab.interventions",
    "SteerResidual": "circuitlab.interventions",
    "export_hf": "circuitlab.interventions",
    "load_interventions": "circuitlab.interventions",
    "save_interventions": "circuitlab.interventions",
    "LayerScores": "circuitlab.layers",
    "PruningStudy": "circuitlab.layers",
    "pruning_study": "circuitlab.layers",
    "score_layers": "circuitlab.layers",
    "load": "circuitlab.loading",
    "ModelHandle": "circuitlab.model",
    "DEFAULT_MODEL": "circuitlab.models",
    "KNOWN_MODELS": "circuitlab.models",
    "ComponentReweighting": "circuitlab.reweighting",
    "LabelContributions": "circuitlab.reweighting",
    "ReweightingStudy": "circuitlab.reweighting",
    "label_contributions": "circuitlab.reweighting",
    "reweighting_study": "circuitlab.reweighting",
    "Site": "circuitlab.sites",
    "ClassificationTask": "circuitlab.tasks",
    "load_task": "circuitlab.tasks",
}
"""Each public name and the module that defines it."""

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "Ablate",
    "AblationEffects",
    "AttnBias",
    "Attribution",
    "CircuitlabError",
    "ClassificationTask",
    "Component",
    "ComponentAccuracy",
    "ComponentReweighting",
    "ConsistencyHeads",
    "Embedding",
    "Head",
    "ILARanking",
    "InputError",
    "LabelContributions",
    "Layer",
    "LayerScores",
    "LogitDiff",
    "Mlp",
    "ModelHandle",
    "Patch",
    "PromptPair",
    "PruneHeads",
    "PruneLayers",
    "PruningStudy",
    "RankingOverlap",
    "ResidualDecomposition",
    "ReweightingStudy",
    "Scale",
    "Site",
    "SteerHead",
    "SteerResidual",
    "__version__",
    "ablation_study",
    "activation_patching",
    "collect",
    "component_accuracy",
    "consistency_sweep",
    "decompose_residual",
    "direct_logit_attribution",
    "direction",
    "export_hf",
    "ila_rank",
    "label_contributions",
    "load",
    "load_instructions",
    "load_interventions",
    "load_paraphrase_task",
    "load_task",
    "locate_consistency_heads",
    "logit_lens",
    "parse_component",
    "perplexity",
    "pruning_study",
    "ranking_overlap",
    "reweighting_study",
    "save_interventions",
    "score_layers",
]


_MOVED: dict[str, str] = {
    "ArchitectureInfo": "circuitlab.architecture",
    "BakeError": "circuitlab.interventions",
    "CacheError": "circuitlab.errors",
    "CalibPlus": "circuitlab.reweighting",
    "DeviceUnavailableError": "circuitlab.errors",
    "EvaluationSuite": "circuitlab.evaluation",
    "FactualQuestion": "circuitlab.evaluation",
    "IncompatibleVersionError": "circuitlab.errors",
    "Intervention": "circuitlab.interventions",
    "LoraAdapter": "circuitlab.lora",
    "ModelNotFoundError": "circuitlab.errors",
    "NormSite": "circuitlab.architecture",
    "NotAModelError": "circuitlab.errors",
    "OfflineError": "circuitlab.errors",
    "SUPPORTED_ARCHITECTURES": "circuitlab.architecture",
    "TokenBatch": "circuitlab.tokenization",
    "TokenPrediction": "circuitlab.model",
    "UnsupportedArchitectureError": "circuitlab.errors",
    "add_lora": "circuitlab.lora",
    "avss_scores": "circuitlab.layers",
    "check_export": "circuitlab.interventions",
    "classification_accuracy": "circuitlab.evaluation",
    "draw_examples": "circuitlab.reweighting",
    "ground_truth_scores": "circuitlab.layers",
    "label_logits": "circuitlab.reweighting",
    "load_factual_qa": "circuitlab.evaluation",
    "load_heldout_prose": "circuitlab.evaluation",
    "model_fingerprint": "circuitlab.fingerprint",
    "parse_components": "circuitlab.components",
    "qa_accuracy": "circuitlab.evaluation",
    "retention": "circuitlab.evaluation",
    "save_task": "circuitlab.tasks",
    "split_pool_test": "circuitlab.reweighting",
    "task_from_dataset": "circuitlab.tasks",
}
"""Names the top level no longer holds, and the submodule that has them."""


def __getattr__(name: str) -> Any:
    """Import a public name (or a submodule) on first use (PEP 562), then keep it here."""
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name in _MOVED:
        raise AttributeError(
            f"circuitlab.{name} lives in its submodule: use {_MOVED[name]}.{name} "
            f"(from {_MOVED[name]} import {name})."
        )
    elif not name.startswith("_") and importlib.util.find_spec(f"circuitlab.{name}") is not None:
        value = importlib.import_module(f"circuitlab.{name}")
    else:
        raise AttributeError(f"module 'circuitlab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
