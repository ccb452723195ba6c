"""circuitlab: mechanistic interpretability on TransformerLens 4 bridges over real HF models."""

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
    InputError,
    ModelNotFoundError,
    NotAModelError,
    OfflineError,
    UnsupportedArchitectureError,
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
from circuitlab.loading import load
from circuitlab.lora import LoraAdapter, add_lora
from circuitlab.model import ModelHandle, TokenPrediction
from circuitlab.models import DEFAULT_MODEL, KNOWN_MODELS
from circuitlab.reweighting import (
    CalibPlus,
    ComponentReweighting,
    LabelContributions,
    ReweightingStudy,
    label_contributions,
    label_logits,
    model_fingerprint,
    reweighting_study,
)
from circuitlab.tasks import ClassificationTask, load_task, save_task, task_from_dataset
from circuitlab.tokenization import TokenBatch

__version__ = "0.1.0"

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
    "Head",
    "InputError",
    "Intervention",
    "LabelContributions",
    "Layer",
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
    "ResidualDecomposition",
    "ReweightingStudy",
    "Scale",
    "SteerHead",
    "SteerResidual",
    "TokenBatch",
    "TokenPrediction",
    "UnsupportedArchitectureError",
    "__version__",
    "ablation_study",
    "add_lora",
    "check_export",
    "component_accuracy",
    "decompose_residual",
    "direct_logit_attribution",
    "export_hf",
    "label_contributions",
    "label_logits",
    "load",
    "load_interventions",
    "load_task",
    "model_fingerprint",
    "parse_component",
    "parse_components",
    "reweighting_study",
    "save_interventions",
    "save_task",
    "task_from_dataset",
]
