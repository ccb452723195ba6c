"""Progress bars: one switch for every long call (terminal and notebook, through tqdm.auto).

Every long public call takes ``progress``:

- ``None`` (the default): a bar appears once the call has run for `AUTO_DELAY` seconds, so
  quick calls stay silent and long ones (a 270-head ablation study) show where they are;
  setting ``$CIRCUITLAB_PROGRESS=0`` turns this default off everywhere;
- ``True``: a bar from the start;
- ``False``: never a bar.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, TypeVar

from tqdm.auto import tqdm

__all__ = ["AUTO_DELAY", "PROGRESS_ENV_VAR", "progress_bar"]

T = TypeVar("T")

PROGRESS_ENV_VAR = "CIRCUITLAB_PROGRESS"
AUTO_DELAY = 2.0
"""Seconds a call runs before its default (``progress=None``) bar appears."""


def _default_on() -> bool:
    return os.environ.get(PROGRESS_ENV_VAR, "").strip().lower() not in ("0", "false", "no", "off")


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    progress: bool | None,
    desc: str,
    unit: str = "it",
    total: int | None = None,
) -> Any:
    """A tqdm bar over ``iterable`` following ``progress`` (see the module docstring).

    Args:
        iterable: what to iterate over (``None``: a bar updated by hand).
        progress: ``None``: a bar after `AUTO_DELAY` seconds (unless turned off by
            ``$CIRCUITLAB_PROGRESS``); ``True``: from the start; ``False``: never.
        desc: the bar's label.
        unit: the name of one step (``"it"``, ``"batch"``, ...).
        total: the number of steps, when ``iterable`` has no length.
    """
    if progress is None:
        enabled, delay = _default_on(), AUTO_DELAY
    else:
        enabled, delay = bool(progress), 0.0
    return tqdm(iterable, desc=desc, unit=unit, total=total, disable=not enabled, delay=delay)
