"""Shuffled mini-batches that a resumed run draws again: the order is a function of the epoch."""

from __future__ import annotations

from collections.abc import Callable

import torch

from circuitlab.checks import check_integer

__all__ = ["shuffled_batches"]


def shuffled_batches(n: int, batch_size: int, seed: int) -> Callable[[int], list[list[int]]]:
    """A function of the epoch index giving that epoch's batches of indices ``0 .. n - 1``:
    a seeded permutation cut into batches of ``batch_size`` (the last may be smaller).

    Pass it as ``train(batches=...)``: epoch e always gets the same batches, so a run resumed
    from a checkpoint sees what the uninterrupted run saw.
    """
    check_integer("batch_size", batch_size, minimum=1)

    def batches(epoch: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        order = torch.randperm(n, generator=generator).tolist()
        return [order[start : start + batch_size] for start in range(0, n, batch_size)]

    return batches
