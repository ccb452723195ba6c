"""Streaming per-layer statistics: moments, near-zero counts and input/output cosines.

Every accumulator takes one batch at a time (only its real tokens) and keeps a few float64
numbers per layer, so a data set of any size is scored without holding its activations.
Variances are merged with Chan et al.'s pairwise update (the batch form of Welford's
algorithm), which stays exact where the naive sum-of-squares formula cancels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

__all__ = ["CosineStatistics", "MomentStatistics"]


@dataclass
class MomentStatistics:
    """Count, mean, sum of squared deviations and near-zero count of every scalar activation.

    One instance per layer. ``epsilon`` is the sparsity threshold: an activation ``a`` counts
    as near zero when ``|a| < epsilon``.

    Attributes:
        epsilon: the sparsity threshold (same units as the activations).
        count: number of scalar activations seen.
        mean: their running mean (float64 arithmetic).
        squared_deviations: their sum of squared deviations from the mean (M2).
        near_zero: how many had ``|a| < epsilon``.
    """

    epsilon: float
    count: int = 0
    mean: float = 0.0
    squared_deviations: float = 0.0
    near_zero: int = 0

    def update(self, values: Float[Tensor, "tokens d"]) -> None:
        """Fold in one batch of real-token activations (any float dtype, any device).

        Args:
            values: the activations [tokens, d]; every scalar counts (any shape is flattened).
        """
        flat = values.detach().reshape(-1).to(torch.float64)
        n = flat.numel()
        if n == 0:
            return
        batch_mean = flat.mean()
        batch_m2 = float(torch.square(flat - batch_mean).sum())
        near_zero = int((flat.abs() < self.epsilon).sum())
        self._combine(n, float(batch_mean), batch_m2, near_zero)

    def merge(self, other: MomentStatistics) -> None:
        """Fold in the statistics of values another instance saw (another batch or process).

        Args:
            other: statistics at the same ``epsilon`` (ValueError otherwise).
        """
        if other.epsilon != self.epsilon:
            raise ValueError(
                f"Cannot merge moments at ε = {other.epsilon} into ε = {self.epsilon}."
            )
        if other.count:
            self._combine(other.count, other.mean, other.squared_deviations, other.near_zero)

    def _combine(self, n: int, mean: float, squared_deviations: float, near_zero: int) -> None:
        """Chan et al.'s pairwise update with a group of ``n`` values of that mean and M2."""
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.squared_deviations += squared_deviations + delta * delta * self.count * n / total
        self.count = total
        self.near_zero += near_zero

    @property
    def variance(self) -> float:
        """Population variance (1/N) Σ (a − μ)² over every scalar activation seen."""
        return self.squared_deviations / self.count if self.count else math.nan

    @property
    def sparsity(self) -> float:
        """Fraction of activations with ``|a| < epsilon``."""
        return self.near_zero / self.count if self.count else math.nan


@dataclass
class CosineStatistics:
    """Mean over tokens of 1 − cos(h_in, h_out) and of the angular distance arccos(cos)/π.

    Attributes:
        count: number of tokens seen.
        one_minus_cosine: sum over tokens of 1 − cos(h_in, h_out).
        angle: sum over tokens of arccos(cos(h_in, h_out)) / π.
    """

    count: int = 0
    one_minus_cosine: float = 0.0
    angle: float = 0.0

    def update(self, inputs: Float[Tensor, "tokens d"], outputs: Float[Tensor, "tokens d"]) -> None:
        """Fold in one batch of a block's real-token inputs and outputs.

        Args:
            inputs: the block's input at each real token [tokens, d].
            outputs: the block's output at the same tokens [tokens, d].
        """
        cosine = torch.nn.functional.cosine_similarity(
            inputs.detach().to(torch.float64), outputs.detach().to(torch.float64), dim=-1
        ).clamp(-1.0, 1.0)
        self.count += cosine.numel()
        self.one_minus_cosine += float((1.0 - cosine).sum())
        self.angle += float((torch.arccos(cosine) / math.pi).sum())

    def merge(self, other: CosineStatistics) -> None:
        """Fold in the sums another instance collected (another batch or process).

        Args:
            other: the statistics to fold in.
        """
        self.count += other.count
        self.one_minus_cosine += other.one_minus_cosine
        self.angle += other.angle

    @property
    def block_influence(self) -> float:
        """ShortGPT's Block Influence: mean of 1 − cos(h_in, h_out) over tokens."""
        return self.one_minus_cosine / self.count if self.count else math.nan

    @property
    def angular_distance(self) -> float:
        """Mean angular distance arccos(cos(h_in, h_out)) / π over tokens, in [0, 1]."""
        return self.angle / self.count if self.count else math.nan
