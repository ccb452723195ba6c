"""circuitlab: mechanistic interpretability on TransformerLens 4 bridges over real HF models.

Names are imported on first use: ``import circuitlab`` loads neither torch nor any analysis,
and ``circuitlab.load`` (say) imports what it needs when it is first touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, imported eagerly, for type checkers and the docs
    from circuitlab.ablation import AblationEffects, ablation_study
    from circuitlab.architecture import SUPPORTED_ARCHITECTURES, ArchitectureInfo, NormSite
    from circuitlab.components import (
        AttnBias,
        Component,
        Embedding,
        Head,
        Layer,
        Mlp,
        parse_component,
        parse_components,
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
    from circuitlab.errors import (
        CacheError,
        CircuitlabError,
        DeviceUnavailableError,
        IncompatibleVersionError,
        InputError,
        ModelNotFoundError,
        NotAModelError,
        OfflineError,
        UnsupportedArchitectureError,
    )
    from circuitlab.evaluation import (
        EvaluationSuite,
        FactualQuestion,
        classification_accuracy,
        load_factual_qa,
        load_heldout_prose,
        perplexity,
        qa_accuracy,
        retention,
    )
    from circuitlab.interventions import (
        Ablate,
        BakeError,
        Intervention,
        PruneHeads,
        PruneLayers,
        Scale,
        SteerHead,
        SteerResidual,
        check_export,
        export_hf,
        load_interventions,
        save_interventions,
    )
    from circuitlab.layers import (
        LayerScores,
        PruningStudy,
        avss_scores,
        ground_truth_scores,
        pruning_study,
        score_layers,
    )
    from circuitlab.loading import load
    from circuitlab.lora import LoraAdapter, add_lora
    from circuitlab.model import ModelHandle, TokenPrediction
    from circuitlab.models import DEFAULT_MODEL, KNOWN_MODELS
    from circuitlab.reweighting import (
        CalibPlus,
        ComponentReweighting,
        LabelContributions,
        ReweightingStudy,
        draw_examples,
        label_contributions,
        label_logits,
        model_fingerprint,
        reweighting_study,
        split_pool_test,
    )
    from circuitlab.sites import Site
    from circuitlab.tasks import ClassificationTask, load_task, save_task, task_from_dataset
    from circuitlab.tokenization import TokenBatch

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "AblationEffects": "circuitlab.ablation",
    "ablation_study": "circuitlab.ablation",
    "SUPPORTED_ARCHITECTURES": "circuitlab.architecture",
    "ArchitectureInfo": "circuitlab.architecture",
    "NormSite": "circuitlab.architecture",
    "AttnBias": "circuitlab.components",
    "Component": "circuitlab.components",
    "Embedding": "circuitlab.components",
    "Head": "circuitlab.components",
    "Layer": "circuitlab.components",
    "Mlp": "circuitlab.components",
    "parse_component": "circuitlab.components",
    "parse_components": "circuitlab.components",
    "Attribution": "circuitlab.decomposition",
    "ComponentAccuracy": "circuitlab.decomposition",
    "LogitDiff": "circuitlab.decomposition",
    "ResidualDecomposition": "circuitlab.decomposition",
    "component_accuracy": "circuitlab.decomposition",
    "decompose_residual": "circuitlab.decomposition",
    "direct_logit_attribution": "circuitlab.decomposition",
    "CacheError": "circuitlab.errors",
    "CircuitlabError": "circuitlab.errors",
    "DeviceUnavailableError": "circuitlab.errors",
    "IncompatibleVersionError": "circuitlab.errors",
    "InputError": "circuitlab.errors",
    "ModelNotFoundError": "circuitlab.errors",
    "NotAModelError": "circuitlab.errors",
    "OfflineError": "circuitlab.errors",
    "UnsupportedArchitectureError": "circuitlab.errors",
    "EvaluationSuite": "circuitlab.evaluation",
    "FactualQuestion": "circuitlab.evaluation",
    "classification_accuracy": "circuitlab.evaluation",
    "load_factual_qa": "circuitlab.evaluation",
    "load_heldout_prose": "circuitlab.evaluation",
    "perplexity": "circuitlab.evaluation",
    "qa_accuracy": "circuitlab.evaluation",
    "retention": "circuitlab.evaluation",
    "Ablate": "circuitlab.interventions",
    "BakeError": "circuitlab.interventions",
    "Intervention": "circuitlab.interventions",
    "PruneHeads": "circuitlab.interventions",
    "PruneLayers": "circuitlab.interventions",
    "Scale": "circuitlab.interventions",
    "SteerHead": "circuitlab.interventions",
    "SteerResidual": "circuitlab.interventions",
    "check_export": "circuitlab.interventions",
    "export_hf": "circuitlab.interventions",
    "load_interventions": "circuitlab.interventions",
    "save_interventions": "circuitlab.interventions",
    "LayerScores": "circuitlab.layers",
    "PruningStudy": "circuitlab.layers",
    "avss_scores": "circuitlab.layers",
    "ground_truth_scores": "circuitlab.layers",
    "pruning_study": "circuitlab.layers",
    "score_layers": "circuitlab.layers",
    "load": "circuitlab.loading",
    "LoraAdapter": "circuitlab.lora",
    "add_lora": "circuitlab.lora",
    "ModelHandle": "circuitlab.model",
    "TokenPrediction": "circuitlab.model",
    "DEFAULT_MODEL": "circuitlab.models",
    "KNOWN_MODELS": "circuitlab.models",
    "CalibPlus": "circuitlab.reweighting",
    "ComponentReweighting": "circuitlab.reweighting",
    "LabelContributions": "circuitlab.reweighting",
    "ReweightingStudy": "circuitlab.reweighting",
    "draw_examples": "circuitlab.reweighting",
    "label_contributions": "circuitlab.reweighting",
    "label_logits": "circuitlab.reweighting",
    "model_fingerprint": "circuitlab.reweighting",
    "reweighting_study": "circuitlab.reweighting",
    "split_pool_test": "circuitlab.reweighting",
    "Site": "circuitlab.sites",
    "ClassificationTask": "circuitlab.tasks",
    "load_task": "circuitlab.tasks",
    "save_task": "circuitlab.tasks",
    "task_from_dataset": "circuitlab.tasks",
    "TokenBatch": "circuitlab.tokenization",
}
"""Each public name and the module that defines it."""

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "SUPPORTED_ARCHITECTURES",
    "Ablate",
    "AblationEffects",
    "ArchitectureInfo",
    "AttnBias",
    "Attribution",
    "BakeError",
    "CacheError",
    "CalibPlus",
    "CircuitlabError",
    "ClassificationTask",
    "Component",
    "ComponentAccuracy",
    "ComponentReweighting",
    "DeviceUnavailableError",
    "Embedding",
    "EvaluationSuite",
    "FactualQuestion",
    "Head",
    "IncompatibleVersionError",
    "InputError",
    "Intervention",
    "LabelContributions",
    "Layer",
    "LayerScores",
    "LogitDiff",
    "LoraAdapter",
    "Mlp",
    "ModelHandle",
    "ModelNotFoundError",
    "NormSite",
    "NotAModelError",
    "OfflineError",
    "PruneHeads",
    "PruneLayers",
    "PruningStudy",
    "ResidualDecomposition",
    "ReweightingStudy",
    "Scale",
    "Site",
    "SteerHead",
    "SteerResidual",
    "TokenBatch",
    "TokenPrediction",
    "UnsupportedArchitectureError",
    "__version__",
    "ablation_study",
    "add_lora",
    "avss_scores",
    "check_export",
    "classification_accuracy",
    "component_accuracy",
    "decompose_residual",
    "direct_logit_attribution",
    "draw_examples",
    "export_hf",
    "ground_truth_scores",
    "label_contributions",
    "label_logits",
    "load",
    "load_factual_qa",
    "load_heldout_prose",
    "load_interventions",
    "load_task",
    "model_fingerprint",
    "parse_component",
    "parse_components",
    "perplexity",
    "pruning_study",
    "qa_accuracy",
    "retention",
    "reweighting_study",
    "save_interventions",
    "save_task",
    "score_layers",
    "split_pool_test",
    "task_from_dataset",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use (PEP 562), then keep it here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'circuitlab' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
