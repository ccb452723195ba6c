"""Directions from contrastive data: which way a site's activations move from one group to another.

`direction` takes the activations of a *positive* group and of a *reference* group at one site
(a head's ``z``, the residual stream, ...) and returns a `Direction`: a vector per unit in the
site's own activation units, ready to be added as a steering bias (``α · vectors``).

| method | direction θ̂ (normalised) | ``scale`` |
| --- | --- | --- |
| ``mean_difference`` | mean(positive) − mean(all) (arXiv 2501.11041) | its norm |
| ``mass_mean`` | mean(positive) − mean(negative) (ITI) | σ |
| ``probe`` | weights of a logistic-regression probe, positive vs negative | σ |
| ``pca`` | first principal component of paired differences positive_i − reference_i | σ |
| ``random`` | a seeded random direction (a control) | σ |

``vectors = scale · θ̂``; for ``mean_difference`` that is the difference itself.

`steering_edits` turns vectors at a site into interventions: at a head site (``z``) one
`SteerHead` per head, its d_head vector mapped through the head's output projection; at a
residual site (``resid_post``, or ``resid_pre`` of a later layer) one `SteerResidual`.

σ is ITI's scale (Li et al. 2023, ``likenneth/honest_llama``): the population standard deviation
of the projections ⟨a, θ̂⟩ of *all* activations ``a`` on θ̂, so ``α · vectors`` is ITI's offset
``α σ θ̂``: α standard deviations of the activations along θ̂.

**What the reference group is** (``reference_is``):

- ``"negative"`` (default): the two groups are disjoint: reference holds the negatives (false
  answers, inconsistent prompts). "All" is then their union, positive ∪ reference.
- ``"all"``: reference holds *every* example, the positives included (the paper's
  mean(consistent) − mean(all) with ``positive`` = consistent prompts, ``reference`` = every
  prompt). "All" is then reference itself. ``mass_mean`` is unchanged (mean(positive) −
  mean(all) is parallel to mean(positive) − mean(negative)); ``probe`` and ``pca`` need the
  negatives themselves and refuse.

Both describe the same data the same way: ``direction(consistent, inconsistent)`` equals
``direction(consistent, every, reference_is="all")`` up to rounding (for ``mean_difference``,
``mass_mean`` and ``random``).

**PCA** is uncentred: θ̂ is the top eigenvector of the second moment (1/n) Σ_i d_i d_iᵀ of the
differences d_i = positive_i − reference_i, signed so that the mean projection of the d_i is
positive. That is what PCA of the differences gives when each pair's order is flipped at random,
as RepE (Zou et al. 2023) does. repeng's ``pca_diff`` runs a centred PCA instead, which
subtracts the shift every pair shares, and so loses the direction whenever the pairs differ
alike (the planted-direction case).

Example:
    >>> z_pos, z_neg = torch.randn(270, 400, 64), torch.randn(270, 600, 64)  # [head, example, d]
    >>> found = direction(z_pos, z_neg, method="mass_mean")
    >>> found.vectors.shape, found.scale.shape
    (torch.Size([270, 64]), torch.Size([270]))
"""

from __future__ import annotations

import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import einops
import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab.checks import check_number, checked_arguments
from circuitlab.components import Head
from circuitlab.errors import InputError
from circuitlab.interventions.spec import SteerHead, SteerResidual
from circuitlab.probes import LinearProbes, is_finite
from circuitlab.sites import Site

__all__ = ["METHODS", "Direction", "direction", "steering_edits"]

Method = Literal["mean_difference", "mass_mean", "probe", "pca", "random"]
METHODS: tuple[str, ...] = typing.get_args(Method)
"""The methods `direction` knows, in the order of the module table."""

_OVERLAP_ROWS = 64
"""How many positive rows are looked up in the reference to detect a reference holding them."""


