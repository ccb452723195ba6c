"""ILA's two stages on the shared trainer, and the instruction loss both stages minimise.

Stage 1 (`fit_lora`): a LoRA adapter on every layer (or on chosen layers, for selective
fine-tuning) trained on instruction data with AdamW until the training loss is ε-stable
(`circuitlab.training.Stopping`: the mean loss of the last ``window`` steps is within ε of the
mean of the ``window`` steps before, relatively) or a step budget runs out.

Stage 2 (`fit_gates`): the adapter is frozen and one score s per layer (or per LoRA matrix)
learns γ = σ(s) in W = W₀ + γ·ΔW (`circuitlab.ila.LoraGates`), minimising the instruction loss
under one of two constraints on γ (the paper's exact regulariser is not public):

- a budget ρ (default 0.25): instruction loss + λ·(mean(γ) − ρ)². The gates start at γ = ρ,
  where the model sits between the base model and the fully adapted one and the loss is
  sensitive to every gate; the penalty holds the total fixed, so the layers compete for it and
  the ones whose update lowers the loss most end highest. This is the default because it
  separates the layers within a few dozen steps;
- a sparsity penalty (``budget=None``): instruction loss + λ·mean(γ), the L1 norm of γ over the
  number of gates (γ > 0); every γ is pushed down and kept up only as far as the loss needs it.

Layers are ranked by their final γ. Stage 2 trains ``n_gates`` numbers instead of the adapter's
weights, for a fixed few steps (20 by default; stage 1 takes at least 2 × window = 40): a
fraction of stage 1's cost (``benchmarks/ila_speed.py``). A step costs about the same in both
stages, since both backpropagate through the whole model.

The instruction loss is the mean negative log-likelihood (nats) per response token (responses
and their EOS; the prompt is context, never scored), over the batch's tokens.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab.checks import check_integer, check_number
from circuitlab.collector import collect
from circuitlab.fingerprint import model_fingerprint
from circuitlab.ila.data import EncodedInstructions, InstructionSet, encode_instructions
from circuitlab.ila.gates import LoraGates
from circuitlab.lora import LoraAdapter, add_lora, check_lora_layers
from circuitlab.model import ModelHandle
from circuitlab.readers import NextTokenLoss
from circuitlab.tokenization import TokenBatch
from circuitlab.training import Step, Stopping, TrainingHistory, shuffled_batches, train

__all__ = [
    "GateFit",
    "LoraFit",
    "fit_gates",
    "fit_lora",
    "instruction_loss",
    "response_loss",
]


def response_loss(
    model: ModelHandle, batch: TokenBatch, starts: Sequence[int]
) -> Float[Tensor, ""]:
    """Mean NLL (nats) per response token of a batch, with the autograd graph.

    Args:
        model: the model handle (with any adapter or gates on it).
        batch: right-padded sequences (prompt, response, EOS).
        starts: each sequence's first response position.
    """
    logits = model.logits(batch, grad=True)  # [batch, pos, vocab]
    targets = batch.input_ids[:, 1:].to(logits.device)
    target_position = torch.arange(1, targets.shape[1] + 1, device=logits.device)
    start = torch.as_tensor(list(starts), device=logits.device)
    scored = batch.attention_mask[:, 1:].to(logits.device).bool() & (
        target_position[None, :] >= start[:, None]
    )
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].float().flatten(0, 1), targets.flatten(), reduction="none"
    ).view_as(targets)
    return (losses * scored).sum() / scored.sum()


def instruction_loss(
    model: ModelHandle,
    data: InstructionSet | EncodedInstructions,
    *,
    batch_size: int = 8,
    progress: bool | None = None,
) -> float:
    """Mean NLL (nats) per response token over a whole set (e.g. its held-out split), in one
    streaming pass (`circuitlab.collector.collect`); interventions and adapters on the model
    apply.

    Args:
        model: the model handle.
        data: the pairs, or their tokens from `encode_instructions`.
        batch_size: sequences per forward pass.
        progress: progress bar (default: shown once the call runs past 2 s).
    """
    encoded = data if isinstance(data, EncodedInstructions) else encode_instructions(model, data)
    tokens, starts = encoded.batch(range(len(encoded)), model.pad_token_id)
    nll, count = collect(
        model,
        tokens,
        {"loss": NextTokenLoss(start=starts)},
        positions="all",
        batch_size=batch_size,
        progress=progress,
        desc="instruction loss",
    )["loss"]
    return nll / count


def _objective(model: ModelHandle, encoded: EncodedInstructions) -> Any:
    def objective(indices: list[int]) -> Step:
        batch, starts = encoded.batch(indices, model.pad_token_id)
        return Step(response_loss(model, batch, starts))

    return objective


@dataclass
class LoraFit:
    """A trained LoRA adapter (still on the model) and how its training went.

    Attributes:
        adapter: the adapter; ``adapter.save(folder)`` writes a plain peft adapter.
        history: the trainer's history (``history.steps``, ``history.step_losses``).
        layers: the adapted layers.
        settings: every setting of the run.
        seconds: wall time of the training (0 when a finished checkpoint was restored).
    """

    adapter: LoraAdapter
    history: TrainingHistory
    layers: tuple[int, ...]
    settings: dict[str, Any]
    seconds: float


def fit_lora(
    model: ModelHandle,
    data: InstructionSet,
    layers: Sequence[int] | None = None,
    *,
    modules: Sequence[str] | None = None,
    r: int = 8,
    alpha: float = 16.0,
    learning_rate: float = 1e-3,
    batch_size: int = 8,
    stable: float | None = 0.02,
    window: int = 20,
    max_steps: int = 300,
    seed: int = 0,
    max_length: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> LoraFit:
    """Stage 1 (or selective fine-tuning): train LoRA on ``layers`` with the instruction loss.

    Args:
        model: the model handle (the adapter is attached and stays on).
        data: the training pairs.
        layers: the layers that get adapters (default every layer: ILA's stage 1).
        modules: LoRA target modules (default every linear map of a layer).
        r: LoRA rank.
        alpha: LoRA scaling numerator.
        learning_rate: AdamW step size.
        batch_size: pairs per step.
        stable: ε of the stopping rule (None: run ``max_steps`` steps exactly, as the fixed
            budgets of a fair comparison need).
        window: w of the stopping rule, in steps.
        max_steps: the most optimiser steps.
        seed: seed of the adapter's initialisation and the batch order.
        max_length: longest sequence in tokens (default the model's context; longer responses
            are truncated with a warning).
        checkpoint: a file keeping the training state after every epoch; rerunning with it
            resumes a killed run, and a finished one is restored at once.
    """
    check_integer("max_steps", max_steps, minimum=1)
    check_integer("batch_size", batch_size, minimum=1)
    layer_list = check_lora_layers(
        range(model.n_layers) if layers is None else layers, model.n_layers
    )
    encoded = encode_instructions(model, data, max_length=max_length)
    batches = shuffled_batches(len(encoded), batch_size, seed)
    per_epoch = math.ceil(len(encoded) / batch_size)
    stopping = Stopping(
        max_epochs=math.ceil(max_steps / per_epoch),
        max_steps=max_steps,
        stable=stable,
        window=window,
    )
    settings = {
        "layers": layer_list,
        "modules": list(modules) if modules is not None else None,
        "r": r,
        "alpha": alpha,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "stable": stable,
        "window": window,
        "max_steps": max_steps,
        "seed": seed,
        "data": data.name,
        "pairs": len(data),
        "truncated": encoded.truncated,
    }
    scope = {
        "stage": "lora",
        "model_fingerprint": model_fingerprint(model),
        "data_fingerprint": data.fingerprint(),
        **settings,
    }
    torch.manual_seed(seed)
    adapter = add_lora(model, layer_list, modules, r=r, alpha=alpha)
    start = time.perf_counter()
    try:
        history = train(
            adapter.parameters(),
            _objective(model, encoded),
            batches,
            learning_rate=learning_rate,
            stopping=stopping,
            optimizer=torch.optim.AdamW,
            checkpoint=checkpoint,
            scope=scope,
        )
    except BaseException:
        adapter.remove()
        raise
    return LoraFit(adapter, history, tuple(layer_list), settings, time.perf_counter() - start)


def _constraint(gamma: Float[Tensor, " gate"], budget: float | None) -> Float[Tensor, ""]:
    """(mean γ − ρ)² for a budget ρ; mean γ (the L1 form) without one."""
    return gamma.mean() if budget is None else (gamma.mean() - budget) ** 2


@dataclass
class GateFit:
    """Learned gates on an adapter (still on the model) and how their training went.

    Attributes:
        gates: the `LoraGates` (``gates.remove()`` takes them off).
        layer_gamma: γ per model layer (mean over its matrices for unit "matrix").
        history: the trainer's history.
        settings: every setting of the run.
        seconds: wall time of the training.
    """

    gates: LoraGates
    layer_gamma: tuple[float, ...]
    history: TrainingHistory
    settings: dict[str, Any]
    seconds: float


def fit_gates(
    model: ModelHandle,
    data: InstructionSet,
    *,
    unit: str = "layer",
    budget: float | None = 0.25,
    sparsity: float = 100.0,
    init: float | None = None,
    learning_rate: float = 0.1,
    steps: int = 20,
    batch_size: int = 8,
    seed: int = 0,
    max_length: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
) -> GateFit:
    """Stage 2: freeze the model's LoRA adapter and learn its gates (module docstring).

    Args:
        model: a handle carrying the stage-1 adapter (`fit_lora`, or `circuitlab.lora.load_lora`).
        data: the training pairs (stage 1's).
        unit: one gate per ``"layer"`` or per LoRA ``"matrix"``.
        budget: ρ, the mean γ the penalty holds (between 0 and 1); ``None`` for the L1 form.
        sparsity: λ, the weight of the penalty.
        init: the scores' start s₀ (default logit(ρ), so γ starts at the budget; 0 for the L1
            form, γ = 0.5).
        learning_rate: Adam step size on the scores.
        steps: optimiser steps (a fixed budget).
        batch_size: pairs per step.
        seed: seed of the batch order.
        max_length: longest sequence in tokens (see `fit_lora`).
        checkpoint: a file keeping the training state after every epoch (resumable).
    """
    check_number("sparsity", sparsity, lambda v: v >= 0, "zero or positive, e.g. 100")
    if budget is not None:
        check_number("budget", budget, lambda v: 0 < v < 1, "between 0 and 1, e.g. 0.25")
    if init is None:
        init = 0.0 if budget is None else math.log(budget / (1 - budget))
    check_number("init", init, math.isfinite, "a finite number, e.g. 0")
    check_integer("steps", steps, minimum=1)
    adapter_weights = [
        parameter for name, parameter in model.hf_model.named_parameters() if "lora_" in name
    ]
    encoded = encode_instructions(model, data, max_length=max_length)
    gates = LoraGates(model, unit=unit, init=init)
    frozen = [parameter.requires_grad for parameter in adapter_weights]
    for parameter in adapter_weights:
        parameter.requires_grad_(False)
    per_epoch = math.ceil(len(encoded) / batch_size)
    settings = {
        "unit": unit,
        "budget": budget,
        "sparsity": sparsity,
        "init": init,
        "learning_rate": learning_rate,
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "data": data.name,
        "pairs": len(data),
        "gated_matrices": gates.n_matrices,
    }
    scope = {
        "stage": "gates",
        "model_fingerprint": model_fingerprint(model),  # includes the trained adapter
        "data_fingerprint": data.fingerprint(),
        **settings,
    }
    start = time.perf_counter()
    try:
        history = train(
            [gates.scores],
            _objective(model, encoded),
            shuffled_batches(len(encoded), batch_size, seed),
            learning_rate=learning_rate,
            stopping=Stopping(max_epochs=math.ceil(steps / per_epoch), max_steps=steps),
            penalty=lambda: sparsity * _constraint(gates.gamma(), budget),
            optimizer=torch.optim.Adam,
            checkpoint=checkpoint,
            scope=scope,
        )
    except BaseException:
        gates.remove()
        raise
    finally:
        for parameter, before in zip(adapter_weights, frozen, strict=True):
            parameter.requires_grad_(before)
    gates.scores.requires_grad_(False)
    return GateFit(
        gates, gates.layer_gamma(model.n_layers), history, settings, time.perf_counter() - start
    )
