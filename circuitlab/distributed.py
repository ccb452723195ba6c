"""Data-parallel passes with ``torch.distributed``: which process this is, and readers reduced
across processes.

Launched with ``torchrun`` (which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``), every process runs the same script; the first
`circuitlab.collector.collect` initialises the default process group (gloo for a model on the
CPU, nccl for one on CUDA) unless the script initialised one itself. Each process then runs
every ``world_size``-th batch from its ``rank`` and `merge_across_ranks` hands every process
the readers of all of them, merged in rank order, so every process returns the result one
process would have (row-keeping readers exactly, sums to float rounding). Files are written by
rank 0 only (`is_writer`).

Reader state travels as pickled bytes between the live processes of the group
(``all_gather_object`` on a gloo group), never through a file. A reader's state is every
attribute that is not configuration; configuration is what every process already holds: the
model handle, torch modules, callables (metrics, transforms) and frozen dataclasses (weights,
targets, sites). Tensors on an accelerator travel through the CPU and arrive on the
receiving process's device.

Example (``torchrun --nproc_per_node 2 script.py``):
    >>> model = circuitlab.load("smollm2-135m-instruct")
    >>> out = circuitlab.collect(model, texts, {"mean": Mean(sites.resid_post(5))})
    >>> if circuitlab.distributed.is_writer():
    ...     torch.save(out["mean"], "mean.pt")   # every rank holds the same mean
"""

from __future__ import annotations

import atexit
import copy
import dataclasses
import io
import os
import pickle
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from circuitlab.errors import CircuitlabError, InputError

if TYPE_CHECKING:
    import torch

    from circuitlab.readers import Reader

__all__ = [
    "LAUNCH_VARIABLES",
    "all_gather_objects",
    "in_process_group",
    "initialize",
    "is_active",
    "is_writer",
    "launched",
    "merge_across_ranks",
    "rank",
    "rank_share",
    "world_size",
]

LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""The environment variables ``torchrun`` sets for every process it starts."""

_object_group: Any = None  # a gloo group for objects when the default group is not gloo


def _initialised() -> Any:
    """``torch.distributed`` if a default process group exists (torch is not imported here)."""
    module = sys.modules.get("torch.distributed")
    if module is None or not module.is_available() or not module.is_initialized():
        return None
    return module


def launched() -> bool:
    """Whether ``torchrun`` (or ``python -m torch.distributed.run``) started this process as
    one of several (all of `LAUNCH_VARIABLES` set and ``WORLD_SIZE`` > 1)."""
    if not all(os.environ.get(name) for name in LAUNCH_VARIABLES):
        return False
    try:
        return int(os.environ["WORLD_SIZE"]) > 1
    except ValueError:
        return False


def rank() -> int:
    """This process's rank: from the process group, else ``$RANK`` under torchrun, else 0."""
    dist = _initialised()
    if dist is not None:
        return int(dist.get_rank())
    if launched():
        return int(os.environ["RANK"])
    return 0


def world_size() -> int:
    """Number of processes: the process group's size, else ``$WORLD_SIZE`` under torchrun,
    else 1."""
    dist = _initialised()
    if dist is not None:
        return int(dist.get_world_size())
    if launched():
        return int(os.environ["WORLD_SIZE"])
    return 1


def is_writer() -> bool:
    """Whether this process writes files: rank 0, or the only process. Never initialises a
    group (writing does not need one)."""
    return rank() == 0


def in_process_group() -> bool:
    """Whether this process belongs to a process group of any size (initialised, or set up
    by ``torchrun`` in the environment)."""
    return _initialised() is not None or all(os.environ.get(name) for name in LAUNCH_VARIABLES)


def is_active() -> bool:
    """Whether a process group of more than one process is initialised."""
    dist = _initialised()
    return dist is not None and int(dist.get_world_size()) > 1


def initialize(device: torch.device | str | None = None) -> bool:
    """Initialise the default process group if ``torchrun`` launched this process.

    A group the caller initialised (``torch.distributed.init_process_group``) is used as it
    is. Otherwise, under ``torchrun`` with more than one process, the group is created from the
    environment: nccl when ``device`` is a CUDA device (made this process's current device),
    gloo otherwise. It is destroyed when the process exits.

    Args:
        device: the model's device (chooses the backend).

    Returns:
        Whether a group of more than one process is active.
    """
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        return False
    if dist.is_initialized():
        return dist.get_world_size() > 1
    if not launched():
        return False
    device = torch.device(device if device is not None else "cpu")
    backend = "gloo"
    if device.type == "cuda":
        index = device.index if device.index is not None else int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(index)
        backend = "nccl"
    dist.init_process_group(backend=backend)
    atexit.register(_destroy)
    return dist.get_world_size() > 1


def _destroy() -> None:
    dist = _initialised()
    if dist is not None:
        dist.destroy_process_group()


def _gather_group() -> Any:
    """The group objects travel on: the default one if it is gloo, else a gloo copy of it
    (nccl would stage every object on the GPU)."""
    global _object_group
    import torch.distributed as dist

    if dist.get_backend() == "gloo":
        return None
    if _object_group is None:
        _object_group = dist.new_group(backend="gloo")
    return _object_group


