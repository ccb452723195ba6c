"""Integration: shared-prefix forward passes and component reweighting on the real models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import circuitlab
from circuitlab import ComponentReweighting, InputError, label_contributions
from circuitlab.prefix import SharedPrefix, common_prefix_length
from circuitlab.reweighting import label_logits
from circuitlab.reweighting.study import draw_examples, split_pool_test

pytestmark = pytest.mark.real_model


def few_shot_prompts(task_name: str, k: int, n: int) -> tuple[circuitlab.ClassificationTask, list]:
    task = circuitlab.load_task(task_name)
    pool, test = split_pool_test(task, 24, seed=0)
    demos, train = draw_examples(pool, 24, 4, seed=0)
    demos += [(text, label) for text, label in zip(train.texts, train.labels, strict=True)]
    return task, [task.prompt(text, demos=demos[:k]) for text in test.texts[:n]]


def test_shared_prefix_attribution_is_exact(
    real: circuitlab.ModelHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    task, prompts = few_shot_prompts("sentiment", 4, 6)
    words = list(task.label_words)
    assert common_prefix_length(real.tokenize(prompts)) > 50
    shared = circuitlab.direct_logit_attribution(real, prompts, words, batch_size=3)
    monkeypatch.setattr(SharedPrefix, "_enabled", lambda self: False)
    full = circuitlab.direct_logit_attribution(real, prompts, words, batch_size=3)
    assert float((shared.values - full.values).abs().max()) <= 1e-4
    assert float((shared.logits - full.logits).abs().max()) <= 1e-4


def test_long_shared_prefix_matches_plain_transformers(
    real: circuitlab.ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    """24-shot topic prompts: longer than Gemma 3's 512-token sliding window."""
    task, prompts = few_shot_prompts("topic", 24, 2)
    lengths = real.tokenize(prompts).lengths
    assert int(lengths.min()) > 600
    got = label_logits(real, prompts, task.label_words, batch_size=2)
    reference = plain_transformers_model(real.name)
    ids = real.token_ids(task.label_words)
    for row, prompt in enumerate(prompts):
        tokens = real.tokenize(prompt).input_ids
        with torch.no_grad():
            expected = reference(tokens).logits[0, -1, ids]
        assert float((got[row] - expected).abs().max()) <= 1e-3


def test_shorter_shared_prefix_reuses_or_recomputes_the_cache(
    real: circuitlab.ModelHandle, plain_transformers_model: Callable[[str], torch.nn.Module]
) -> None:
    """A batch whose shared prefix is shorter than the cached one: the cache is cropped, or
    recomputed where it cannot be (Gemma 3's sliding-window layers past their window)."""
    _, prompts = few_shot_prompts("topic", 24, 3)
    shared = SharedPrefix(real)
    first = real.tokenize(prompts[:1])
    assert shared.split(first)[0] == int(first.lengths[0]) - 1  # the whole prompt but one
    batch = real.tokenize(prompts[1:])
    offset, kwargs = shared.split(batch)
    assert 600 < offset < int(first.lengths[0]) - 1
    # SmolLM2 crops the longer cache it holds; Gemma 3 recomputes the shorter prefix.
    cropped = real.arch.family != "gemma3"
    assert len(shared._ids) == (int(first.lengths[0]) - 1 if cropped else offset)
    with torch.no_grad():
        logits = real.bridge(
            batch.input_ids[:, offset:], attention_mask=batch.attention_mask, **kwargs
        )
    reference = plain_transformers_model(real.name)
    for row in range(len(batch)):
        last = int(batch.lengths[row]) - 1
        with torch.no_grad():
            expected = reference(batch.input_ids[row : row + 1, : last + 1]).logits[0, -1]
        assert float((logits[row, last - offset] - expected).abs().max()) <= 1e-3


def test_reweighting_beats_icl_on_sentiment(
    smollm2: circuitlab.ModelHandle, tmp_path: Path
) -> None:
    task = circuitlab.load_task("sentiment")
    pool, test = split_pool_test(task, 24, n_test=40, seed=0)
    demos, train = draw_examples(pool, 24, 4, seed=0)
    train_c = label_contributions(smollm2, train, demos=demos)
    test_c = label_contributions(smollm2, test, demos=demos)
    assert train_c.values.shape == (20, 1 + 30 * 10, 2)
    # the cached contributions plus the constant are the model's own label logits
    rw = ComponentReweighting().fit(train_c)
    assert rw.components_ == tuple(
        c for c in train_c.components if isinstance(c, circuitlab.Head | circuitlab.Mlp)
    )
    assert len(rw.components_) == 30 * 9 + 30
    icl = float((test_c.logits.argmax(-1) == test_c.labels).float().mean())
    assert rw.score(test_c) >= 0.85
    assert rw.score(test_c) >= icl
    path = rw.save(tmp_path / "rw.safetensors")
    loaded = ComponentReweighting.load(path)
    prompts = [task.prompt(text, demos=demos) for text in test.texts[:6]]
    assert torch.equal(
        loaded.predict_prompts(smollm2, prompts), rw.predict(test_c.subset(range(6)))
    )


def test_weights_refuse_the_other_real_model(
    smollm2: circuitlab.ModelHandle, gemma3: circuitlab.ModelHandle
) -> None:
    task = circuitlab.load_task("sentiment").subset(range(6))
    rw = ComponentReweighting(max_epochs=5).fit(label_contributions(smollm2, task))
    with pytest.raises(InputError, match="is not the model these weights were fitted on"):
        rw.predict_prompts(gemma3, ["Review: great\nSentiment:"])
