"""The KV-cache guard: a cached continuation equals the uncached forward, on every architecture.

Whatever transformers release is installed (the suite runs on the newest and on the declared
lower bounds), these fail if a cache is passed but not used. A cache the installed libraries
ignore is reported as an `IncompatibleVersionError` naming the versions.
"""

from __future__ import annotations

import importlib.metadata
import warnings

import pytest
import torch
from packaging.version import Version

from circuitlab import PruneHeads, Scale, hf_compat
from circuitlab.errors import IncompatibleVersionError
from circuitlab.model import ModelHandle
from circuitlab.testing import tiny_hf_model, tiny_model

TOKENS = torch.tensor([[5, 9, 14, 7, 22, 31, 11, 40, 8, 17], [12, 6, 33, 19, 25, 9, 28, 4, 15, 36]])


def _uncached(model: ModelHandle, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.bridge(ids)


def _cached(model: ModelHandle, ids: torch.Tensor, chunks: list[int]) -> torch.Tensor:
    """Logits of ``ids`` fed through one cache in chunks of the given sizes."""
    cache = model.new_kv_cache()
    pieces, start = [], 0
    with torch.no_grad():
        for size in chunks:
            pieces.append(model.forward_with_kv_cache(ids[:, start : start + size], cache))
            start += size
    assert hf_compat.kv_cache_length(cache) == ids.shape[1]
    return torch.cat(pieces, dim=1)


@pytest.mark.parametrize("chunks", [[6, 1, 1, 1, 1], [3, 4, 3], [1] * 10])
def test_cached_continuation_equals_the_uncached_forward(
    tiny_architecture: str, chunks: list[int]
) -> None:
    model = tiny_model(tiny_architecture)
    torch.testing.assert_close(
        _cached(model, TOKENS, chunks), _uncached(model, TOKENS), atol=1e-5, rtol=0
    )


def test_cached_continuation_equals_the_uncached_forward_under_interventions(
    tiny_architecture: str,
) -> None:
    """Edits see the absolute position of cached steps (position filters count from 0)."""
    model = tiny_model(tiny_architecture)
    edits = [Scale("MLP1", 0.3, positions=8), PruneHeads(["L0H1"])]
    with model.intervene(*edits):
        expected = _uncached(model, TOKENS)
        torch.testing.assert_close(_cached(model, TOKENS, [7, 1, 2]), expected, atol=1e-5, rtol=0)
    assert not torch.allclose(expected, _uncached(model, TOKENS), atol=1e-3)


def test_the_cache_goes_in_under_the_installed_transformers_keyword() -> None:
    model = tiny_model("llama")
    installed = Version(importlib.metadata.version("transformers"))
    expected = "cache" if installed >= Version("5.24") else "past_key_values"
    assert hf_compat.kv_cache_keyword(model.hf_model) == expected
    model.new_kv_cache()
    assert model._kv_cache_verdict == "ok"


def test_the_probe_waits_until_no_hooks_are_attached() -> None:
    model = tiny_model("llama")
    with model.intervene(PruneHeads(["L0H1"])):
        assert hf_compat.bridge_has_hooks(model.bridge)
        model.generate_ids("the cat sat", max_new_tokens=2)
        assert model._kv_cache_verdict is None  # deferred: hooks could tell the passes apart
    assert not hf_compat.bridge_has_hooks(model.bridge)
    model.generate_ids("the cat sat", max_new_tokens=2)
    assert model._kv_cache_verdict == "ok"


def test_cached_passes_use_no_deprecated_keyword(tiny_architecture: str) -> None:
    """A rename upstream shows first as a deprecation warning: fail on it, before it breaks."""
    model = tiny_model(tiny_architecture)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        model.generate_ids("the cat sat", max_new_tokens=3)


def test_an_ignored_cache_is_a_clear_error_naming_the_versions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The failure transformers 5.24 caused: a cache under a name the model silently ignores."""
    model = tiny_model("llama")
    monkeypatch.setattr(hf_compat, "kv_cache_keyword", lambda hf_model: "not_a_cache_keyword")
    cache = hf_compat.new_kv_cache(model.hf_model)  # past the probe: the per-pass check
    with pytest.raises(IncompatibleVersionError, match="KV cache was not used") as caught:
        model.forward_with_kv_cache(TOKENS[:, :4], cache)
    version = importlib.metadata.version("transformers")
    assert f"transformers {version}" in str(caught.value)
    assert "docs/installation.md" in str(caught.value)

    # The probe before the first cache finds it too, and cached work then refuses to run.
    hf_model, tokenizer = tiny_hf_model("llama")
    broken = ModelHandle(hf_model, tokenizer, name="broken")
    broken.logits("the cat sat")  # uncached work is unaffected
    for _ in range(2):
        with pytest.raises(IncompatibleVersionError, match="KV cache was not used"):
            broken.generate("the cat sat", max_new_tokens=2)
    assert "KV cache was not used" in broken._kv_cache_verdict


def test_the_probe_reports_cached_logits_that_differ_from_the_full_pass() -> None:
    """A cache that is extended but computes other numbers is caught by the probe."""
    model = tiny_model("qwen2")

    def skewed_bridge(ids: torch.Tensor, **kwargs: object) -> torch.Tensor:
        logits = model.bridge(ids, **kwargs)
        cache = hf_compat.kv_cache_in(kwargs)
        return logits + 1.0 if cache is not None and ids.shape[1] == 1 else logits

    problem = hf_compat.probe_kv_cache(skewed_bridge, model.hf_model)
    assert problem is not None and "differs from the uncached forward pass" in problem
    assert hf_compat.probe_kv_cache(model.bridge, model.hf_model) is None


def test_a_cache_is_cropped_where_it_can_be(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    cache = model.new_kv_cache()
    with torch.no_grad():
        model.forward_with_kv_cache(TOKENS, cache)
    # Gemma 3's sliding-window layers (window 4) have dropped early tokens: no crop to 6.
    croppable = tiny_architecture != "gemma3"
    assert hf_compat.crop_kv_cache(cache, 6) == croppable
    if croppable:  # the cropped cache continues exactly like a fresh one
        with torch.no_grad():
            rest = model.forward_with_kv_cache(TOKENS[:, 6:], cache)
        torch.testing.assert_close(rest, _uncached(model, TOKENS)[:, 6:], atol=1e-5, rtol=0)
    assert not hf_compat.crop_kv_cache(model.new_kv_cache(), 3)  # nothing to crop back to
