"""Launching test processes with torchrun (``python -m torch.distributed.run``) on this machine."""

from __future__ import annotations

import socket
import sys


def free_port() -> int:
    """A TCP port nothing listens on now (for the rendezvous of one launch)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def torchrun(processes: int, *program: str) -> list[str]:
    """The command line that starts ``program`` (a script, or ``-m module``, and its arguments)
    in ``processes`` local processes."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(processes),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(free_port()),
        *program,
    ]
