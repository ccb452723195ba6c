"""Argument checks shared by every public function: numbers, counts and prompt texts.

Each check returns the value in its canonical type, or raises `InputError` naming the
argument, what was given and what is valid. Public functions call these at their top, before
any computation, so a bad argument never surfaces as a traceback from deep inside torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

from circuitlab.errors import InputError

__all__ = ["check_integer", "check_number", "check_prompts", "check_text"]


def check_number(name: str, value: Any, ok: Callable[[float], bool], valid: str) -> float:
    """``value`` as a float; refuses a non-number, NaN/inf, or a value failing ``ok``.

    ``valid`` completes "it must be ..." in the error (e.g. ``"positive, e.g. 0.05"``).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r}.")
    if not math.isfinite(value) or not ok(float(value)):
        raise InputError(f"{name}={value!r} is invalid: it must be {valid}.")
    return float(value)


def check_integer(name: str, value: Any, *, minimum: int | None = None) -> int:
    """``value`` as an int (a whole number, not a bool or a float), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}).")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}.")
    return int(value)


def check_text(name: str, value: Any) -> str:
    """``value`` if it is a string that encodes as UTF-8 (no lone surrogates)."""
    if not isinstance(value, str):
        raise InputError(f"{name} must be a string, got {type(value).__name__} {value!r}.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InputError(
            f"{name} is not valid UTF-8 text: character {error.start} ({value[error.start]!r}) "
            f"is an undecodable byte (a file or a command-line argument in another encoding?). "
            f"Convert the text to UTF-8."
        ) from None
    return value


def check_prompts(prompts: Any, *, what: str = "prompt") -> list[str]:
    """One text or a sequence of texts as a non-empty list of valid UTF-8 strings."""
    if isinstance(prompts, str):
        texts = [prompts]
    elif isinstance(prompts, Sequence) or _is_iterable_collection(prompts):
        texts = list(prompts)
    else:
        raise InputError(
            f"Expected a {what} text or a list of texts, got {type(prompts).__name__} {prompts!r}."
        )
    if not texts:
        raise InputError(f"No {what}s were given (an empty list). Pass at least one text.")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(
                f"{what.capitalize()}s must be strings; {what} {index} is a "
                f"{type(text).__name__} ({text!r}). Pass a list of texts."
            )
        check_text(f"{what.capitalize()} {index}", text)
    return texts


def _is_iterable_collection(value: Any) -> bool:
    """A tuple-like container of texts (a pandas Series, a dataset column), not a mapping."""
    return (
        hasattr(value, "__iter__")
        and hasattr(value, "__len__")
        and not isinstance(value, (bytes, dict))
    )