@dataclass(frozen=True, eq=False)
class Direction:
    """A direction per unit from contrastive activations (see the module docstring).

    Attributes:
        vectors: ``scale · normalized``, in activation units [*unit, d] (float64); add
            ``α · vectors`` to the site's activations to steer.
        normalized: the unit-norm direction θ̂ [*unit, d] (float64; zero where the direction is
            zero, e.g. two groups with identical means).
        scale: the length of ``vectors`` [*unit] (float64): the difference's norm for
            ``mean_difference``, else σ, the standard deviation of all activations along θ̂.
        method: the method that made it (one of `METHODS`).
    """

    vectors: Float[Tensor, "*unit d"]
    normalized: Float[Tensor, "*unit d"]
    scale: Float[Tensor, "*unit"]
    method: str

    def __repr__(self) -> str:
        shape = "×".join(str(size) for size in self.vectors.shape)
        return (
            f"Direction(method={self.method!r}, vectors [{shape}], mean scale {self._mean():.4g})"
        )

    def _mean(self) -> float:
        return float(self.scale.mean()) if self.scale.numel() else float("nan")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Direction):
            return NotImplemented
        return self.method == other.method and all(
            mine.shape == theirs.shape and torch.equal(mine, theirs.to(mine.device))
            for mine, theirs in zip(
                (self.vectors, self.normalized, self.scale),
                (other.vectors, other.normalized, other.scale),
                strict=True,
            )
        )

    __hash__ = None  # type: ignore[assignment]


@checked_arguments
def direction(
    positive: Float[Tensor, "*unit example d"],
    reference: Float[Tensor, "*unit example d"],
    *,
    method: Method = "mean_difference",
    reference_is: Literal["negative", "all"] = "negative",
    C: float = 1.0,
    seed: int = 0,
) -> Direction:
    """The direction from ``reference`` to ``positive`` activations, per unit.

    Args:
        positive: activations of the positive group [example, d], or [unit, example, d] to get
            every unit's direction in one call (e.g. every head's ``z``).
        reference: the reference group, same layout and ``d`` (and units); its meaning is set
            by ``reference_is``. For ``pca``, row i is paired with ``positive``'s row i.
        method: one of ``mean_difference``, ``mass_mean``, ``probe``, ``pca``, ``random``.
        reference_is: ``"negative"`` (reference is the other group, disjoint from positive)
            or ``"all"`` (reference is every example, positives included).
        C: inverse L2 strength of the ``probe`` method's `LinearProbes` (scikit-learn's
            convention; features standardised inside, weights read in activation space).
        seed: seed of the ``random`` method's directions (drawn for all units at once, in unit
            order, from one generator: the same seed gives the same vectors).

    Returns:
        A `Direction` with ``vectors`` [d] or [unit, d] in activation units and ``scale``
        [] or [unit] (see the module table).

    Example:
        >>> found = direction(z[:, consistent], z, reference_is="all")  # the paper's bias
        >>> steer = alpha * found.vectors  # [head, d_head]
    """
    if method not in METHODS:
        raise InputError(f"Unknown direction method {method!r}. Use one of {', '.join(METHODS)}.")
    if reference_is not in ("negative", "all"):
        raise InputError(
            f"reference_is must be 'negative' (reference holds the other group) or 'all' "
            f"(reference holds every example, positives included); got {reference_is!r}."
        )
    check_number("C", C, lambda v: v > 0, "positive (scikit-learn's default is 1.0)")
    positive = _activations(positive, "positive")
    reference = _activations(reference, "reference")
    layout = positive.shape[:-2], positive.shape[-1]
    if positive.ndim != reference.ndim or layout != (reference.shape[:-2], reference.shape[-1]):
        raise InputError(
            f"positive has shape {tuple(positive.shape)} and reference "
            f"{tuple(reference.shape)}: they need the same layout ([example, d] or "
            f"[unit, example, d]) with the same units and the same d."
        )
    single = positive.ndim == 2
    pos = positive[None] if single else positive
    ref = reference[None] if single else reference
    _check_groups(pos, ref, method, reference_is)

    every = ref if reference_is == "all" else torch.cat([pos, ref], dim=1)
    if method == "mean_difference":
        vectors = pos.mean(1) - every.mean(1)
        scale = vectors.norm(dim=-1)
        normalized = _normalize(vectors)
    else:
        if method == "mass_mean":  # with reference_is="all", parallel to mean(pos) − mean(neg)
            raw = pos.mean(1) - ref.mean(1)
        elif method == "probe":
            labels = torch.cat([pos.new_ones(pos.shape[1]), pos.new_zeros(ref.shape[1])])
            raw = LinearProbes(C=C).fit(every, labels).coef_.to(pos.device)
        elif method == "pca":
            raw = _first_component(pos - ref)
        else:
            generator = torch.Generator().manual_seed(seed)
            raw = torch.randn(pos.shape[0], pos.shape[2], generator=generator, dtype=torch.float64)
            raw = raw.to(pos.device)
        normalized = _normalize(raw)
        projections = einops.einsum(every, normalized, "unit example d, unit d -> unit example")
        scale = projections.std(dim=1, correction=0)
        vectors = scale[:, None] * normalized
    if single:
        vectors, normalized, scale = vectors[0], normalized[0], scale[0]
    return Direction(vectors=vectors, normalized=normalized, scale=scale, method=method)


