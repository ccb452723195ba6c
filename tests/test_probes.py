"""LinearProbes: batched logistic regression against scikit-learn, unit by unit, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from circuitlab.errors import InputError
from circuitlab.probes import LinearProbes


def learnable(units: int = 5, examples: int = 400, features: int = 16, seed: int = 0):
    """Features with unequal scales and offsets [unit, example, feature], noisy linear labels."""
    generator = torch.Generator().manual_seed(seed)
    rule = torch.randn(units, features, generator=generator) * 3 / features**0.5
    white = torch.randn(units, examples, features, generator=generator)
    noise = torch.rand(units, examples, generator=generator).clamp(1e-6, 1 - 1e-6)
    y = (torch.einsum("une,ue->un", white, rule) + torch.log(noise / (1 - noise)) > 0).long()
    scales = torch.rand(units, 1, features, generator=generator) * 3 + 0.1
    offsets = torch.randn(units, 1, features, generator=generator)
    return white * scales + offsets, y


def sklearn_fit(
    x: torch.Tensor, y: torch.Tensor, C: float, standardize: bool, fit_intercept: bool = True
):
    """scikit-learn's probe: its coefficients and intercept on the original features."""
    logistic = LogisticRegression(
        C=C, solver="newton-cholesky", tol=1e-10, max_iter=1000, fit_intercept=fit_intercept
    )
    scaler = StandardScaler(with_mean=fit_intercept)
    model = make_pipeline(scaler, logistic) if standardize else logistic
    model.fit(x.double().numpy(), y.numpy())
    coef, intercept = logistic.coef_[0], logistic.intercept_[0]
    if standardize:
        coef = coef / model[0].scale_
        intercept = intercept - (coef * model[0].mean_).sum() if fit_intercept else 0.0
    return model, coef, intercept


@pytest.mark.parametrize("C", [0.05, 1.0, 20.0])
@pytest.mark.parametrize("standardize", [True, False])
def test_matches_sklearn(C: float, standardize: bool) -> None:
    X, y = learnable(units=4, examples=600)
    train, test = slice(0, 400), slice(400, 600)
    probes = LinearProbes(C=C, standardize=standardize).fit(X[:, train], y[:, train])
    assert probes.converged_.all()
    accuracy = probes.score(X[:, test], y[:, test])
    for unit in range(len(X)):
        model, coef, intercept = sklearn_fit(X[unit, train], y[unit, train], C, standardize)
        scale = np.abs(coef).max()
        # coefficients agree to 1e-6 of the unit's largest weight (measured: ≤ 3e-7)
        np.testing.assert_allclose(probes.coef_[unit].numpy(), coef, rtol=0, atol=1e-6 * scale)
        assert abs(float(probes.intercept_[unit]) - intercept) <= 1e-5 * max(1, abs(intercept))
        theirs = model.score(X[unit, test].numpy(), y[unit, test].numpy())
        assert abs(float(accuracy[unit]) - theirs) <= 0.01
        probability = model.predict_proba(X[unit, test].double().numpy())[:, 1]
        ours = probes.predict_proba(X[:, test].double())[unit].numpy()
        np.testing.assert_allclose(ours, probability, atol=1e-6)


@pytest.mark.parametrize("standardize", [True, False])
def test_without_intercept_matches_sklearn(standardize: bool) -> None:
    X, y = learnable(units=2, examples=300)
    probes = LinearProbes(fit_intercept=False, standardize=standardize).fit(X, y)
    assert (probes.intercept_ == 0).all()
    for unit in range(2):
        _, coef, _ = sklearn_fit(X[unit], y[unit], 1.0, standardize, fit_intercept=False)
        scale = np.abs(coef).max()
        np.testing.assert_allclose(probes.coef_[unit].numpy(), coef, rtol=0, atol=1e-6 * scale)


def test_shared_and_per_unit_labels_and_outputs() -> None:
    X, y = learnable(units=3, examples=200)
    shared = LinearProbes().fit(X, y[0])
    per_unit = LinearProbes().fit(X, y[0].expand(3, -1).clone())
    torch.testing.assert_close(shared.coef_, per_unit.coef_)
    assert shared.coef_.shape == (3, 16) and shared.intercept_.shape == (3,)
    assert shared.n_iter_.shape == (3,) and shared.n_iter_.dtype == torch.int64
    assert shared.predict(X).shape == (3, 200) and set(shared.predict(X).unique().tolist()) <= {
        0,
        1,
    }
    assert shared.score(X, y[0]).shape == (3,)
    # bool labels and NumPy inputs are accepted
    from_numpy = LinearProbes().fit(X.numpy(), y[0].bool().numpy())
    torch.testing.assert_close(from_numpy.coef_, shared.coef_)


def test_units_are_independent() -> None:
    X, y = learnable(units=4, examples=300)
    together = LinearProbes().fit(X, y)
    for unit in range(4):
        alone = LinearProbes().fit(X[unit : unit + 1], y[unit : unit + 1])
        torch.testing.assert_close(alone.coef_[0], together.coef_[unit], rtol=1e-7, atol=1e-9)


def test_separable_data_converges() -> None:
    X = torch.randn(2, 100, 4, generator=torch.Generator().manual_seed(1))
    y = (X[..., 0] > 0).long()
    probes = LinearProbes(C=1e4).fit(X, y)
    assert probes.converged_.all()
    assert (probes.score(X, y) == 1).all()


def test_single_class_is_refused_with_counts() -> None:
    X, _ = learnable(units=2, examples=50)
    with pytest.raises(InputError, match=r"50 positive \(1\) and 0 negative.*nothing to probe"):
        LinearProbes().fit(X, torch.ones(50))
    y = torch.zeros(2, 50)
    y[0, :10] = 1
    y[1, 0] = 1
    with pytest.raises(InputError, match=r"labels of unit 1 hold 1 positive .* at least 2"):
        LinearProbes().fit(X, y)


def test_bad_input() -> None:
    X, y = learnable(units=2, examples=50)
    with pytest.raises(InputError, match=r"3 dimensions .*one unit: pass X\[None\]"):
        LinearProbes().fit(X[0], y[0])
    with pytest.raises(InputError, match=r"y has shape \(49,\).*must be \[50\]"):
        LinearProbes().fit(X, y[0, :49])
    with pytest.raises(InputError, match=r"y has shape \(3, 50\)"):
        LinearProbes().fit(X, y[0].expand(3, -1))
    with pytest.raises(InputError, match="only 0 and 1"):
        LinearProbes().fit(X, y[0] * 2)
    broken = X.clone()
    broken[1, 7, 3] = float("nan")
    with pytest.raises(
        InputError, match=r"1 NaN or infinite values .*unit 1, example 7, feature 3"
    ):
        LinearProbes().fit(broken, y[0])
    with pytest.raises(InputError, match="X must be a tensor"):
        LinearProbes().fit([[1.0]], y[0])
    with pytest.raises(InputError, match="C=0"):
        LinearProbes(C=0)
    with pytest.raises(InputError, match="max_iter must be a whole number"):
        LinearProbes(max_iter=2.5)
    with pytest.raises(InputError, match="takes"):
        LinearProbes(alpha=1.0)
    with pytest.raises(InputError, match=r"not fitted yet\. Call fit"):
        LinearProbes().predict(X)
    probes = LinearProbes().fit(X, y[0])
    with pytest.raises(InputError, match="fitted on 2 units of 16 features"):
        probes.score(X[:, :, :8], y[0])
    assert "2 units fitted" in repr(probes)
