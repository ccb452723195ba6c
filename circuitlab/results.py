"""The result protocol: every result object saves, loads, tabulates, plots and shows itself alike.

A result is a frozen dataclass deriving from `Result`. It gets:

- ``save(path)`` / ``load(path)`` through this one module. A ``.json`` path gives a readable
  JSON file; any other path one safetensors file whose tensors are safetensors tensors and
  whose other fields are JSON in the file's metadata (a result without tensors is JSON
  either way). Both carry the same header: the result's
  kind, the model's name and fingerprint, the seed (where the result knows them), and the
  versions of circuitlab, torch, transformers, transformer-lens and peft that made it.
  ``load`` reads either container, refuses another kind with a clear error, and reads the
  files earlier versions wrote.
- ``to_frame()``: a pandas DataFrame; ``plot()``: a matplotlib Figure (each class defines
  both);
- a short ``repr`` (each class) and a notebook view (``_repr_html_``: the repr and the first
  rows of the frame).

Example:
    >>> result = circuitlab.direct_logit_attribution(model, "The capital of France is", " Paris")
    >>> result.save("paris.safetensors")
    >>> circuitlab.Attribution.load("paris.safetensors").to_frame().head()
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor

from circuitlab.checks import checked_arguments
from circuitlab.components import Component, parse_component
from circuitlab.errors import InputError
from circuitlab.files import output_file
from circuitlab.versions import installed_versions

__all__ = [
    "RESULT_FORMAT",
    "Result",
    "read_header",
    "read_result_file",
    "result_document",
    "write_result_file",
]

RESULT_FORMAT = "circuitlab-result"
_VERSION = 1
_KINDS: dict[str, type[Result]] = {}

ResultT = TypeVar("ResultT", bound="Result")


def _check_method_arguments(cls: type) -> None:
    """Wrap the public methods ``cls`` defines (plain and class methods) in argument checks."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_"):
            continue
        if isinstance(member, classmethod):
            setattr(cls, name, classmethod(checked_arguments(member.__func__)))
        elif inspect.isfunction(member):
            setattr(cls, name, checked_arguments(member))