def _activations(value: Any, name: str) -> Float[Tensor, "*unit example d"]:
    """``value`` as a finite float64 tensor [example, d] or [unit, example, d]."""
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, Tensor):
        raise InputError(
            f"{name} must be a tensor of activations [example, d] or [unit, example, d], got "
            f"{type(value).__name__}."
        )
    if value.ndim not in (2, 3):
        raise InputError(
            f"{name} must be [example, d] or [unit, example, d], got shape {tuple(value.shape)}."
        )
    if value.shape[-2] == 0 or value.shape[-1] == 0 or (value.ndim == 3 and value.shape[0] == 0):
        raise InputError(
            f"The {name} group is empty (shape {tuple(value.shape)}): a direction needs "
            f"examples in both groups."
        )
    if not is_finite(value):
        finite = torch.isfinite(value)
        where = tuple(int(i) for i in (~finite).nonzero()[0])
        raise InputError(
            f"{name} holds {int((~finite).sum())} NaN or infinite values (first at index "
            f"{where}). Drop or repair those examples."
        )
    return value.to(torch.float64)


def _check_groups(pos: Tensor, ref: Tensor, method: str, reference_is: str) -> None:
    """Refuse group sizes and contents the method cannot use (shapes [unit, example, d])."""
    n_pos, n_ref = pos.shape[1], ref.shape[1]
    if reference_is == "all":
        if method in ("probe", "pca"):
            raise InputError(
                f"The {method!r} method needs the negative examples themselves, but "
                f"reference_is='all' (reference holds every example). Pass the negatives as "
                f"reference with reference_is='negative'."
            )
        if n_ref <= n_pos:
            raise InputError(
                f"reference_is='all' but reference has {n_ref} examples and positive {n_pos}: "
                f"the reference must hold every example, more than the positives alone."
            )
        return
    if method == "pca" and n_pos != n_ref:
        raise InputError(
            f"The 'pca' method takes paired examples (positive row i with reference row i) but "
            f"got {n_pos} positive and {n_ref} reference examples. Pass pairs in order, or use "
            f"'mass_mean' for unpaired groups."
        )
    if method == "probe" and min(n_pos, n_ref) < 2:
        raise InputError(
            f"The 'probe' method needs at least 2 examples in each group; got {n_pos} positive "
            f"and {n_ref} reference examples."
        )
    probe = pos[0, :_OVERLAP_ROWS]
    distance = torch.cdist(probe, ref[0], compute_mode="donot_use_mm_for_euclid_dist")
    if n_pos > 1 and bool((distance == 0).any(-1).all()):
        raise InputError(
            "Every positive example checked also appears in reference, but "
            "reference_is='negative' expects two disjoint groups. If reference holds every "
            "example (the paper's mean(consistent) − mean(all)), pass reference_is='all'; "
            "otherwise pass only the negative examples as reference."
        )


