"""Scoring every layer in one streaming pass: AVSS and its statistics, Block Influence, baselines.

For layer i with activations a_j (every scalar of every real token's activation at the chosen
site, N of them):

- variance σ²_i = (1/N) Σ_j (a_j − μ_i)², NAV_i = σ²_i / Σ_k σ²_k
- sparsity AS_i = (1/N) Σ_j 1(|a_j| < ε)
- AVSS_i = NAV_i / max(AS_i, floor); NAVSS_i = AVSS_i / Σ_k AVSS_k
- CAVSS_i = Σ of NAVSS over the layers whose AVSS is ≤ AVSS_i (cumulative share, in
  ascending AVSS order)
- Block Influence (ShortGPT) BI_i = mean over tokens of 1 − cos(h_in, h_out); the angular
  variant is the mean of arccos(cos(h_in, h_out)) / π.

Padding never counts. Higher always means more important; pruning removes the lowest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from circuitlab import sites
from circuitlab.checks import checked_arguments
from circuitlab.collector import EVERY_TOKEN, collect
from circuitlab.errors import InputError
from circuitlab.layers.scores import LayerScores
from circuitlab.model import ModelHandle
from circuitlab.readers import Cosine, Moments, Reader, TokenCount
from circuitlab.sites import Site
from circuitlab.statistics import CosineStatistics, MomentStatistics
from circuitlab.tokenization import TokenBatch, pad_rows, token_windows
from circuitlab.vocabulary import DEFAULT_EPSILON, SCORE_METHODS, SCORE_SITES

__all__ = [
    "DEFAULT_EPSILON",
    "DEFAULT_SPARSITY_FLOOR",
    "SCORE_METHODS",
    "SITES",
    "avss_scores",
    "drop_last_scores",
    "random_scores",
    "score_layers",
]

DEFAULT_SPARSITY_FLOOR = 1e-6
"""AVSS divides by ``max(sparsity, floor)``: a layer with no near-zero activation gets a large
but finite score instead of inf (and a note in the result)."""

SITES: dict[str, Callable[[int], Site]] = dict(
    zip(SCORE_SITES, (sites.resid_post, sites.attn_out, sites.mlp_out), strict=True)
)
"""The site of each name in `circuitlab.vocabulary.SCORE_SITES`, per layer: the block's output
(the paper's), or what its attention or MLP writes into the residual stream."""

_PASS_METHODS = {"avss", "block_influence", "angular_distance"}


@checked_arguments
def score_layers(
    model: ModelHandle,
    data: str | Sequence[str] | TokenBatch,
    methods: Sequence[str] = SCORE_METHODS,
    *,
    site: str = "block",
    epsilon: float = DEFAULT_EPSILON,
    sparsity_floor: float = DEFAULT_SPARSITY_FLOOR,
    window: int = 128,
    batch_size: int = 8,
    seed: int = 0,
    progress: bool | None = None,
) -> dict[str, LayerScores]:
    """Score every layer with each method; the data-driven ones share one forward pass per batch.

    Args:
        model: the model handle (interventions active on it apply).
        data: texts (each cut into windows of ``window`` tokens) or a tokenized `TokenBatch`.
        methods: any of `SCORE_METHODS`.
        site: activation AVSS measures: ``"block"`` (block output, default), ``"attn"`` or
            ``"mlp"`` (the branch outputs written into the residual stream).
        epsilon: sparsity threshold ε (absolute activation value), ≥ 0 and finite.
        sparsity_floor: smallest sparsity AVSS divides by (> 0).
        window: tokens per window of a text (the authors used 128).
        batch_size: windows per forward pass.
        seed: seed of the random ranking.
        progress: progress bar (default: shown once the call
            runs past 2 s; ``False`` never; see `circuitlab.progress`).

    Returns:
        ``{method: LayerScores}`` in the order asked.
    """
    methods = _check_methods(methods)
    _check_settings(site, epsilon, sparsity_floor, batch_size)
    settings: dict[str, Any] = {"site": site, "epsilon": epsilon, "window": window}
    results: dict[str, LayerScores] = {}
    if _PASS_METHODS & set(methods):
        windows = _windows(model, data, window)
        with_cosines = bool({"block_influence", "angular_distance"} & set(methods))
        moments, cosines, n_tokens = _stream(
            model,
            windows,
            site,
            epsilon,
            with_cosines=with_cosines,
            batch_size=batch_size,
            progress=progress,
        )
        settings["tokens"] = n_tokens
        if "avss" in methods:
            results["avss"] = _avss(model, moments, sparsity_floor, settings)
        if "block_influence" in methods:
            values = [stat.block_influence for stat in cosines]
            results["block_influence"] = LayerScores(
                "block_influence", values, settings=_cosine_settings(settings), model=model.name
            )
        if "angular_distance" in methods:
            values = [stat.angular_distance for stat in cosines]
            results["angular_distance"] = LayerScores(
                "angular_distance", values, settings=_cosine_settings(settings), model=model.name
            )
    if "random" in methods:
        results["random"] = random_scores(model.n_layers, seed=seed, model=model.name)
    if "drop_last" in methods:
        results["drop_last"] = drop_last_scores(model.n_layers, model=model.name)
    return {method: results[method] for method in methods}


def avss_scores(
    model: ModelHandle, data: str | Sequence[str] | TokenBatch, **options: Any
) -> LayerScores:
    """AVSS of every layer (`score_layers` with ``methods=("avss",)``; same options).

    Args:
        model: the model handle (interventions active on it apply).
        data: texts (cut into windows) or a tokenized `TokenBatch`.
        **options: the keyword arguments of `score_layers` (``site``, ``epsilon``, ...).
    """
    return score_layers(model, data, ("avss",), **options)["avss"]


def random_scores(n_layers: int, *, seed: int = 0, model: str = "") -> LayerScores:
    """A random ranking (a seeded permutation of 0 .. n_layers − 1): the chance baseline.

    Args:
        n_layers: number of layers of the model.
        seed: seed of the permutation.
        model: name of the model, kept with the scores.
    """
    values = np.random.default_rng(seed).permutation(n_layers).astype(float)
    return LayerScores("random", values, settings={"seed": seed}, model=model)


def drop_last_scores(n_layers: int, *, model: str = "") -> LayerScores:
    """The "drop the last layers" baseline: later layers score lower (value n_layers − 1 − i).

    Args:
        n_layers: number of layers of the model.
        model: name of the model, kept with the scores.
    """
    values = [float(n_layers - 1 - layer) for layer in range(n_layers)]
    return LayerScores("drop_last", values, model=model)


# ---------------------------------------------------------------------------- streaming pass
def _stream(
    model: ModelHandle,
    data: TokenBatch,
    site: str,
    epsilon: float,
    *,
    with_cosines: bool,
    batch_size: int,
    progress: bool | None,
) -> tuple[list[MomentStatistics], list[CosineStatistics], int]:
    """One collector pass over every real token: moments at ``site`` per layer, and the
    cosine between each block's input and output when ``with_cosines``."""
    readers: dict[str, Reader] = {"tokens": TokenCount()}
    for layer in range(model.n_layers):
        readers[f"moments {layer}"] = Moments(SITES[site](layer), epsilon)
        if with_cosines:
            readers[f"cosine {layer}"] = Cosine(sites.resid_pre(layer), sites.resid_post(layer))
    out = collect(
        model,
        data,
        readers,
        positions=EVERY_TOKEN,
        batch_size=batch_size,
        progress=progress,
        desc="scoring layers",
    )
    layers = range(model.n_layers)
    moments = [out[f"moments {layer}"] for layer in layers]
    cosines = [out[f"cosine {layer}"] for layer in layers] if with_cosines else []
    return moments, cosines, out["tokens"]


def _avss(
    model: ModelHandle,
    moments: list[MomentStatistics],
    sparsity_floor: float,
    settings: dict[str, Any],
) -> LayerScores:
    variance = np.array([stat.variance for stat in moments])
    sparsity = np.array([stat.sparsity for stat in moments])
    total_variance = variance.sum()
    if not total_variance > 0:
        raise InputError(
            "Every measured activation is constant (total variance 0), so AVSS is undefined. "
            "Score on more varied text, or another site."
        )
    nav = variance / total_variance
    guarded = np.maximum(sparsity, sparsity_floor)
    avss = nav / guarded
    navss = avss / avss.sum()
    order = np.argsort(avss, kind="stable")
    cavss = np.empty_like(navss)
    cavss[order] = np.cumsum(navss[order])
    notes = []
    floored = [layer for layer in range(len(moments)) if sparsity[layer] < sparsity_floor]
    if floored:
        notes.append(
            f"Layers {floored} have sparsity below the floor {sparsity_floor:g} at ε = "
            f"{settings['epsilon']:g} (no or almost no |a| < ε); AVSS divided by the floor "
            f"there. A larger ε makes their sparsity informative."
        )
    return LayerScores(
        "avss",
        avss,
        details={
            "variance": variance,
            "nav": nav,
            "sparsity": sparsity,
            "navss": navss,
            "cavss": cavss,
        },
        settings={**settings, "sparsity_floor": sparsity_floor},
        model=model.name,
        notes=tuple(notes),
    )


def _cosine_settings(settings: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in settings.items() if key not in ("site", "epsilon")}


# ----------------------------------------------------------------------------- input checks
def _windows(model: ModelHandle, data: str | Sequence[str] | TokenBatch, window: int) -> TokenBatch:
    """The data set as one right-padded batch of windows (a token batch is taken as it is)."""
    if isinstance(data, TokenBatch):
        if int(data.attention_mask.sum()) == 0:
            raise InputError(
                "The data set is all padding (its attention mask has no real token). "
                "Give it real text."
            )
        keep = data.lengths > 0
        if bool(keep.all()):
            return data
        return TokenBatch(data.input_ids[keep], data.attention_mask[keep])
    texts = [data] if isinstance(data, str) else list(data)
    if not texts:
        raise InputError("The data set is empty. Pass at least one text to score the layers on.")
    if window > model.arch.n_ctx:
        raise InputError(f"window = {window} exceeds the model's context of {model.arch.n_ctx}.")
    rows = token_windows(model.tokenizer, texts, prepend_bos=model.prepend_bos, window=window)
    if not rows:
        raise InputError(
            f"The data set's {len(texts)} text(s) have no tokens (empty strings?). Give it "
            f"real text."
        )
    return pad_rows(rows, model.pad_token_id)


def _check_methods(methods: Sequence[str]) -> list[str]:
    methods = [methods] if isinstance(methods, str) else list(methods)
    if not methods:
        raise InputError(f"No scoring method given. Choose from {', '.join(SCORE_METHODS)}.")
    unknown = [method for method in methods if method not in SCORE_METHODS]
    if unknown:
        hint = " (the ground truth needs evaluations: use ground_truth_scores)"
        raise InputError(
            f"Unknown layer scoring method(s) {unknown}. Choose from "
            f"{', '.join(SCORE_METHODS)}" + (hint if "ground_truth" in unknown else "") + "."
        )
    return list(dict.fromkeys(methods))


def _check_settings(site: str, epsilon: float, sparsity_floor: float, batch_size: int) -> None:
    if site not in SITES:
        raise InputError(f"Unknown site {site!r}. Choose one of {', '.join(SITES)}.")
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)):
        raise InputError(f"epsilon must be a number, got {epsilon!r}.")
    if not math.isfinite(epsilon) or epsilon < 0:
        raise InputError(
            f"epsilon = {epsilon} is not a valid sparsity threshold: it must be finite and "
            f">= 0 (the default is {DEFAULT_EPSILON})."
        )
    if not (math.isfinite(sparsity_floor) and sparsity_floor > 0):
        raise InputError(f"sparsity_floor must be finite and > 0, got {sparsity_floor}.")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}.")
