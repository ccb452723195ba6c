"""Shared fixtures: tiny random models (fast) and the two embedded real models (integration)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several test processes share the cores (pytest -n): one torch thread each, for them and
    # for the processes they launch. Two threads per process on two busy cores spin against
    # each other and run several times slower.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab.models import cached_model_dir, get_spec
from circuitlab.testing import TINY_ARCHITECTURES, tiny_hf_model

REAL_MODELS = ("smollm2-135m-instruct", "gemma3-270m")


@pytest.fixture(params=TINY_ARCHITECTURES)
def tiny_architecture(request: pytest.FixtureRequest) -> str:
    """Every tiny architecture, one test each."""
    return request.param


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    """A tiny random Llama saved as a plain Hugging Face folder (model and tokenizer)."""
    model, tokenizer = tiny_hf_model("llama")
    folder = tmp_path / "tiny-llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def real_handles() -> dict[str, circuitlab.ModelHandle]:
    """Loaded handles of the real models, one load per session each (built lazily)."""
    return {}


@pytest.fixture(scope="session")
def smollm2(real_handles: dict[str, circuitlab.ModelHandle]) -> circuitlab.ModelHandle:
    if "smollm2-135m-instruct" not in real_handles:
        real_handles["smollm2-135m-instruct"] = circuitlab.load("smollm2-135m-instruct")
    return real_handles["smollm2-135m-instruct"]


@pytest.fixture(scope="session")
def gemma3(real_handles: dict[str, circuitlab.ModelHandle]) -> circuitlab.ModelHandle:
    if "gemma3-270m" not in real_handles:
        real_handles["gemma3-270m"] = circuitlab.load("gemma3-270m")
    return real_handles["gemma3-270m"]


@pytest.fixture(params=["smollm2", "gemma3"])
def real(request: pytest.FixtureRequest) -> circuitlab.ModelHandle:
    """Each embedded real model in turn."""
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="session")
def plain_transformers_model() -> Callable[[str], torch.nn.Module]:
    """Factory of the ground truth: the same cached weights loaded by plain transformers."""

    def build(name: str) -> torch.nn.Module:
        folder = cached_model_dir(get_spec(name))
        return AutoModelForCausalLM.from_pretrained(
            folder, dtype=torch.float32, attn_implementation="eager"
        ).eval()

    return build
