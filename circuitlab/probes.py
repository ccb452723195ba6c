"""Many independent linear probes fitted at once: one logistic regression per unit.

`LinearProbes` fits one binary L2-regularised logistic regression per *unit* (an attention
head, a layer, a neuron group) on that unit's features, all units in one batched Newton solve.
It matches scikit-learn's ``LogisticRegression(C=C)`` unit by unit: each probe minimises

    Σ_i [log(1 + exp(z_i)) − y_i z_i] + ||w||² / (2C),     z_i = w · x_i + b,

the intercept ``b`` unpenalised. Units are independent, so the batched problem separates and
every unit gets its own Newton step (Cholesky solve of its own [feature+1]² Hessian), its own
backtracking line search and its own stopping test; a unit that has converged stops moving.

Why Newton: with tens of features the Hessian is small, Newton needs 5-10 iterations from zero
whatever the conditioning, and its per-unit steps batch into a few large matrix products
(the Hessians, in float32; gradients and objectives stay float64). 270 units × 1000 examples ×
64 features fit in about 0.5 s on 2 CPU cores (``benchmarks/probe_speed.py``).

Example:
    >>> X = torch.randn(270, 1000, 64)  # [unit, example, feature], e.g. every head's z
    >>> y = torch.randint(0, 2, (1000,))  # labels shared by all units
    >>> probes = LinearProbes(C=1.0).fit(X, y)
    >>> probes.coef_.shape, probes.score(X, y).shape
    (torch.Size([270, 64]), torch.Size([270]))
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from circuitlab.checks import check_integer, check_number, checked_arguments
from circuitlab.errors import InputError

__all__ = ["LinearProbes"]

_CHUNK_ELEMENTS = 2**22
"""Units are solved in chunks of about this many [example, feature] elements (memory bound)."""

_ARMIJO = 1e-4
_HALVINGS = 30


class LinearProbes:
    """One L2-regularised binary logistic regression per unit, fitted as one batched problem.

    Args:
        C: inverse regularisation strength, scikit-learn's convention: the penalty is
            ``||w||² / (2C)`` next to the summed (not averaged) log loss. Must be positive.
        max_iter: most Newton iterations per unit (each unit typically needs 5–10).
        tol: a unit has converged when every entry of the gradient of its *mean* objective
            (summed objective / examples), in the standardised space, is at most ``tol``.
        fit_intercept: learn an unpenalised intercept per unit.
        standardize: fit on features divided by their per-unit standard deviation (population,
            constant features left as they are), as ``make_pipeline(StandardScaler(),
            LogisticRegression(C=C))`` does: the penalty then weighs every feature alike
            whatever its scale. With ``False`` the penalty applies to the raw weights, as
            ``LogisticRegression(C=C)`` on the raw features. Either way ``coef_`` and
            ``intercept_`` act on the *original* features. (Features are also centred inside
            the solver when ``fit_intercept``; that reparametrisation is exact.)

    Attributes (after `fit`):
        coef_: weights on the original features [unit, feature] (float64, on the CPU).
        intercept_: intercepts [unit] (float64, on the CPU; zeros without ``fit_intercept``).
        n_iter_: Newton iterations each unit took [unit] (int64).
        converged_: whether each unit met ``tol`` within ``max_iter`` [unit] (bool).

    Example:
        >>> probes = LinearProbes(C=0.5).fit(X_train, y_train)  # X [unit, example, feature]
        >>> probes.score(X_test, y_test)  # accuracy of each unit's probe [unit]
    """

    @checked_arguments
    def __init__(
        self,
        *,
        C: float = 1.0,
        max_iter: int = 100,
        tol: float = 1e-8,
        fit_intercept: bool = True,
        standardize: bool = True,
    ) -> None:
        self.C = check_number("C", C, lambda v: v > 0, "positive (scikit-learn's default is 1.0)")
        self.max_iter = check_integer("max_iter", max_iter, minimum=1)
        self.tol = check_number("tol", tol, lambda v: v > 0, "positive, e.g. 1e-8")
        self.fit_intercept = fit_intercept
        self.standardize = standardize

    def __repr__(self) -> str:
        state = f"{len(self.coef_)} units fitted" if self.is_fitted else "not fitted"
        return (
            f"LinearProbes(C={self.C}, max_iter={self.max_iter}, tol={self.tol}, "
            f"fit_intercept={self.fit_intercept}, standardize={self.standardize}; {state})"
        )

    @property
    def is_fitted(self) -> bool:
        """Whether `fit` has set the weights."""
        return hasattr(self, "coef_")

    @checked_arguments
    def fit(
        self,
        X: Float[Tensor, "unit example feature"],
        y: Int[Tensor, " example"] | Int[Tensor, "unit example"],
    ) -> LinearProbes:
        """Fit every unit's probe.

        Args:
            X: features [unit, example, feature] (any float dtype, any device; a NumPy array
                is accepted). One probe alone: ``X[None]``.
            y: 0/1 labels (bool, integer or float) [example], shared by all units, or
                [unit, example]. Every unit needs at least 2 examples of each class.

        Returns:
            ``self``.
        """
        X = as_features(X, "fit()")
        y = as_labels(y, X, "fit()")
        counts = torch.stack([(y == 0).sum(-1), (y == 1).sum(-1)], -1)  # [unit, 2]
        if int(counts.min()) < 2:
            unit = int(counts.min(-1).values.argmin())
            zeros, ones = counts[unit].tolist()
            where = "" if y.shape[0] == 1 or bool((y == y[:1]).all()) else f" of unit {unit}"
            raise InputError(
                f"The labels{where} hold {ones} positive (1) and {zeros} negative (0) examples: "
                f"a probe needs both classes, at least 2 examples of each"
                f"{' (every label is the same: nothing to probe)' if min(zeros, ones) == 0 else ''}"
                f". Give examples of both classes, e.g. both consistent and inconsistent pairs."
            )
        n_units, n_examples, n_features = X.shape
        chunk = max(1, _CHUNK_ELEMENTS // (n_examples * (n_features + 1)))
        coef, intercept, iterations, converged = [], [], [], []
        for start in range(0, n_units, chunk):
            part = slice(start, start + chunk)
            labels = y[part] if y.shape[0] > 1 else y.expand(len(X[part]), -1)
            result = self._fit_chunk(X[part], labels)
            for store, value in zip((coef, intercept, iterations, converged), result, strict=True):
                store.append(value)
        self.coef_ = torch.cat(coef)
        self.intercept_ = torch.cat(intercept)
        self.n_iter_ = torch.cat(iterations)
        self.converged_ = torch.cat(converged)
        if not bool(self.converged_.all()):
            missed = int((~self.converged_).sum())
            warnings.warn(
                f"{missed} of {n_units} probes did not reach tol={self.tol} in "
                f"max_iter={self.max_iter} Newton iterations (see converged_); raise max_iter "
                f"or lower C.",
                RuntimeWarning,
                stacklevel=3,  # the caller of fit, past checked_arguments
            )
        return self

    def _fit_chunk(
        self, X: Float[Tensor, "unit example feature"], y: Float[Tensor, "unit example"]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Newton's method with backtracking on one chunk of units.

        Gradients, logits and objectives are float64; the Hessian, which only steers the step
        (the fixed point is set by the gradient), is accumulated in float32, 3x faster.
        """
        n_units, n_examples, n_features = X.shape
        columns = n_features + int(self.fit_intercept)
        design = torch.ones(n_units, n_examples, columns, dtype=torch.float64, device=X.device)
        features = design[..., :n_features]
        features.copy_(X)
        # centring is exact with an intercept; without one, the mean only enters the spread
        mean = features.mean(1, keepdim=True)
        if self.fit_intercept:
            features.sub_(mean)
        scale = torch.ones_like(mean)
        if self.standardize:  # population standard deviation, as StandardScaler
            spread = torch.linalg.vector_norm(features, dim=1, keepdim=True) / n_examples**0.5
            if not self.fit_intercept:
                spread = (spread.square() - mean.square()).clamp_min(0).sqrt()
            scale = torch.where(spread > 0, spread, torch.ones_like(spread))
            features.div_(scale)
        del features
        # penalty of the mean objective: ||w||² / (2 C n); the intercept column is free
        penalty = design.new_full((columns,), 1.0 / (self.C * n_examples))
        if self.fit_intercept:
            penalty[-1] = 0.0
        ridge = torch.diag_embed(penalty + 1e-12)

        beta = design.new_zeros(n_units, columns)
        iterations = torch.zeros(n_units, dtype=torch.int64)
        converged = torch.zeros(n_units, dtype=torch.bool)
        # the working set: units still moving, compacted whenever some stop
        units = torch.arange(n_units)
        work = _Working(design, design.float(), y.to(torch.float64), beta.clone())
        work.logits = design.new_zeros(n_units, n_examples)
        work.objective = _objective(work.logits, work.y, work.beta, penalty)
        work.scratch = torch.empty_like(work.design32)  # reused: no fresh pages per iteration
        for iteration in range(self.max_iter + 1):
            probability = torch.sigmoid(work.logits)
            residual = (probability - work.y)[:, None, :]  # a row: rᵀX is 3x faster than Xᵀr
            gradient = (residual @ work.design)[:, 0] / n_examples + penalty * work.beta
            largest = gradient.abs().amax(-1)
            done = largest <= self.tol
            converged[units[done]] = True
            if iteration == self.max_iter or bool(done.all()):
                break
            if bool(done.any()):
                beta[units[done]] = work.beta[done]
                units, work = units[~done], work.select(~done)
                gradient, probability, largest = gradient[~done], probability[~done], largest[~done]
            weight = (probability * (1 - probability) / n_examples).float()
            torch.mul(work.design32, weight[..., None], out=work.scratch[: len(units)])
            hessian = work.design32.mT @ work.scratch[: len(units)]
            factor, info = torch.linalg.cholesky_ex(hessian.double() + ridge)
            step = -torch.cholesky_solve(gradient[..., None], factor)[..., 0]
            step = torch.where((info == 0)[:, None], step, -gradient)  # safety: gradient step
            stuck = _line_search(work, step, (gradient * step).sum(-1), penalty)
            iterations[units] += 1
            if bool(stuck.any()):  # no decrease along a descent direction: float64's floor
                converged[units[stuck]] = largest[stuck] <= 100 * self.tol
                beta[units[stuck]] = work.beta[stuck]
                units, work = units[~stuck], work.select(~stuck)
                if len(units) == 0:
                    break
        beta[units] = work.beta

        weights = beta[:, :n_features] / scale[:, 0]  # back to the original features
        if self.fit_intercept:
            intercept = beta[:, -1] - (weights * mean[:, 0]).sum(-1)
        else:
            intercept = beta.new_zeros(n_units)
        return weights.cpu(), intercept.cpu(), iterations, converged

    # ------------------------------------------------------------- prediction
    def _check_fitted(self, what: str) -> None:
        if not self.is_fitted:
            raise InputError(
                f"This LinearProbes is not fitted yet. Call fit(X, y) before {what}()."
            )

    @checked_arguments
    def decision_function(
        self, X: Float[Tensor, "unit example feature"]
    ) -> Float[Tensor, "unit example"]:
        """Each unit's logit ``w · x + b`` on its own features [unit, example].

        Args:
            X: features [unit, example, feature], as many units and features as fitted.
        """
        self._check_fitted("decision_function")
        X = as_features(X, "decision_function()")
        n_units, n_features = self.coef_.shape
        if (X.shape[0], X.shape[2]) != (n_units, n_features):
            raise InputError(
                f"decision_function(): X has shape {tuple(X.shape)} [unit, example, feature] "
                f"but the probes were fitted on {n_units} units of {n_features} features."
            )
        dtype = torch.promote_types(X.dtype, torch.float32)
        coef = self.coef_.to(X.device, dtype)
        intercept = self.intercept_.to(X.device, dtype)
        return (X.to(dtype) @ coef[..., None])[..., 0] + intercept[:, None]

    @checked_arguments
    def predict_proba(
        self, X: Float[Tensor, "unit example feature"]
    ) -> Float[Tensor, "unit example"]:
        """Probability of class 1 for every unit and example [unit, example].

        (scikit-learn returns both columns; this is its ``[:, 1]``.)

        Args:
            X: features [unit, example, feature], as many units and features as fitted.
        """
        self._check_fitted("predict_proba")
        return torch.sigmoid(self.decision_function(X))

    @checked_arguments
    def predict(self, X: Float[Tensor, "unit example feature"]) -> Int[Tensor, "unit example"]:
        """Predicted class (0 or 1, int64) for every unit and example [unit, example].

        Args:
            X: features [unit, example, feature], as many units and features as fitted.
        """
        self._check_fitted("predict")
        return (self.decision_function(X) > 0).long()

    @checked_arguments
    def score(
        self,
        X: Float[Tensor, "unit example feature"],
        y: Int[Tensor, " example"] | Int[Tensor, "unit example"],
    ) -> Float[Tensor, " unit"]:
        """Accuracy of each unit's probe on (X, y): fractions in 0..1, shape [unit] (float64).

        Args:
            X: features [unit, example, feature], as many units and features as fitted.
            y: 0/1 labels [example], shared by all units, or [unit, example].
        """
        self._check_fitted("score")
        X = as_features(X, "score()")
        y = as_labels(y, X, "score()")
        correct = self.predict(X) == y.to(X.device).long()
        return correct.double().mean(-1).cpu()


