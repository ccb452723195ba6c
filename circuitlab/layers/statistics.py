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
    """

    epsilon: float
    count: int = 0
    mean: float = 0.0
    squared_deviations: float = 0.0
    near_zero: int = 0

    def update(self, values: Float[Tensor, "tokens d"]) -> None:
        """Fold in one batch of real-token activations (any float dtype, any device)."""
        flat = values.detach().reshape(-1).to(torch.float64)
        n = flat.numel()
        if n == 0:
            return
        batch_mean = flat.mean()
        batch_m2 = float(torch.square(flat - batch_mean).sum())
        batch_mean_value = float(batch_mean)
        total = self.count + n
        delta = batch_mean_value - self.mean
        self.mean += delta * n / total
        self.squared_deviations += batch_m2 + delta * delta * self.count * n / total
        self.count = total
        self.near_zero += int((flat.abs() < self.epsilon).sum())

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
    """Mean over tokens of 1 − cos(h_in, h_out) and of the angular distance arccos(cos)/π."""

    count: int = 0
    one_minus_cosine: float = 0.0
    angle: float = 0.0

    def update(self, inputs: Float[Tensor, "tokens d"], outputs: Float[Tensor, "tokens d"]) -> None:
        """Fold in one batch of a block's real-token inputs and outputs."""
        cosine = torch.nn.functional.cosine_similarity(
            inputs.detach().to(torch.float64), outputs.detach().to(torch.float64), dim=-1
        ).clamp(-1.0, 1.0)
        self.count += cosine.numel()
        self.one_minus_cosine += float((1.0 - cosine).sum())
        self.angle += float((torch.arccos(cosine) / math.pi).sum())

    @property
    def block_influence(self) -> float:
        """ShortGPT's Block Influence: mean of 1 − cos(h_in, h_out) over tokens."""
        return self.one_minus_cosine / self.count if self.count else math.nan

    @property
    def angular_distance(self) -> float:
        """Mean angular distance arccos(cos(h_in, h_out)) / π over tokens, in [0, 1]."""
        return self.angle / self.count if self.count else math.nan
