"""`ila_rank`: both ILA stages in one call, resumable, returning an `ILARanking`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from circuitlab.fingerprint import model_fingerprint
from circuitlab.ila.data import InstructionSet
from circuitlab.ila.fit import fit_gates, fit_lora
from circuitlab.ila.result import ILARanking
from circuitlab.layers.scores import LayerScores
from circuitlab.model import ModelHandle

__all__ = ["ila_rank"]


def ila_rank(
    model: ModelHandle,
    data: InstructionSet,
    *,
    modules: Sequence[str] | None = None,
    r: int = 8,
    alpha: float = 16.0,
    learning_rate: float = 1e-3,
    batch_size: int = 8,
    stable: float | None = 0.02,
    window: int = 20,
    max_steps: int = 300,
    unit: str = "layer",
    budget: float | None = 0.25,
    sparsity: float = 100.0,
    gate_learning_rate: float = 0.1,
    gate_steps: int = 20,
    seed: int = 0,
    max_length: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    save_adapter: str | os.PathLike[str] | None = None,
    keep: bool = False,
) -> ILARanking:
    """Rank the layers by how much their LoRA update matters for instruction following.

    Stage 1 trains LoRA on every layer until the loss is ε-stable (`fit_lora`), stage 2 learns a
    gate γ per layer or matrix on the frozen adapter (`fit_gates`); see `circuitlab.ila.fit` for
    the rules and the loss.

    Args:
        model: the model handle (left as it was unless ``keep``).
        data: the training pairs (`load_instructions`).
        modules: LoRA target modules (default every linear map of a layer).
        r: LoRA rank.
        alpha: LoRA scaling numerator.
        learning_rate: AdamW step size of stage 1.
        batch_size: pairs per step (both stages).
        stable: ε of stage 1's stopping rule (None: run ``max_steps``).
        window: w of stage 1's stopping rule, in steps.
        max_steps: stage 1's step cap.
        unit: one gate per ``"layer"`` or per LoRA ``"matrix"``.
        budget: ρ, the mean γ stage 2's penalty holds (None: the L1 form).
        sparsity: λ, the weight of stage 2's penalty.
        gate_learning_rate: Adam step size of the gate scores.
        gate_steps: stage 2's steps.
        seed: seed of both stages (adapter initialisation, batch order).
        max_length: longest sequence in tokens (default the model's context).
        checkpoint: a folder keeping both stages' training states; rerunning the same call
            resumes a killed run (finished stages are restored, not redone).
        save_adapter: a folder to write the stage-1 adapter to (plain peft).
        keep: leave the gated adapter on the model (default: remove it).
    """
    fingerprint = model_fingerprint(model)
    folder = Path(checkpoint) if checkpoint is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    stage1 = fit_lora(
        model,
        data,
        None,
        modules=modules,
        r=r,
        alpha=alpha,
        learning_rate=learning_rate,
        batch_size=batch_size,
        stable=stable,
        window=window,
        max_steps=max_steps,
        seed=seed,
        max_length=max_length,
        checkpoint=folder / "stage1.safetensors" if folder is not None else None,
    )
    try:
        if save_adapter is not None:
            stage1.adapter.save(save_adapter, overwrite=True)
        stage2 = fit_gates(
            model,
            data,
            unit=unit,
            budget=budget,
            sparsity=sparsity,
            learning_rate=gate_learning_rate,
            steps=gate_steps,
            batch_size=batch_size,
            seed=seed,
            max_length=max_length,
            checkpoint=folder / "stage2.safetensors" if folder is not None else None,
        )
    except BaseException:
        stage1.adapter.remove()
        raise
    details = {f"gamma_{name}": values for name, values in stage2.gates.matrix_gamma().items()}
    settings = {"seed": seed, "stage1": stage1.settings, "stage2": stage2.settings}
    ranking = ILARanking(
        scores=LayerScores(
            "ila", stage2.layer_gamma, details=details, settings=settings, model=model.name
        ),
        data=data.name,
        stage1={
            "steps": stage1.history.steps,
            "stopped": stage1.history.stopped,
            "seconds": stage1.seconds,
            "step_losses": list(stage1.history.step_losses),
        },
        stage2={
            "steps": stage2.history.steps,
            "seconds": stage2.seconds,
            "step_losses": list(stage2.history.step_losses),
        },
        model=model.name,
        settings=settings,
        fingerprint=fingerprint,
    )
    if not keep:
        stage2.gates.remove()
        stage1.adapter.remove()
    return ranking
