"""direction(): each method recovers a planted direction; batched equals per unit; bad input."""

from __future__ import annotations

import pytest
import torch

from circuitlab.directions import METHODS, Direction, direction
from circuitlab.errors import InputError

UNITS, EXAMPLES, D = 3, 400, 16


def planted(seed: int = 0, shift: float = 3.0):
    """Paired groups [unit, example, d] whose positives are shifted along a known unit vector.

    Pairs share a random base point (as paraphrase pairs share their input), the shift varies
    around ``shift`` pair by pair, and both groups get independent noise.
    """
    generator = torch.Generator().manual_seed(seed)
    planted = torch.randn(UNITS, D, generator=generator)
    planted = planted / planted.norm(dim=-1, keepdim=True)
    base = torch.randn(UNITS, EXAMPLES, D, generator=generator) * 2
    amount = shift + torch.randn(UNITS, EXAMPLES, 1, generator=generator) * 0.5
    negative = base + torch.randn(UNITS, EXAMPLES, D, generator=generator) * 0.5
    positive = (
        base
        + amount * planted[:, None]
        + torch.randn(UNITS, EXAMPLES, D, generator=generator) * 0.5
    )
    return positive, negative, planted


def cosine(found: Direction, planted: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(found.normalized, planted.double(), dim=-1)


@pytest.mark.parametrize("method", [m for m in METHODS if m != "random"])
def test_recovers_the_planted_direction(method: str) -> None:
    positive, negative, truth = planted()
    found = direction(positive, negative, method=method)
    assert found.vectors.shape == (UNITS, D) and found.scale.shape == (UNITS,)
    assert (cosine(found, truth) > 0.9).all(), cosine(found, truth)
    torch.testing.assert_close(found.vectors, found.scale[:, None] * found.normalized)
    torch.testing.assert_close(
        found.normalized.norm(dim=-1), torch.ones(UNITS, dtype=torch.float64)
    )


def test_scales_follow_the_definitions() -> None:
    positive, negative, _ = planted()
    every = torch.cat([positive, negative], dim=1).double()
    paper = direction(positive, negative, method="mean_difference")
    torch.testing.assert_close(paper.vectors, positive.double().mean(1) - every.mean(1))
    iti = direction(positive, negative, method="mass_mean")
    shift = positive.double().mean(1) - negative.double().mean(1)
    theta = shift / shift.norm(dim=-1, keepdim=True)
    sigma = torch.einsum("ued,ud->ue", every, theta).std(dim=1, correction=0)  # np.std, as ITI
    torch.testing.assert_close(iti.normalized, theta)
    torch.testing.assert_close(iti.scale, sigma)


def test_reference_all_equals_reference_negative() -> None:
    positive, negative, _ = planted()
    every = torch.cat([negative, positive], dim=1)
    for method in ("mean_difference", "mass_mean", "random"):
        disjoint = direction(positive, negative, method=method)
        union = direction(positive, every, method=method, reference_is="all")
        torch.testing.assert_close(union.vectors, disjoint.vectors)
    with pytest.raises(InputError, match="reference_is='all'"):
        direction(positive, every)  # the union passed as if it were the negatives
    with pytest.raises(InputError, match="'probe' method needs the negative examples"):
        direction(positive, every, method="probe", reference_is="all")


def test_random_is_seeded_and_a_control() -> None:
    positive, negative, truth = planted()
    first = direction(positive, negative, method="random", seed=3)
    assert first == direction(positive, negative, method="random", seed=3)
    assert first != direction(positive, negative, method="random", seed=4)
    assert (cosine(first, truth).abs() < 0.9).all()
    torch.testing.assert_close(
        first.normalized.norm(dim=-1), torch.ones(UNITS, dtype=torch.float64)
    )


@pytest.mark.parametrize("method", [m for m in METHODS if m != "random"])
def test_batched_equals_per_unit(method: str) -> None:
    positive, negative, _ = planted()
    batched = direction(positive, negative, method=method)
    for unit in range(UNITS):
        alone = direction(positive[unit], negative[unit], method=method)
        assert alone.vectors.shape == (D,) and alone.scale.shape == ()
        torch.testing.assert_close(alone.vectors, batched.vectors[unit], rtol=1e-6, atol=1e-9)
        torch.testing.assert_close(alone.scale, batched.scale[unit], rtol=1e-6, atol=1e-9)


def test_groups_of_different_sizes() -> None:
    positive, negative, truth = planted()
    found = direction(positive[0, :50], negative[0], method="mass_mean")
    assert found.vectors.shape == (D,)
    assert float(cosine(found, truth[0])) > 0.9


def test_pca_sign_points_to_positive() -> None:
    positive, negative, truth = planted()
    forward = direction(positive, negative, method="pca")
    backward = direction(negative, positive, method="pca")
    torch.testing.assert_close(forward.normalized, -backward.normalized)
    assert (cosine(forward, truth) > 0).all()


def test_bad_input() -> None:
    positive, negative, _ = planted()
    with pytest.raises(InputError, match=r"Unknown direction method 'mean'\. Use one of mean_diff"):
        direction(positive, negative, method="mean")
    with pytest.raises(InputError, match="positive group is empty"):
        direction(positive[:, :0], negative)
    with pytest.raises(InputError, match="same units and the same d"):
        direction(positive, negative[..., :8])
    with pytest.raises(InputError, match="same units and the same d"):
        direction(positive, negative[:2])
    broken = negative.clone()
    broken[0, 5, 1] = float("nan")
    with pytest.raises(InputError, match=r"reference holds 1 NaN .*\(0, 5, 1\)"):
        direction(positive, broken)
    with pytest.raises(InputError, match=r"takes paired examples .* 400 positive and 399"):
        direction(positive, negative[:, :399], method="pca")
    with pytest.raises(InputError, match="reference_is must be"):
        direction(positive, negative, reference_is="rest")
    with pytest.raises(InputError, match=r"\[example, d\] or \[unit, example, d\]"):
        direction(positive[0, 0], negative[0, 0])
    with pytest.raises(InputError, match="C=-1"):
        direction(positive, negative, method="probe", C=-1)
    with pytest.raises(InputError, match="seed must be a whole number"):
        direction(positive, negative, seed=0.5)


def test_steering_edits_at_head_and_residual_sites() -> None:
    from circuitlab import SteerHead, SteerResidual, sites
    from circuitlab.directions import steering_edits
    from circuitlab.testing import tiny_model
    from circuitlab.weights import output_projection

    model = tiny_model("llama")
    generator = torch.Generator().manual_seed(0)
    per_head = torch.randn(model.n_heads, model.d_head, generator=generator)
    edits = steering_edits(model, sites.z(1), per_head, 2.0, heads=[0, 3])
    w_o, _ = output_projection(model, 1)
    assert [type(edit) for edit in edits] == [SteerHead, SteerHead]
    assert [str(edit.head) for edit in edits] == ["L1H0", "L1H3"]
    torch.testing.assert_close(edits[1].vector, 2.0 * per_head[3] @ w_o[3])
    assert len(steering_edits(model, sites.z(0), per_head, 1.0)) == model.n_heads

    vector = torch.randn(model.d_model, generator=generator)
    (post,) = steering_edits(model, sites.resid_post(0), vector, -1.5)
    (pre,) = steering_edits(model, sites.resid_pre(1), vector, -1.5)
    assert isinstance(post, SteerResidual) and post.layer == pre.layer == 0
    torch.testing.assert_close(post.vector, -1.5 * vector)
    # the residual edit moves the residual stream by exactly alpha * vector
    prompt = "the cat sat"
    clean = model.run_with_cache(prompt, names=[sites.resid_post(0).hook_name])
    with model.intervene(post):
        steered = model.run_with_cache(prompt, names=[sites.resid_post(0).hook_name])
    name = sites.resid_post(0).hook_name
    torch.testing.assert_close(steered[1][name] - clean[1][name], (-1.5 * vector).expand_as(
        clean[1][name]), atol=1e-5, rtol=1e-4)  # fmt: skip

    with pytest.raises(InputError, match="resid_pre"):
        steering_edits(model, sites.resid_pre(0), vector, 1.0)
    with pytest.raises(InputError, match="z \\(head\\) and residual sites"):
        steering_edits(model, sites.mlp_out(0), vector, 1.0)
    with pytest.raises(InputError, match="one d_head vector per head"):
        steering_edits(model, sites.z(0), vector, 1.0)
    with pytest.raises(InputError, match="one d_model vector"):
        steering_edits(model, sites.resid_post(0), per_head, 1.0)
    with pytest.raises(InputError, match="heads= applies to z"):
        steering_edits(model, sites.resid_post(0), vector, 1.0, heads=[0])
    with pytest.raises(InputError, match="head 9"):
        steering_edits(model, sites.z(0), per_head, 1.0, heads=[9])
    with pytest.raises(InputError, match="alpha"):
        steering_edits(model, sites.z(0), per_head, float("nan"))
    with pytest.raises(InputError, match="layer 7"):
        steering_edits(model, sites.z(7), per_head, 1.0)
