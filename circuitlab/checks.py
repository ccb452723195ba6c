"""Argument checks shared by every public function: numbers, counts and prompt texts.

Each check returns the value in its canonical type, or raises `InputError` naming the
argument, what was given and what is valid. Public functions call these at their top, before
any computation, so a bad argument never surfaces as a traceback from deep inside torch.

`checked_arguments` does the type half for a whole function at once: every parameter is
checked against its annotation before the call (``int``, ``float`` (finite), ``bool``,
``str``, classes, unions, ``Sequence[...]`` and aliases of these; annotations it cannot judge,
such as jaxtyping shapes, and ``Literal`` choices, which the function names itself, are left
alone), and an unknown keyword is named with
the parameters the function takes. Ranges (``batch_size >= 1``) stay with the function.
"""

from __future__ import annotations

import builtins
import collections.abc
import functools
import inspect
import math
import numbers
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from circuitlab.errors import InputError

__all__ = ["check_integer", "check_number", "check_prompts", "check_text", "checked_arguments"]

F = TypeVar("F", bound=Callable[..., Any])


def check_number(name: str, value: Any, ok: Callable[[float], bool], valid: str) -> float:
    """``value`` as a float; refuses a non-number, NaN/inf, or a value failing ``ok``.

    ``valid`` completes "it must be ..." in the error (e.g. ``"positive, e.g. 0.05"``).

    Args:
        name: The argument's name, used in the error.
        value: The value to check.
        ok: Returns whether a finite number is allowed.
        valid: What an allowed value is, in words, for the error.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number, got {value!r}.")
    if not math.isfinite(value) or not ok(float(value)):
        raise InputError(f"{name}={value!r} is invalid: it must be {valid}.")
    return float(value)


def check_integer(name: str, value: Any, *, minimum: int | None = None) -> int:
    """``value`` as an int (a whole number, not a bool or a float), at least ``minimum``.

    Args:
        name: The argument's name, used in the error.
        value: The value to check.
        minimum: Smallest allowed value (``None``: no bound).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be a whole number, got {value!r} ({type(value).__name__}).")
    if minimum is not None and value < minimum:
        raise InputError(f"{name} must be at least {minimum}, got {value}.")
    return int(value)


def check_text(name: str, value: Any) -> str:
    """``value`` if it is a string that encodes as UTF-8 (no lone surrogates).

    Args:
        name: The argument's name, used in the error.
        value: The value to check.
    """
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
    """One text or a sequence of texts as a non-empty list of valid UTF-8 strings.

    Args:
        prompts: One text or a sequence of texts.
        what: What a text is called in the error (``prompt``, ``text``, ...).
    """
    if isinstance(prompts, str):
        texts = [prompts]
    elif isinstance(prompts, Sequence) or _is_collection(prompts):
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


Predicate = tuple[str, Callable[[Any], bool]]
"""A check: its description (``"a whole number"``) and the test it stands for."""


def _is_collection(value: Any) -> bool:
    """A list-like container (a list, tuple, pandas Series, dataset column), not a mapping."""
    return (
        hasattr(value, "__iter__")
        and hasattr(value, "__len__")
        and not isinstance(value, (str, bytes, Mapping))
    )


def _plain(kind: type) -> Predicate | None:
    if kind is bool:
        return "True or False", lambda v: isinstance(v, bool) or type(v).__name__ == "bool_"
    if kind is int:
        return (
            "a whole number",
            lambda v: isinstance(v, numbers.Integral) and not isinstance(v, bool),
        )
    if kind is float:
        return (
            "a finite number",
            lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v),
        )
    if kind is str:
        return "a string", lambda v: isinstance(v, str)
    if kind is type(None):
        return "None", lambda v: v is None
    if "jaxtyping" in getattr(kind, "__module__", ""):
        return None
    return f"a {kind.__name__}", lambda v: isinstance(v, kind)


def _predicate(annotation: Any) -> Predicate | None:
    """A check for an evaluated annotation, or None when it cannot be judged."""
    if annotation is Any:
        return "anything", lambda v: True
    if annotation is None:
        return _plain(type(None))
    origin, arguments = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        parts = [_predicate(argument) for argument in arguments]
        if any(part is None for part in parts):
            return None
        checks = [part for part in parts if part is not None]
        return " or ".join(name for name, _ in checks), lambda v: any(t(v) for _, t in checks)
    if origin is typing.Literal:  # the function's own message names the choices better
        return None
    if origin in (list, tuple, Sequence, collections.abc.Iterable, collections.abc.Collection):
        item = _predicate(arguments[0]) if arguments else ("anything", lambda v: True)
        if item is None or (origin is tuple and len(arguments) == 2 and arguments[1] is not ...):
            return None if item is None else ("a tuple", lambda v: isinstance(v, tuple))
        accepts_text = arguments[:1] == (str,)
        return (
            f"a list of {item[0].removeprefix('a ')}s",
            lambda v: (
                (accepts_text and isinstance(v, str))
                or (
                    _is_collection(v) and (not isinstance(v, (list, tuple)) or all(map(item[1], v)))
                )
            ),
        )
    if origin in (dict, Mapping, collections.abc.Mapping):
        return "a mapping", lambda v: isinstance(v, Mapping)
    if origin is collections.abc.Callable or annotation is collections.abc.Callable:
        return "a function", callable
    if isinstance(annotation, type) and origin is None:
        return _plain(annotation)
    if isinstance(origin, type):  # os.PathLike[str], type[X], ...: the class is what counts
        return _plain(origin)
    return None


def _resolve(annotation: Any, namespace: dict[str, Any]) -> Predicate | None:
    if annotation is inspect.Parameter.empty:
        return None
    if isinstance(annotation, str):
        try:
            annotation = eval(annotation, namespace)  # circuitlab's own annotations
        except Exception:  # a name imported only for type checkers
            return None
    try:
        return _predicate(annotation)
    except TypeError:
        return None


def checked_arguments(function: F) -> F:
    """Check a function's annotated arguments before each call (see the module docstring).

    Args:
        function: The function whose annotated arguments are checked.
    """
    signature = inspect.signature(function)
    name = function.__qualname__
    checks: dict[str, Predicate] | None = None

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal checks
        if checks is None:  # resolved at the first call, once the module is fully imported
            namespace = {**vars(builtins), **function.__globals__}
            checks = {
                parameter: check
                for parameter, value in signature.parameters.items()
                if (check := _resolve(value.annotation, namespace)) is not None
            }
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            accepted = [p for p in signature.parameters if p not in ("self", "cls")]
            raise InputError(f"{name}(): {error}. It takes {', '.join(accepted)}.") from None
        for argument, value in bound.arguments.items():
            check = checks.get(argument)
            if check is not None and not check[1](value):
                kinds = ""
                if isinstance(value, (list, tuple)) and value:
                    names = dict.fromkeys(type(item).__name__ for item in value)
                    kinds = f" (its items are {', '.join(names)})"
                raise InputError(
                    f"{name}(): {argument} must be {check[0]}, got {type(value).__name__} "
                    f"{value!r:.80}{kinds}."
                )
        return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