def all_gather_objects(value: Any) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order; ``[value]`` without a group.

    Every process of the group must call this at the same point.

    Args:
        value: this process's contribution (any picklable object).
    """
    if not is_active():
        return [value]
    import torch.distributed as dist

    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, value, group=_gather_group())
    return gathered


def rank_share(count: int, device: torch.device | str | None = None) -> range:
    """The indices of ``count`` jobs this process runs: ``rank, rank + world_size, ...`` under a
    process group (initialised lazily, see `initialize`), else all of them. Combine the
    shares with `all_gather_objects`.

    Args:
        count: the number of jobs.
        device: the model's device (chooses the backend if the group is created here).
    """
    if not initialize(device):
        return range(count)
    return range(rank(), count, world_size())


# ------------------------------------------------------------------------ reader state
def _is_configuration(value: Any) -> bool:
    """Whether an attribute of a reader is configuration every process already holds."""
    import torch

    from circuitlab.model import ModelHandle

    if isinstance(value, (ModelHandle, torch.nn.Module)) or callable(value):
        return True
    params = getattr(type(value), "__dataclass_params__", None)
    return dataclasses.is_dataclass(value) and params is not None and params.frozen


class _StatePickler(pickle.Pickler):
    """Pickles reader state; tensors off the CPU travel as CPU copies."""

    def __init__(self, buffer: io.BytesIO, where: str) -> None:
        super().__init__(buffer, protocol=pickle.HIGHEST_PROTOCOL)
        self.where = where

    def persistent_id(self, obj: Any) -> Any:
        import torch

        from circuitlab.model import ModelHandle

        if isinstance(obj, torch.Tensor) and obj.device.type != "cpu":
            return ("device", obj.detach().cpu())
        if isinstance(obj, (ModelHandle, torch.nn.Module)):
            raise CircuitlabError(
                f"{self.where} holds a {type(obj).__name__} inside its state, which cannot be "
                f"sent between processes. Keep models as direct attributes of the reader."
            )
        return None


class _StateUnpickler(pickle.Unpickler):
    def __init__(self, buffer: io.BytesIO, device: torch.device) -> None:
        super().__init__(buffer)
        self.device = device

    def persistent_load(self, pid: Any) -> Any:
        tag, tensor = pid
        if tag != "device":
            raise pickle.UnpicklingError(f"unknown persistent id {tag!r}")
        return tensor.to(self.device)


def _pack(name: str, reader: Reader) -> bytes:
    """The state of ``reader`` (its non-configuration attributes) as bytes."""
    state = {key: value for key, value in vars(reader).items() if not _is_configuration(value)}
    where = f"The reader {name!r} ({type(reader).__name__})"
    buffer = io.BytesIO()
    try:
        _StatePickler(buffer, where).dump(state)
    except (pickle.PicklingError, TypeError, AttributeError) as error:
        raise CircuitlabError(
            f"{where} cannot be sent between processes ({error}). Give it state made of "
            f"tensors, numbers and containers, or run it with collect(..., distributed=False)."
        ) from error
    return buffer.getvalue()


def _unpack(data: bytes, device: torch.device) -> dict[str, Any]:
    return _StateUnpickler(io.BytesIO(data), device).load()


def merge_across_ranks(
    readers: Mapping[str, Reader],
    *,
    batches: int,
    device: torch.device,
    check: str = "",
) -> None:
    """Give every process the readers of all processes, merged in rank order (in place).

    Every process calls this once its batches are done, also a process that got no batch.
    Afterwards each reader holds the state of the first rank that ran a batch, with the later
    ranks' states merged in rank order, on every process alike.

    Args:
        readers: this process's readers, by name (the same names and kinds on every process).
        batches: how many batches this process ran (ranks without any are skipped).
        device: where tensors that lived on an accelerator arrive (this process's model
            device).
        check: a description of the pass that must agree on every process (the data's
            fingerprint, batch size, ...); a mismatch is an error, not a silent wrong merge.

    Raises:
        InputError: the processes ran different passes (other data, other readers).
    """
    kinds = {name: type(reader).__qualname__ for name, reader in readers.items()}
    states = {name: _pack(name, reader) for name, reader in readers.items()} if batches else {}
    payloads = all_gather_objects(
        {"batches": batches, "check": check, "kinds": kinds, "states": states}
    )
    for index, payload in enumerate(payloads):
        if payload["check"] != check or payload["kinds"] != kinds:
            raise InputError(
                f"Rank {index} ran a different pass from rank {rank()} (other data, batch size, "
                f"positions or readers). Every process must call collect with the same "
                f"arguments, in the same order."
            )
    sources = [index for index, payload in enumerate(payloads) if payload["batches"]]
    if not sources:
        return
    me = rank()
    for name, reader in readers.items():
        template = copy.copy(reader)  # configuration shared, state replaced below
        first, *rest = sources
        if first != me:
            vars(reader).update(_unpack(payloads[first]["states"][name], device))
        for index in rest:
            other = copy.copy(template)
            vars(other).update(_unpack(payloads[index]["states"][name], device))
            try:
                reader.merge(other)
            except NotImplementedError:
                raise CircuitlabError(
                    f"The reader {name!r} ({type(reader).__name__}) cannot merge another "
                    f"process's batches: it defines no merge(). Give it one, or collect with "
                    f"distributed=False."
                ) from None
