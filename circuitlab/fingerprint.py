"""Fingerprints: short hashes that tell one model, or one data set, from another.

Results and checkpoints record them, so that a result is never applied to, and a checkpoint
never resumed on, other weights or other data.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from circuitlab.model import ModelHandle

__all__ = ["data_fingerprint", "model_fingerprint"]

_SAMPLES_PER_TENSOR = 2048


def model_fingerprint(model: ModelHandle) -> str:
    """A short hash that tells one model's weights and tokenizer from another's.

    It hashes the architecture facts, the tokenizer's vocabulary size and special tokens, and
    an evenly spaced sample of every parameter rounded to bfloat16 (so the same weights in
    float32 and bfloat16 agree). Two different checkpoints, or a model with a trained LoRA
    adapter, get different fingerprints. Computing it reads every parameter once (~0.1 s).

    Args:
        model: The model.
    """
    digest = hashlib.sha256()
    card = model.model_card()
    facts = {key: card[key] for key in ("architecture", "n_layers", "n_heads", "d_model")}
    tokenizer = model.tokenizer
    facts["vocab"] = len(tokenizer)
    facts["special"] = sorted(str(token) for token in tokenizer.all_special_tokens)
    digest.update(json.dumps(facts, sort_keys=True).encode())
    with torch.no_grad():
        for name, parameter in sorted(model.hf_model.named_parameters()):
            flat = parameter.detach().reshape(-1)
            step = max(1, flat.numel() // _SAMPLES_PER_TENSOR)
            sample = flat[::step][:_SAMPLES_PER_TENSOR].to("cpu", torch.bfloat16)
            digest.update(name.encode())
            digest.update(sample.view(torch.int16).numpy().tobytes())
    return digest.hexdigest()[:16]


def data_fingerprint(data: Any) -> str:
    """A short hash of plain data (texts, labels, settings): equal data, equal fingerprint.

    ``data`` must be JSON-serialisable; dict keys are sorted first, so their order does not
    matter.

    Args:
        data: JSON-serialisable data (texts, labels, settings).
    """
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
