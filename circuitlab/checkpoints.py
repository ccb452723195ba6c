"""Keyed checkpoints: each finished step of a long computation, stored the moment it finishes.

A study that evaluates many settings (pruned layer sets, demonstration draws) hands each step
to a `CheckpointStore` under a key made of the step's parameters. The file also records the
scope it belongs to (the model's and the data's fingerprints, the settings shared by every
step); a file from another scope is refused rather than silently reused. The file is
rewritten atomically after every step, so a run killed at any moment (even ``kill -9``)
leaves either the previous or the new file, and a rerun with the same path resumes: finished
steps are read back, the rest computed.

Values are stored as JSON and handed back as read from JSON, whether they were just computed
or resumed, so a resumed run returns exactly what an uninterrupted one does.

Example:
    >>> store = CheckpointStore("evaluations.json", kind="pruning-study", scope={...})
    >>> metrics = store.compute({"removed_layers": [3, 7]}, lambda: suite.evaluate(model))
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from circuitlab.errors import InputError
from circuitlab.json_files import read_json, write_json_atomic

__all__ = ["CheckpointStore"]

_FORMAT = "circuitlab-checkpoint"
_VERSION = 1


def _plain(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples become lists, keys strings, ...)."""
    return json.loads(json.dumps(data))


def _key_text(key: Mapping[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"))


class CheckpointStore:
    """Step results under their keys, in one JSON file (or in memory when ``path`` is None).

    Args:
        path: the checkpoint file (created on the first step; an existing one is resumed).
        kind: what computation the file belongs to (``"pruning-study"``, ...).
        scope: what every step shares and a resumed file must match: fingerprints of the
            model and the data, shared settings.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None, *, kind: str, scope: Mapping[str, Any]
    ) -> None:
        self.path = Path(path) if path is not None else None
        self.kind = kind
        self.scope = _plain(dict(scope))
        self._entries: dict[str, dict[str, Any]] = {}
        if self.path is not None and self.path.exists():
            self._resume(self.path)

    def _resume(self, path: Path) -> None:
        data = read_json(path, f"{self.kind} checkpoint")
        entries = data.get("entries", {}) if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or data.get("format") != _FORMAT
            or not isinstance(data.get("scope", {}), dict)
            or not isinstance(entries, dict)
            or not all(isinstance(entry, dict) and "value" in entry for entry in entries.values())
        ):
            raise InputError(
                f"{path} is not a circuitlab checkpoint (or it is damaged); delete it to start "
                f"over, or pass another path."
            )
        if data.get("kind") != self.kind:
            raise InputError(
                f"Checkpoint {path} belongs to a {data.get('kind')!r} run, not {self.kind!r}; "
                f"pass another checkpoint path."
            )
        if data.get("scope") != self.scope:
            differ = sorted(
                key
                for key in {*self.scope, *data.get("scope", {})}
                if self.scope.get(key) != data.get("scope", {}).get(key)
            )
            raise InputError(
                f"Checkpoint {path} was written for another model or suite/data set (it "
                f"differs in {', '.join(differ)}); delete it or pass another checkpoint path."
            )
        self._entries = dict(data.get("entries", {}))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Mapping[str, Any]) -> bool:
        return _key_text(key) in self._entries

    def get(self, key: Mapping[str, Any]) -> Any:
        """The stored value of ``key`` (KeyError if that step has not finished).

        Args:
            key: The step's identity (JSON-serialisable values).
        """
        return self._entries[_key_text(key)]["value"]

    def seconds(self, key: Mapping[str, Any]) -> float:
        """Wall time the step of ``key`` took when it was computed (0 if unknown).

        Args:
            key: The step's identity (JSON-serialisable values).
        """
        entry = self._entries.get(_key_text(key), {})
        return float(entry.get("seconds", 0.0))

    def put(self, key: Mapping[str, Any], value: Any, *, seconds: float = 0.0) -> Any:
        """Store a finished step (the file is rewritten atomically); returns the stored value.

        Args:
            key: The step's identity (JSON-serialisable values).
            value: The step's result.
            seconds: Wall time the step took.
        """
        entry = _plain({"key": dict(key), "value": value, "seconds": float(seconds)})
        self._entries[_key_text(key)] = entry
        self._write()
        return entry["value"]

    def compute(self, key: Mapping[str, Any], step: Callable[[], Any]) -> Any:
        """The value of ``key``: read back if that step finished before, else computed now.

        Args:
            key: The step's identity (JSON-serialisable values).
            step: Computes the value when it is not stored yet.
        """
        if key in self:
            return self.get(key)
        started = time.perf_counter()
        value = step()
        return self.put(key, value, seconds=time.perf_counter() - started)

    def _write(self) -> None:
        if self.path is None:
            return
        data = {
            "format": _FORMAT,
            "version": _VERSION,
            "kind": self.kind,
            "scope": self.scope,
            "entries": self._entries,
        }
        write_json_atomic(data, self.path)

    def __repr__(self) -> str:
        where = str(self.path) if self.path is not None else "in memory"
        return f"CheckpointStore({self.kind!r}, {len(self)} steps, {where})"