class Result:
    """Base of every result class (a frozen dataclass); see the module docstring."""

    kind: ClassVar[str]
    """The name files record for this class (the class name)."""

    def __init_subclass__(cls, *, abstract: bool = False, **kwargs: Any) -> None:
        """Register a result class by name (``abstract=True``: a shared base, not a kind);
        its public methods check their arguments (`circuitlab.checks.checked_arguments`)."""
        super().__init_subclass__(**kwargs)
        cls.kind = cls.__name__
        if not abstract:
            _KINDS[cls.__name__] = cls
        _check_method_arguments(cls)

    # ------------------------------------------------------------ per class
    def to_frame(self) -> Any:  # pragma: no cover - every result class defines it
        """The result as a pandas DataFrame."""
        raise NotImplementedError(f"{type(self).__name__} defines no table.")

    def plot(self, **options: Any) -> Any:  # pragma: no cover - every result class defines it
        """The result as a matplotlib Figure.

        Args:
            **options: plot settings; each result class documents its own.
        """
        raise NotImplementedError(f"{type(self).__name__} defines no figure.")

    def header_facts(self) -> dict[str, Any]:
        """What the file header records about the result's origin (override to add)."""
        model = getattr(self, "model_name", None) or getattr(self, "model", None)
        settings = getattr(self, "settings", None)
        seed = settings.get("seed") if isinstance(settings, Mapping) else None
        return {
            "model": model if isinstance(model, str) else None,
            "model_fingerprint": getattr(self, "fingerprint", None),
            "seed": seed,
        }

    # ----------------------------------------------------------- protocol
    def _fields(self) -> dict[str, Any]:
        return {
            field.name: getattr(self, field.name)
            for field in dataclasses.fields(self)  # type: ignore[arg-type]
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the result atomically: ``.json`` as JSON, anything else as safetensors.

        Args:
            path: the file to write: ``.json`` for JSON, anything else for safetensors.
        """
        return write_result_file(path, self.kind, self._fields(), self.header_facts())

    def to_document(self) -> dict[str, Any]:
        """The result as JSON-ready data: what `save` writes to a ``.json`` file (header and
        fields, tensors inline); `load` reads such a document back from a file."""
        return result_document(self.kind, self._fields(), self.header_facts())

    @classmethod
    def load(cls: type[ResultT], path: str | os.PathLike[str]) -> ResultT:
        """Read a result that `save` wrote (either container); other kinds are refused.

        Args:
            path: a file `save` wrote (``.json`` or safetensors).
        """
        fields, legacy, tensors = read_result_file(path, cls.kind)
        if fields is None:  # written before the protocol
            return cls._from_legacy(legacy, tensors, Path(path))
        return cls._build(fields, str(path))

    @classmethod
    def from_document(cls: type[ResultT], document: Mapping[str, Any]) -> ResultT:
        """Inverse of `to_document` (e.g. a CLI ``--json`` file's content).

        Args:
            document: a document `to_document` made (header and fields).
        """
        return cls._build(_decoded_fields(document, {}, cls.kind, "the document"), "the document")

    @classmethod
    def _build(cls: type[ResultT], fields: dict[str, Any], where: str) -> ResultT:
        try:
            return cls(**fields)
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"{where} is not a readable {cls.kind} ({error!r}).") from error

    @classmethod
    def _from_legacy(
        cls: type[ResultT], data: Mapping[str, Any], tensors: Mapping[str, Tensor], path: Path
    ) -> ResultT:
        """Read a file written before the protocol (override where the old layout differs)."""
        raise InputError(f"{path} does not hold a circuitlab {cls.kind}.")

    # ---------------------------------------------------------- notebooks
    def _repr_html_(self) -> str:
        try:
            frame = self.to_frame()
        except (NotImplementedError, InputError):
            frame = None
        table = ""
        if frame is not None:
            more = f"<p>{len(frame)} rows; showing the first 20.</p>" if len(frame) > 20 else ""
            table = frame.head(20).to_html(index=False) + more
        return f"<p><code>{html.escape(repr(self))}</code></p>{table}"


_check_method_arguments(Result)


def write_result_file(
    path: str | os.PathLike[str],
    kind: str,
    fields: Mapping[str, Any],
    facts: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``fields`` under a header for ``kind``, atomically (the one writer of results).

    A ``.json`` path gives one JSON file (tensors inline); any other path a safetensors file
    with the tensors as tensors and the header and other fields as JSON metadata, except for
    results without tensors (layer scores, a pruning study), which are JSON either way.
    ``facts`` adds ``model``, ``model_fingerprint`` and ``seed`` to the header; `load` tells
    the containers apart by their content. Under a ``torch.distributed`` group only rank 0
    writes (`circuitlab.files.output_file`).

    Args:
        path: the file to write: ``.json`` for JSON, anything else for safetensors.
        kind: the result's kind (its class name), recorded in the header.
        fields: the result's fields by name (tensors, numbers, components, nested data).
        facts: header facts (``model``, ``model_fingerprint``, ``seed``); missing ones are ``None``.
    """
    target = Path(path)
    tensors: dict[str, Tensor] | None = None if target.suffix.lower() == ".json" else {}
    document = result_document(kind, fields, facts, tensors)
    with output_file(target) as tmp:
        if not tensors:  # JSON asked for, or nothing to store as tensors: one JSON file
            tmp.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")
        else:
            from safetensors.torch import save_file

            save_file(tensors, str(tmp), metadata={"circuitlab": json.dumps(document)})
    return target


def result_document(
    kind: str,
    fields: Mapping[str, Any],
    facts: Mapping[str, Any] | None = None,
    tensors: dict[str, Tensor] | None = None,
) -> dict[str, Any]:
    """The header and encoded ``fields`` of a result of ``kind`` (the one document builder).

    Tensors go into ``tensors`` by key when it is given, else inline as JSON lists.

    Args:
        kind: the result's kind (its class name), recorded in the header.
        fields: the result's fields by name (tensors, numbers, components, nested data).
        facts: header facts (``model``, ``model_fingerprint``, ``seed``); missing ones are ``None``.
        tensors: where to put the tensors by key (filled in place); ``None``: inline as JSON lists.
    """
    header = {
        "format": RESULT_FORMAT,
        "version": _VERSION,
        "kind": kind,
        "model": None,
        "model_fingerprint": None,
        "seed": None,
        **(facts or {}),
        "versions": installed_versions(),
    }
    encoded = {name: _encode(value, tensors) for name, value in fields.items()}
    return {"header": header, "fields": encoded}


def read_result_file(
    path: str | os.PathLike[str], kind: str
) -> tuple[dict[str, Any] | None, dict[str, Any], dict[str, Tensor]]:
    """Read a file `write_result_file` wrote for ``kind`` (the one reader of results).

    Args:
        path: the file to read (``.json`` or safetensors).
        kind: the kind expected; a file of another kind is refused.

    Returns:
        ``(fields, raw, tensors)``: the decoded fields, or ``None`` for a file written before
        results carried a header (then ``raw`` is its plain content and ``tensors`` its
        tensors by name, for the class's legacy reader).

    Raises:
        InputError: no file, an unreadable file, or a file of another kind.
    """
    document, tensors = _read(Path(path), kind)
    if "header" not in document:
        return None, document, tensors
    return _decoded_fields(document, tensors, kind, str(path)), document, tensors


def _decoded_fields(
    document: Mapping[str, Any], tensors: Mapping[str, Tensor], kind: str, where: str
) -> dict[str, Any]:
    """The fields of a result document of ``kind``; a clear error for anything else."""
    header = document.get("header") if isinstance(document, Mapping) else None
    found = header.get("kind") if isinstance(header, Mapping) else None
    if found != kind:
        raise InputError(
            f"{where} does not hold a circuitlab {kind}: it holds "
            f"{'a ' + str(found) + f'; load it with {found}.load' if found else 'no result'}."
        )
    try:
        return {name: _decode(value, tensors) for name, value in document["fields"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise InputError(f"{where} is not a readable {kind} ({error!r}).") from error


def read_header(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header of a saved result (kind, model, fingerprint, seed, versions).

    Args:
        path: a saved result (``.json`` or safetensors).
    """
    document, _ = _read(Path(path), "result", with_tensors=False)
    if "header" not in document:
        raise InputError(f"{path} was written before results carried a header.")
    return dict(document["header"])


# ------------------------------------------------------------------- encoding
def _encode(value: Any, tensors: dict[str, Tensor] | None) -> Any:
    """Plain JSON data for ``value``; tensors go to ``tensors`` (or inline when it is None)."""
    if isinstance(value, Tensor):
        # empty tensors go inline: safetensors before 0.4.4 cannot read a zero-byte tensor back
        if tensors is None or value.numel() == 0:
            return {
                "__tensor__": None,
                "dtype": str(value.dtype).removeprefix("torch."),
                "shape": list(value.shape),
                "data": value.detach().cpu().reshape(-1).tolist(),
            }
        key = f"tensor{len(tensors)}"
        tensors[key] = value.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(value, Component):
        return {"__component__": str(value)}
    if isinstance(value, Result):
        return {
            "__result__": value.kind,
            "fields": {
                field.name: _encode(getattr(value, field.name), tensors)
                for field in dataclasses.fields(value)  # type: ignore[arg-type]
            },
        }
    if isinstance(value, tuple):
        return {"__tuple__": [_encode(item, tensors) for item in value]}
    if isinstance(value, list):
        return [_encode(item, tensors) for item in value]
    if isinstance(value, Mapping):
        return {str(key): _encode(item, tensors) for key, item in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"__float__": str(value)}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if hasattr(value, "item"):  # numpy scalars
        return _encode(value.item(), tensors)
    raise TypeError(f"cannot store a {type(value).__name__} in a result file")


def _decode(value: Any, tensors: Mapping[str, Tensor]) -> Any:
    if isinstance(value, list):
        return [_decode(item, tensors) for item in value]
    if not isinstance(value, dict):
        return value
    if "__tensor__" in value:
        key = value["__tensor__"]
        if key is not None:
            return tensors[key]
        dtype = getattr(torch, value["dtype"])
        return torch.tensor(value["data"], dtype=dtype).reshape(value["shape"])
    if "__component__" in value:
        return parse_component(value["__component__"])
    if "__tuple__" in value:
        return tuple(_decode(item, tensors) for item in value["__tuple__"])
    if "__float__" in value:
        return float(value["__float__"])
    if "__result__" in value:
        kind = _KINDS.get(value["__result__"])
        if kind is None:
            raise ValueError(f"unknown result kind {value['__result__']!r}")
        return kind(**{name: _decode(item, tensors) for name, item in value["fields"].items()})
    return {key: _decode(item, tensors) for key, item in value.items()}


def _read(
    path: Path, what: str, *, with_tensors: bool = True
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """The JSON document and (unless ``with_tensors`` is False) tensors of a result file."""
    if not path.is_file():
        raise InputError(f"No {what} file at {path}.")
    raw = path.read_bytes()
    if not _looks_like_safetensors(raw):
        try:
            return json.loads(raw.decode("utf-8")), {}
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise InputError(
                f"{path} is not a readable safetensors or JSON file ({error}); expected a {what}."
            ) from None
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        (size,) = struct.unpack("<Q", raw[:8])
        metadata = json.loads(raw[8 : 8 + size]).get("__metadata__") or {}
        tensors = load(raw) if with_tensors else {}
        document = json.loads(metadata.get("circuitlab", "{}"))
    except (ValueError, SafetensorError) as error:
        raise InputError(f"Cannot read a circuitlab {what} from {path}: {error}") from None
    return document, dict(tensors)


def _looks_like_safetensors(raw: bytes) -> bool:
    """A safetensors file opens with its JSON header's length (8 bytes) and then that header."""
    if len(raw) < 10:
        return False
    (size,) = struct.unpack("<Q", raw[:8])
    return 8 + size <= len(raw) and raw[8:9] == b"{"