def as_features(X: Any, where: str) -> Float[Tensor, "unit example feature"]:
    """``X`` as a finite float tensor [unit, example, feature], or an `InputError` saying why."""
    if isinstance(X, np.ndarray):
        X = torch.from_numpy(X)
    if not isinstance(X, Tensor):
        raise InputError(
            f"{where}: X must be a tensor [unit, example, feature], got {type(X).__name__}."
        )
    if X.ndim != 3:
        hint = " (one unit: pass X[None])" if X.ndim == 2 else ""
        raise InputError(
            f"{where}: X must have 3 dimensions [unit, example, feature], got shape "
            f"{tuple(X.shape)}{hint}."
        )
    if not X.dtype.is_floating_point:
        X = X.to(torch.float32)
    if X.numel() == 0:
        raise InputError(f"{where}: X is empty (shape {tuple(X.shape)}).")
    if not is_finite(X):
        finite = torch.isfinite(X)
        unit, example, feature = (int(i) for i in (~finite).nonzero()[0])
        raise InputError(
            f"{where}: X holds {int((~finite).sum())} NaN or infinite values (first at unit "
            f"{unit}, example {example}, feature {feature}). Drop or repair those examples."
        )
    return X


def is_finite(values: Tensor) -> bool:
    """Whether every entry is finite, in one reduction (NaN and ±inf propagate to the sum)."""
    total = values.sum(dtype=torch.promote_types(values.dtype, torch.float32))
    return bool(torch.isfinite(total)) or bool(
        torch.isfinite(values).all()  # the sum of huge finite values overflowed
    )


