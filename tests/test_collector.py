"""The streaming collector and its readers, against plain Hugging Face forward passes."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from circuitlab import sites
from circuitlab.collector import EVERY_TOKEN, CapturedBatch, collect, plan_batches
from circuitlab.errors import InputError
from circuitlab.interventions import Ablate
from circuitlab.model import ModelHandle
from circuitlab.readers import (
    Cosine,
    GroupMean,
    Keep,
    Logits,
    Mean,
    Moments,
    NextTokenLoss,
    TokenCount,
)
from circuitlab.statistics import CosineStatistics, MomentStatistics
from circuitlab.testing import tiny_hf_model

PROMPTS = [
    "the cat sat on the mat . the dog sat on the cat",
    "paris is the capital city of france",
    "no",
    "this movie was really good , a great film",
    "is the sky blue or green ? the sky is blue .",
    "a",
    "the dog",
]
DEMOS = "review : great film . positive . review : dull plot . negative . review : "


def handle_and_reference(architecture: str = "llama") -> tuple[ModelHandle, torch.nn.Module]:
    hf_model, tokenizer = tiny_hf_model(architecture)
    reference = copy.deepcopy(hf_model)
    return ModelHandle(hf_model, tokenizer, name=f"tiny-{architecture}"), reference


def alone(model: ModelHandle, reference: torch.nn.Module, prompt: str) -> tuple[list, torch.Tensor]:
    """Hidden states and logits of one prompt run alone through plain transformers."""
    ids = model.tokenize(prompt).input_ids
    with torch.no_grad():
        out = reference(input_ids=ids, output_hidden_states=True)
    return [h[0] for h in out.hidden_states], out.logits[0]


@pytest.fixture(scope="module")
def llama() -> tuple[ModelHandle, torch.nn.Module]:
    return handle_and_reference("llama")


# --------------------------------------------------------------------------- ground truth
@pytest.mark.parametrize("architecture", ["llama", "gemma3", "gpt2"])
def test_kept_activations_and_logits_equal_prompts_run_alone(architecture: str) -> None:
    model, reference = handle_and_reference(architecture)
    layer = 0  # hidden_states[layer + 1] is block `layer`'s output (the last one is normed)
    readers = {"resid": Keep(sites.resid_post(layer)), "logits": Logits()}
    out = collect(model, PROMPTS, readers, batch_size=3)
    for index, prompt in enumerate(PROMPTS):
        hidden, logits = alone(model, reference, prompt)
        torch.testing.assert_close(out["resid"][index], hidden[layer + 1][-1], atol=1e-5, rtol=0)
        torch.testing.assert_close(out["logits"][index], logits[-1], atol=1e-5, rtol=0)


def test_chosen_positions_and_every_token(llama: tuple[ModelHandle, torch.nn.Module]) -> None:
    model, reference = llama
    lengths = [len(model.tokenize(p).row(0)) for p in PROMPTS]
    chosen = [min(1, n - 1) for n in lengths]
    kept = collect(model, PROMPTS, {"k": Keep(sites.resid_pre(1))}, positions=chosen)["k"]
    first = collect(model, PROMPTS, {"k": Keep(sites.resid_pre(1))}, positions=-len("x"))["k"]
    every = collect(model, PROMPTS, {"k": Keep(sites.resid_pre(1))}, positions=EVERY_TOKEN)["k"]
    assert every.lengths.tolist() == lengths
    for index, prompt in enumerate(PROMPTS):
        hidden, _ = alone(model, reference, prompt)
        torch.testing.assert_close(kept[index], hidden[1][chosen[index]], atol=1e-5, rtol=0)
        torch.testing.assert_close(first[index], hidden[1][-1], atol=1e-5, rtol=0)
        real = every.values[index, : lengths[index]]
        torch.testing.assert_close(real, hidden[1], atol=1e-5, rtol=0)


def test_means_moments_cosines_and_counts_over_every_real_token(
    llama: tuple[ModelHandle, torch.nn.Module],
) -> None:
    model, reference = llama
    hidden = [alone(model, reference, prompt)[0] for prompt in PROMPTS]
    block_in = torch.cat([h[0] for h in hidden]).double()  # [tokens, d_model]
    block_out = torch.cat([h[1] for h in hidden]).double()
    groups = [0, 1, 0, 2, 1, 2, 0]
    readers = {
        "mean": Mean(sites.resid_post(0)),
        "groups": GroupMean(sites.resid_post(0), groups),
        "moments": Moments(sites.resid_post(0), epsilon=0.05),
        "cosine": Cosine(sites.resid_pre(0), sites.resid_post(0)),
        "tokens": TokenCount(),
    }
    out = collect(model, PROMPTS, readers, positions=EVERY_TOKEN, batch_size=2)
    torch.testing.assert_close(out["mean"], block_out.mean(dim=0), atol=1e-6, rtol=0)
    for group in range(3):
        members = torch.cat([hidden[i][1] for i, g in enumerate(groups) if g == group]).double()
        torch.testing.assert_close(out["groups"][group], members.mean(dim=0), atol=1e-6, rtol=0)
    assert out["tokens"] == block_out.shape[0]
    values = block_out.flatten()
    assert math.isclose(out["moments"].variance, float(values.var(unbiased=False)), rel_tol=1e-6)
    assert out["moments"].sparsity == pytest.approx(float((values.abs() < 0.05).double().mean()))
    cosine = torch.nn.functional.cosine_similarity(block_in, block_out, dim=-1)
    assert out["cosine"].block_influence == pytest.approx(float((1 - cosine).mean()), rel=1e-6)


def test_next_token_loss_equals_the_cross_entropy_of_each_prompt(
    llama: tuple[ModelHandle, torch.nn.Module],
) -> None:
    model, reference = llama
    nll, count = collect(model, PROMPTS, {"loss": NextTokenLoss()}, positions=EVERY_TOKEN)["loss"]
    expected, tokens = 0.0, 0
    for prompt in PROMPTS:
        ids = model.tokenize(prompt).input_ids
        _, logits = alone(model, reference, prompt)
        loss = torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="sum")
        expected, tokens = expected + float(loss), tokens + ids.shape[1] - 1
    assert count == tokens
    assert nll == pytest.approx(expected, rel=1e-5)


# ------------------------------------------------------------------ order, batching, shards
def test_results_come_back_in_data_order_whatever_the_batching(
    llama: tuple[ModelHandle, torch.nn.Module],
) -> None:
    model, _ = llama
    runs = [
        collect(model, PROMPTS, {"z": Keep(sites.z(1)), "l": Logits([5, 9])}, **options)
        for options in ({"batch_size": 1}, {"batch_size": 3}, {"batch_size": 3, "sort": False})
    ]
    for run in runs[1:]:
        torch.testing.assert_close(run["z"], runs[0]["z"], atol=1e-5, rtol=0)
        torch.testing.assert_close(run["l"], runs[0]["l"], atol=1e-5, rtol=0)
    assert runs[0]["l"].shape == (len(PROMPTS), 2)


def test_plans_sort_by_length_trim_padding_and_shard(
    llama: tuple[ModelHandle, torch.nn.Module],
) -> None:
    model, _ = llama
    plan = plan_batches(model, PROMPTS, batch_size=3)
    widths = [batch.tokens.input_ids.shape[1] for batch in plan]
    assert widths == sorted(widths)
    assert all(int(b.tokens.lengths.max()) == b.tokens.input_ids.shape[1] for b in plan)
    assert sorted(torch.cat([b.rows for b in plan]).tolist()) == list(range(len(PROMPTS)))
    equal = plan_batches(model, PROMPTS * 2, batch_size=8, equal_lengths=True)
    assert all(len(set(b.tokens.lengths.tolist())) == 1 for b in equal)
    shards = [plan_batches(model, PROMPTS, batch_size=2, shard=(i, 2)) for i in range(2)]
    rows = sorted(torch.cat([b.rows for shard in shards for b in shard]).tolist())
    assert rows == list(range(len(PROMPTS)))


def _readers() -> dict:
    return {
        "keep": Keep(sites.mlp_out(1)),
        "mean": Mean(sites.attn_out(0)),
        "groups": GroupMean(sites.resid_post(1), [0, 1, 1, 0, 0, 1, 1]),
        "moments": Moments(sites.resid_post(1), epsilon=0.1),
        "cosine": Cosine(sites.resid_pre(1), sites.resid_post(1)),
        "tokens": TokenCount(),
        "loss": NextTokenLoss(),
    }


def test_readers_of_shards_merge_into_the_readers_of_the_whole(
    llama: tuple[ModelHandle, torch.nn.Module],
) -> None:
    """What two processes would each collect merges into the single-process result."""
    model, _ = llama
    whole = _readers()
    collect(model, PROMPTS, whole, positions=EVERY_TOKEN, batch_size=2)
    first, second = _readers(), _readers()
    collect(model, PROMPTS, first, positions=EVERY_TOKEN, batch_size=2, shard=(0, 2))
    collect(model, PROMPTS, second, positions=EVERY_TOKEN, batch_size=2, shard=(1, 2))
    for name, reader in first.items():
        reader.merge(second[name])
    merged = {name: reader.result() for name, reader in first.items()}
    expected = {name: reader.result() for name, reader in whole.items()}
    torch.testing.assert_close(merged["keep"].values, expected["keep"].values)
    assert torch.equal(merged["keep"].lengths, expected["keep"].lengths)
    torch.testing.assert_close(merged["mean"], expected["mean"], atol=1e-12, rtol=0)
    torch.testing.assert_close(merged["groups"], expected["groups"], atol=1e-12, rtol=0)
    for name in ("moments", "cosine"):
        assert isinstance(merged[name], (MomentStatistics, CosineStatistics))
        assert merged[name].count == expected[name].count
    assert merged["moments"].variance == pytest.approx(expected["moments"].variance, rel=1e-12)
    assert merged["moments"].near_zero == expected["moments"].near_zero
    assert merged["cosine"].angular_distance == pytest.approx(
        expected["cosine"].angular_distance, rel=1e-12
    )
    assert merged["tokens"] == expected["tokens"]
    assert merged["loss"][1] == expected["loss"][1]
    assert merged["loss"][0] == pytest.approx(expected["loss"][0], rel=1e-12)


def test_moment_merge_is_exact_where_naive_sums_cancel() -> None:
    values = torch.randn(10_000, dtype=torch.float64) * 1e-3 + 1e6
    whole, first, second = MomentStatistics(0.5), MomentStatistics(0.5), MomentStatistics(0.5)
    whole.update(values[:, None])
    first.update(values[:3000, None])
    second.update(values[3000:, None])
    first.merge(second)
    assert first.variance == pytest.approx(float(values.var(unbiased=False)), rel=1e-9)
    assert first.variance == pytest.approx(whole.variance, rel=1e-9)
    with pytest.raises(ValueError, match="ε"):
        first.merge(MomentStatistics(0.1))


# ------------------------------------------------------------ prefix, interventions, grad
def test_a_shared_prefix_runs_once_and_changes_nothing(
    llama: tuple[ModelHandle, torch.nn.Module],
) -> None:
    model, _ = llama
    prompts = [DEMOS + p for p in PROMPTS]
    seen: list[int] = []

    def count(activation: torch.Tensor, hook: object) -> None:
        seen.append(activation.shape[0] * activation.shape[1])

    readers = lambda: {"z": Keep(sites.z(1)), "logits": Logits()}  # noqa: E731
    with model.hooks([(sites.resid_pre(0), count)]):
        shared = collect(model, prompts, readers(), batch_size=4)
        shared_tokens, seen[:] = sum(seen), []
        full = collect(model, prompts, readers(), batch_size=4, share_prefix=False)
        full_tokens, seen[:] = sum(seen), []
        collect(model, prompts, readers(), batch_size=4, grad=True)  # gradients: whole prompts
        grad_tokens = sum(seen)
    assert shared_tokens < full_tokens / 2
    assert grad_tokens == full_tokens
    torch.testing.assert_close(shared["z"], full["z"], atol=1e-5, rtol=0)
    torch.testing.assert_close(shared["logits"], full["logits"], atol=1e-5, rtol=0)


def test_interventions_in_force_apply_to_the_collected_activations(
    llama: tuple[ModelHandle, torch.nn.Module],
) -> None:
    model, _ = llama
    with model.intervene(Ablate("L1H0")):
        inside = collect(model, PROMPTS, {"z": Keep(sites.z(1))})["z"]
    outside = collect(model, PROMPTS, {"z": Keep(sites.z(1))})["z"]
    assert torch.count_nonzero(inside[:, 0]) == 0
    assert torch.count_nonzero(outside[:, 0]) > 0
    torch.testing.assert_close(inside[:, 1:], outside[:, 1:])


def test_grad_keeps_the_graph_and_no_grad_does_not(
    llama: tuple[ModelHandle, torch.nn.Module],
) -> None:
    model, _ = llama
    weight = model.hf_model.lm_head.weight
    weight.requires_grad_(True)
    weight.grad = None
    logits = collect(model, PROMPTS, {"l": Logits([3])}, grad=True)["l"]
    logits.sum().backward()
    assert weight.grad is not None and torch.count_nonzero(weight.grad[3]) > 0
    assert not collect(model, PROMPTS, {"l": Logits([3])})["l"].requires_grad
    weight.grad = None


# ----------------------------------------------------------------------------- bad input
def test_bad_input_gets_clear_errors(llama: tuple[ModelHandle, torch.nn.Module]) -> None:
    model, _ = llama
    with pytest.raises(InputError, match="dict of named readers"):
        collect(model, PROMPTS, {})
    with pytest.raises(InputError, match="dict of named readers"):
        collect(model, PROMPTS, [Logits()])  # type: ignore[arg-type]
    with pytest.raises(InputError, match="token ids in 0"):
        collect(model, PROMPTS, {"l": Logits([10**6])})
    with pytest.raises(InputError, match="No prompts"):
        collect(model, [], {"l": Logits()})
    with pytest.raises(InputError, match="Unknown positions"):
        collect(model, PROMPTS, {"l": Logits()}, positions="every")
    with pytest.raises(InputError, match="out of range"):
        collect(model, PROMPTS, {"l": Logits()}, positions=40)
    with pytest.raises(InputError, match="batch_size"):
        collect(model, PROMPTS, {"l": Logits()}, batch_size=0)
    with pytest.raises(InputError, match="shard"):
        collect(model, PROMPTS, {"l": Logits()}, shard=(2, 2))
    with pytest.raises(InputError, match="shard must be"):
        collect(model, PROMPTS, {"l": Logits()}, shard=(0,))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="one group index per prompt"):
        collect(model, PROMPTS, {"g": GroupMean(sites.resid_post(0), [0, 1])})
    with pytest.raises(InputError, match="positions='all'"):
        collect(model, PROMPTS, {"loss": NextTokenLoss()})
    batch = model.tokenize(PROMPTS)
    empty = type(batch)(batch.input_ids, batch.attention_mask * 0)
    with pytest.raises(InputError, match="all padding"):
        collect(model, empty, {"l": Logits()})
    with pytest.raises(InputError, match="Unknown hook name"):
        collect(model, PROMPTS, {"k": Keep("blocks.0.hook_nothing")})
    with pytest.raises(InputError, match="Cannot merge"):
        Mean(sites.z(0)).merge(TokenCount())


def test_captured_batches_explain_themselves(llama: tuple[ModelHandle, torch.nn.Module]) -> None:
    model, _ = llama
    seen: list[CapturedBatch] = []

    class Spy(TokenCount):
        def update(self, batch: CapturedBatch) -> None:
            seen.append(batch)
            super().update(batch)

    collect(model, PROMPTS[:3], {"spy": Spy()}, positions=EVERY_TOKEN, batch_size=8)
    (batch,) = seen
    assert batch.every_token and batch.n_read == int(batch.tokens.attention_mask.sum())
    assert batch.read_rows().shape == (batch.n_read,)
    seen.clear()
    collect(model, PROMPTS[:3], {"spy": Spy()}, batch_size=8)
    with pytest.raises(InputError, match="positions='all'"):
        seen[0].real(sites.resid_post(0))
