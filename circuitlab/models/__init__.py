"""Model registry, offline sources, and the verified on-disk cache."""

from circuitlab.models.cache import CACHE_ENV_VAR, cache_root
from circuitlab.models.registry import DEFAULT_MODEL, KNOWN_MODELS, ModelSpec, get_spec
from circuitlab.models.store import cached_model_dir, ensure_cached_model, is_cached

__all__ = [
    "CACHE_ENV_VAR",
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "ModelSpec",
    "cache_root",
    "cached_model_dir",
    "ensure_cached_model",
    "get_spec",
    "is_cached",
]