def as_labels(y: Any, X: Tensor, where: str) -> Float[Tensor, "unit example"]:
    """``y`` as 0./1. floats [1 or unit, example] matching ``X``, or an `InputError`."""
    if isinstance(y, (np.ndarray, list, tuple)):
        y = torch.as_tensor(np.asarray(y))
    if not isinstance(y, Tensor):
        raise InputError(
            f"{where}: y must be a tensor of 0/1 labels [example] or [unit, example], got "
            f"{type(y).__name__}."
        )
    n_units, n_examples = X.shape[:2]
    given = tuple(y.shape)
    if y.ndim == 1:
        y = y[None]
    if y.ndim != 2 or y.shape[1] != n_examples or y.shape[0] not in (1, n_units):
        raise InputError(
            f"{where}: y has shape {given} but X has shape {tuple(X.shape)} "
            f"[unit, example, feature]: y must be [{n_examples}] (labels shared by all units) "
            f"or [{n_units}, {n_examples}]."
        )
    y = y.to(X.device)
    if not bool(((y == 0) | (y == 1)).all()):
        bad = y[(y != 0) & (y != 1)]
        raise InputError(
            f"{where}: y must hold only 0 and 1 (or False/True); it holds "
            f"{sorted(set(bad.flatten().tolist()))[:5]}."
        )
    return y.to(torch.float64)