def _normalize(vectors: Float[Tensor, "unit d"]) -> Float[Tensor, "unit d"]:
    """Unit-norm rows (zero rows stay zero)."""
    norm = vectors.norm(dim=-1, keepdim=True)
    return torch.where(norm > 0, vectors / norm.clamp_min(1e-300), torch.zeros_like(vectors))


def _first_component(differences: Float[Tensor, "unit pair d"]) -> Float[Tensor, "unit d"]:
    """Top eigenvector of each unit's uncentred second moment of the differences, signed so the
    differences project positively on average (reference → positive)."""
    moment = einops.einsum(differences, differences, "unit pair i, unit pair j -> unit i j")
    _, eigenvectors = torch.linalg.eigh(moment / differences.shape[1])
    first = eigenvectors[..., -1]  # eigh sorts eigenvalues in ascending order
    sign = torch.sign(einops.einsum(differences, first, "unit pair d, unit d -> unit"))
    return first * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None]


@checked_arguments
def steering_edits(
    model: Any,
    site: Site,
    vectors: Float[Tensor, "*unit d"],
    alpha: float,
    *,
    heads: Sequence[int] | None = None,
) -> list[SteerHead] | list[SteerResidual]:
    """Interventions that add ``alpha · vectors`` at ``site`` (e.g. a `Direction`'s vectors).

    Args:
        model: the `circuitlab.ModelHandle` the site belongs to.
        site: ``sites.z(layer)`` (vectors [head, d_head], one per head of the layer) or
            ``sites.resid_post(layer)`` / ``sites.resid_pre(layer)`` (vectors [d_model]).
        vectors: the direction(s) in the site's activation units.
        alpha: the strength α (any finite number; negative steers the other way).
        heads: at a head site, only these head indices (default: every head).

    Returns:
        One `SteerHead` per head (its vector ``W_O[h]ᵀ · α · vectors[h]``, d_model) or one
        `SteerResidual`.
    """
    from circuitlab.weights import output_projection

    alpha = check_number("alpha", alpha, lambda v: True, "a finite number, e.g. 3")
    site.check(model.n_layers)
    vectors = torch.as_tensor(vectors).detach()
    if not bool(torch.isfinite(vectors).all()):
        raise InputError("The steering vectors hold NaN or infinite values.")
    assert site.layer is not None  # z and residual sites always have one
    if site.kind == "z":
        expected = (model.n_heads, model.d_head)
        if tuple(vectors.shape) != expected:
            raise InputError(
                f"A z site takes one d_head vector per head, shape {list(expected)}; got "
                f"{list(vectors.shape)}."
            )
        w_o, _ = output_projection(model, site.layer)  # [head, d_head, d_model]
        chosen = list(range(model.n_heads)) if heads is None else [int(h) for h in heads]
        edits = []
        for index in chosen:
            head = Head(site.layer, index).check(model.arch)
            vector = alpha * (vectors[index].to(w_o.device, w_o.dtype) @ w_o[index])
            edits.append(SteerHead(head, vector.detach().float().cpu()))
        return edits
    if heads is not None:
        raise InputError(f"heads= applies to z (head) sites only, not {site!r}.")
    layer = site.layer if site.kind == "resid_post" else site.layer - 1
    if site.kind not in ("resid_post", "resid_pre") or layer < 0:
        raise InputError(
            f"Steering is available at z (head) and residual sites (resid_post(l), "
            f"resid_pre(l) for l >= 1); got {site!r}."
        )
    if tuple(vectors.shape) != (model.d_model,):
        raise InputError(
            f"A residual site takes one d_model vector, shape [{model.d_model}]; got "
            f"{list(vectors.shape)}."
        )
    return [SteerResidual(layer, (alpha * vectors).float().cpu())]
