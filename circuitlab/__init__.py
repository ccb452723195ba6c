"""circuitlab: mechanistic interpretability on TransformerLens 4 bridges over real HF models."""

from circuitlab.architecture import SUPPORTED_ARCHITECTURES, ArchitectureInfo, NormSite
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
from circuitlab.loading import load
from circuitlab.model import ModelHandle, TokenPrediction
from circuitlab.models import DEFAULT_MODEL, KNOWN_MODELS
from circuitlab.tokenization import TokenBatch

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "SUPPORTED_ARCHITECTURES",
    "ArchitectureInfo",
    "CacheError",
    "CircuitlabError",
    "DeviceUnavailableError",
    "InputError",
    "ModelHandle",
    "ModelNotFoundError",
    "NormSite",
    "NotAModelError",
    "OfflineError",
    "TokenBatch",
    "TokenPrediction",
    "UnsupportedArchitectureError",
    "__version__",
    "load",
]
