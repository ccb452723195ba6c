"""The circuitlab exception family.

Every error a user can trigger is a `CircuitlabError`. Each message says what was
given, what was expected, and how to fix it. Subclasses also derive from the matching
built-in exception so that ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "CacheError",
    "CircuitlabError",
    "DeviceUnavailableError",
    "ExportCheckError",
    "IncompatibleVersionError",
    "InputError",
    "ModelNotFoundError",
    "NoContrastError",
    "NotAModelError",
    "NumericalError",
    "OfflineError",
    "OutputPathError",
    "UnsupportedArchitectureError",
]


class CircuitlabError(Exception):
    """Base class of every error circuitlab raises on purpose."""


class InputError(CircuitlabError, ValueError):
    """An argument has the wrong value (empty prompt list, several-token label word, ...)."""


class NoContrastError(InputError):
    """The data leave nothing to contrast: every answer right (or wrong), every paraphrase
    answered alike, ... (a method that compares two groups of samples needs both)."""


class ModelNotFoundError(CircuitlabError, LookupError):
    """A model name is neither a known name, a local folder, nor a hub name."""


class NotAModelError(CircuitlabError, ValueError):
    """A local folder was given that does not hold a Hugging Face model."""


class OfflineError(CircuitlabError, ConnectionError):
    """Something had to be downloaded but the network (or the hub) cannot be reached."""


class NumericalError(CircuitlabError, ArithmeticError):
    """The model produced NaN or infinite values (an intervention too large, fp16 overflow)."""


class OutputPathError(CircuitlabError, OSError):
    """An output file or folder cannot be written where it was asked for (the message says why)."""


class UnsupportedArchitectureError(CircuitlabError, ValueError):
    """The model's architecture is not one circuitlab knows how to decompose."""


class DeviceUnavailableError(CircuitlabError, RuntimeError):
    """The requested device (``cuda``, ``mps``) is not available on this machine."""


class CacheError(CircuitlabError, OSError):
    """The model cache cannot be written or an entry cannot be rebuilt."""


class IncompatibleVersionError(CircuitlabError, RuntimeError):
    """An installed dependency behaves in a way circuitlab does not handle (ignores a KV cache).

    The message names the installed versions; the fix is a version inside the supported range.
    """


class ExportCheckError(CircuitlabError):
    """An exported checkpoint does not reproduce the hooked model's logits within tolerance."""
