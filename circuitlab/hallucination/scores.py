"""Hallucination-prone layers: HSAV, HSS and EAVSS, and a probe baseline, in one streaming pass.

arXiv 2411.10069 names HSAV (hallucination-specific activation variance), HSS
(hallucination-specific sparsity) and EAVSS but does not publish their formulas. circuitlab
defines them from AVSS's statistics (`circuitlab.layers.scoring`), computed *separately* on the
answer tokens of hallucinated (h) and truthful (t) samples at each layer's site:

- σ²_g(ℓ): variance of every scalar activation of group g's answer tokens at layer ℓ;
  NAV_g(ℓ) = σ²_g(ℓ) / Σ_k σ²_g(k)
- AS_g(ℓ): fraction of those activations with |a| < ε
- **HSAV(ℓ)** = (σ²_h − σ²_t) / (σ²_h + σ²_t) ∈ [−1, 1]: how much more the layer's
  activations vary on hallucinated answers (a normalised contrast)
- **HSS(ℓ)** = (AS_t − AS_h) / (AS_t + AS_h) ∈ [−1, 1]: how much *less* sparse the layer is on
  hallucinated answers (signed like AVSS, which divides by sparsity)
- **EAVSS(ℓ)** = |log AVSS_h(ℓ) − log AVSS_t(ℓ)| with AVSS_g = NAV_g / max(AS_g, floor): how
  differently AVSS rates the layer on the two kinds of answer. Its signed value is in the
  details (``eavss_signed``: positive where hallucinated answers score higher).

Each score ranks the layers: a higher value is a more hallucination-prone layer. The ranking
methods are ``"eavss"``, ``"hsav"`` and ``"hss"`` (absolute values: a contrast in either
direction marks the layer), plus the baseline ``"probe"``: a logistic probe per layer on each
sample's mean answer-token activation, trained on some questions and scored (accuracy at
telling hallucinated from truthful) on the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from circuitlab.checks import check_number, checked_arguments
from circuitlab.collector import EVERY_TOKEN, collect
from circuitlab.errors import InputError
from circuitlab.hallucination.data import AnswerSet
from circuitlab.hallucination.result import HallucinationScores
from circuitlab.layers.scores import LayerScores
from circuitlab.layers.scoring import DEFAULT_SPARSITY_FLOOR, SITES
from circuitlab.model import ModelHandle
from circuitlab.readers import GroupMoments, Reader, SpanMean
from circuitlab.vocabulary import DEFAULT_EPSILON, HALLUCINATION_METHODS

__all__ = ["HALLUCINATION_METHODS", "answer_starts", "hallucination_scores"]


def answer_starts(model: ModelHandle, answers: AnswerSet) -> torch.Tensor:
    """The position of each sample's first answer token in ``prompt + answer`` [sample].

    Args:
        model: the model handle (its tokenizer counts the tokens).
        answers: the samples; every answer must add at least one token after its prompt.
    """
    prompt_lengths = model.tokenize(list(answers.prompts)).lengths.cpu()
    full_lengths = model.tokenize(answers.texts()).lengths.cpu()
    empty = (full_lengths <= prompt_lengths).nonzero().flatten().tolist()
    if empty:
        row = empty[0]
        raise InputError(
            f"Answer {row} ({answers.answers[row]!r}) adds no token after its prompt; drop "
            f"empty answers."
        )
    return prompt_lengths


@checked_arguments
def hallucination_scores(
    model: ModelHandle,
    answers: AnswerSet,
    *,
    site: str = "block",
    epsilon: float = DEFAULT_EPSILON,
    sparsity_floor: float = DEFAULT_SPARSITY_FLOOR,
    probe_fraction: float = 0.5,
    C: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
    progress: bool | None = None,
) -> HallucinationScores:
    """Score every layer for hallucination propensity (module docstring), in one pass.

    Args:
        model: the model handle.
        answers: truthful and hallucinated samples (both kinds needed).
        site: ``"block"`` (each block's output, the paper's), ``"attn"`` or ``"mlp"``.
        epsilon: the sparsity threshold ε.
        sparsity_floor: AVSS divides by at least this sparsity.
        probe_fraction: share of the questions whose samples train the probes.
        C: inverse L2 strength of the probes.
        seed: seed of the probes' question split.
        batch_size: samples per forward pass.
        progress: progress bar (default: shown once the call runs past 2 s).

    Returns:
        `HallucinationScores`: a `LayerScores` for every method in `HALLUCINATION_METHODS`
        (``result["eavss"]``), ``top(k, method)``, a table and a figure.
    """
    from circuitlab.probes import LinearProbes

    if site not in SITES:
        raise InputError(f"Unknown site {site!r}; choose one of {', '.join(SITES)}.")
    check_number("epsilon", epsilon, lambda v: v > 0, "a positive number, e.g. 0.05")
    check_number("probe_fraction", probe_fraction, lambda v: 0 < v < 1, "between 0 and 1")
    answers.check_contrast("scoring hallucination-prone layers")
    starts = answer_starts(model, answers)
    labels = answers.labels
    readers: dict[str, Reader] = {}
    for layer in range(model.n_layers):
        where = SITES[site](layer)
        readers[f"moments {layer}"] = GroupMoments(where, epsilon, labels, 2, start=starts)
        readers[f"pooled {layer}"] = SpanMean(where, starts)
    out = collect(
        model,
        answers.texts(),
        readers,
        positions=EVERY_TOKEN,
        batch_size=batch_size,
        progress=progress,
        desc="hallucination scores",
    )
    layers = range(model.n_layers)
    truthful = [out[f"moments {layer}"][0] for layer in layers]
    hallucinated = [out[f"moments {layer}"][1] for layer in layers]
    var_t = np.array([s.variance for s in truthful])
    var_h = np.array([s.variance for s in hallucinated])
    sp_t = np.array([s.sparsity for s in truthful])
    sp_h = np.array([s.sparsity for s in hallucinated])
    hsav = _contrast(var_h, var_t)
    hss = _contrast(sp_t, sp_h)
    avss_t = var_t / var_t.sum() / np.maximum(sp_t, sparsity_floor)
    avss_h = var_h / var_h.sum() / np.maximum(sp_h, sparsity_floor)
    signed = np.log(avss_h) - np.log(avss_t)

    features = torch.stack([out[f"pooled {layer}"] for layer in layers])  # [layer, sample, d]
    train_questions = set(
        answers.split_questions((probe_fraction, 1 - probe_fraction), seed=seed)[0]
    )
    in_train = torch.tensor([q in train_questions for q in answers.question])
    train_labels, test_labels = labels[in_train], labels[~in_train]
    if len(set(train_labels.tolist())) < 2 or len(set(test_labels.tolist())) < 2:
        raise InputError(
            "The probe split leaves one side with a single kind of answer; use more questions "
            "(with both truthful and hallucinated answers) or another probe_fraction."
        )
    probes = LinearProbes(C=C).fit(features[:, in_train], train_labels)
    probe_accuracy = probes.score(features[:, ~in_train], test_labels).numpy()

    settings: dict[str, Any] = {
        "site": site,
        "epsilon": epsilon,
        "samples": len(answers),
        "truthful": answers.counts()[0],
        "hallucinated": answers.counts()[1],
        "questions": len(answers.questions),
        "source": answers.source,
    }
    details = {
        "variance_truthful": var_t,
        "variance_hallucinated": var_h,
        "sparsity_truthful": sp_t,
        "sparsity_hallucinated": sp_h,
        "hsav_signed": hsav,
        "hss_signed": hss,
        "eavss_signed": signed,
    }
    chance = float(max(test_labels.float().mean(), 1 - test_labels.float().mean()))
    rankings = {
        "eavss": LayerScores("eavss", np.abs(signed), details, settings, model.name),
        "hsav": LayerScores("hsav", np.abs(hsav), details, settings, model.name),
        "hss": LayerScores("hss", np.abs(hss), details, settings, model.name),
        "probe": LayerScores(
            "probe",
            probe_accuracy,
            {"probe_train_accuracy": probes.score(features[:, in_train], train_labels).numpy()},
            {
                **settings,
                "probe_fraction": probe_fraction,
                "C": C,
                "seed": seed,
                "chance": chance,
            },
            model.name,
        ),
    }
    return HallucinationScores(rankings, model.name, {**settings, **rankings["probe"].settings})


def _contrast(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """(first − second) / (first + second), 0 where both are 0."""
    total = first + second
    return np.where(total > 0, (first - second) / np.where(total > 0, total, 1.0), 0.0)