def _objective(
    logits: Float[Tensor, "unit example"],
    y: Float[Tensor, "unit example"],
    beta: Float[Tensor, "unit column"],
    penalty: Float[Tensor, " column"],
) -> Float[Tensor, " unit"]:
    """Mean log loss plus ``½ Σ penalty_j β_j²`` per unit (the summed objective / n)."""
    loss = torch.nn.functional.softplus(logits) - y * logits
    return loss.mean(-1) + 0.5 * (penalty * beta * beta).sum(-1)


class _Working:
    """The units of one chunk that are still moving: their design, labels and state."""

    def __init__(self, design: Tensor, design32: Tensor, y: Tensor, beta: Tensor) -> None:
        self.design, self.design32, self.y, self.beta = design, design32, y, beta
        self.logits = self.objective = self.scratch = torch.empty(0)

    def select(self, keep: Tensor) -> _Working:
        """The units where ``keep`` is true (copies; only when some units stop)."""
        chosen = _Working(self.design[keep], self.design32[keep], self.y[keep], self.beta[keep])
        chosen.logits, chosen.objective = self.logits[keep], self.objective[keep]
        chosen.scratch = self.scratch
        return chosen


def _line_search(work: _Working, step: Tensor, slope: Tensor, penalty: Tensor) -> Tensor:
    """Backtracking (Armijo) along ``step`` per unit; updates ``work``; True where it failed."""
    size = torch.ones_like(slope)
    pending = torch.ones_like(slope, dtype=torch.bool)
    rows = torch.arange(len(slope))
    design, y, beta = work.design, work.y, work.beta
    for _ in range(_HALVINGS):
        trial = beta + size[rows, None] * step[rows]
        logits = (design @ trial[..., None])[..., 0]
        objective = _objective(logits, y, trial, penalty)
        ok = objective <= work.objective[rows] + _ARMIJO * size[rows] * slope[rows]
        accepted = rows[ok]
        work.beta[accepted] = trial[ok]
        work.logits[accepted] = logits[ok]
        work.objective[accepted] = objective[ok]
        pending[accepted] = False
        rows = rows[~ok]
        if len(rows) == 0:
            break
        size[rows] /= 2
        design, y, beta = work.design[rows], work.y[rows], work.beta[rows]
    return pending
