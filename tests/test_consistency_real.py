"""Integration: consistency heads on the embedded models (probes against scikit-learn on real
head outputs, GQA head counts, an edit exported and answered by plain transformers)."""

from __future__ import annotations

from pathlib import Path

import einops
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import circuitlab
from circuitlab.consistency import (
    export_consistency_edit,
    load_paraphrase_task,
    locate_consistency_heads,
    plain_answers,
    read_paraphrases,
)
from circuitlab.probes import LinearProbes

pytestmark = pytest.mark.real_model


def test_locate_probe_and_export_on_the_embedded_model(
    real: circuitlab.ModelHandle, tmp_path: Path
) -> None:
    task = load_paraphrase_task("sentiment").balanced_sample(24, seed=0)
    locate_task, test_task = task.split_inputs(0.5, seed=0)
    task.check_label_words(real)

    # Every head's last-token output, one row per query head (Gemma 3 shares one KV head).
    answers, outputs = read_paraphrases(real, locate_task, locate_task.locate, heads=True)
    assert outputs is not None
    assert outputs.shape == (12, 6, real.n_layers, real.n_heads, real.d_head)
    labels = answers.consistent().reshape(-1).long()
    assert 0 < int(labels.sum()) < len(labels)  # both kinds of prompt exist

    # The batched probes score like scikit-learn's LogisticRegression on real features.
    features = einops.rearrange(outputs, "n p l h d -> (l h) (n p) d")
    units = [0, real.n_heads + 1, features.shape[0] // 2, features.shape[0] - 1]
    train, test = slice(0, 36), slice(36, None)  # first 6 inputs train, last 6 test
    probes = LinearProbes(C=1.0).fit(features[units, train], labels[train])
    ours = probes.score(features[units, test], labels[test])
    for unit, accuracy in zip(units, ours.tolist(), strict=True):
        reference = make_pipeline(  # LinearProbes standardizes the features by default
            StandardScaler(), LogisticRegression(C=1.0, max_iter=5000, tol=1e-8)
        )
        reference.fit(features[unit, train].double().numpy(), labels[train].numpy())
        expected = reference.score(features[unit, test].double().numpy(), labels[test].numpy())
        assert abs(accuracy - expected) <= 0.01, (unit, accuracy, expected)

    heads = locate_consistency_heads(real, locate_task, seed=0)
    assert heads.accuracy.shape == (real.n_layers, real.n_heads)
    assert heads.directions.shape == (real.n_layers, real.n_heads, real.d_head)
    assert bool(torch.isfinite(heads.directions).all())

    # The chosen edit, baked into the output biases, answers every held-out prompt alike.
    edits = heads.interventions(real, 5, 3.0)
    folder, edited = export_consistency_edit(real, edits, tmp_path / "edited", test_task)
    reloaded = plain_answers(folder, real, test_task, test_task.heldout)
    assert reloaded.shape == (12, 4)
    assert torch.equal(reloaded, edited.answers)
    base, _ = read_paraphrases(real, test_task, test_task.heldout)
    assert not torch.equal(base.logits, edited.logits)
