"""Export an intervened model as a plain Hugging Face checkpoint (``save_pretrained``)."""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab.checks import check_number, checked_arguments
from circuitlab.errors import ExportCheckError, InputError, NumericalError
from circuitlab.hf_compat import no_init_weights
from circuitlab.interventions.bake import bake
from circuitlab.interventions.edits import resolve
from circuitlab.interventions.serialize import to_spec
from circuitlab.interventions.spec import Intervention
from circuitlab.model import ModelHandle
from circuitlab.models import KNOWN_MODELS
from circuitlab.output_folder import check_writable_folder, staged_folder

__all__ = ["EXPORT_RECORD", "check_export", "export_hf"]

EXPORT_RECORD = "circuitlab_export.json"
DEFAULT_CHECK_PROMPTS = ("The capital of France is", "Once upon a time")


@checked_arguments
def export_hf(
    model: ModelHandle,
    interventions: Intervention | Sequence[Intervention],
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    check: bool = False,
    tolerance: float = 1e-3,
    check_prompts: str | Sequence[str] = DEFAULT_CHECK_PROMPTS,
) -> Path:
    """Write ``model`` with ``interventions`` baked into its weights as a HF checkpoint.

    The folder holds safetensors weights, the config and the tokenizer, and reloads with plain
    ``transformers.AutoModelForCausalLM.from_pretrained``. Heads and MLPs that are scaled or
    zero-ablated become scaled output-projection columns / down projections; mean ablations and
    head steering vectors become output-projection biases (enabled in the config, other new
    biases zero); pruned layers are removed and the config follows. Resampling and
    position-restricted edits are refused (`BakeError`): no fixed weights produce them.

    The checkpoint is written to a temporary folder next to ``path`` and moved into place only
    when complete (and, with ``check``, only when it passed the check), so an interrupted or
    failed export leaves nothing under ``path``. Baked weights that are not finite (a scale
    factor that overflows the dtype) are refused with a `NumericalError` before anything is
    written.

    Args:
        model: the model handle (its weights are not changed).
        interventions: one intervention or a list of them, applied in order.
        path: the folder to create.
        overwrite: replace an existing non-empty folder.
        check: reload the staged checkpoint with plain ``transformers`` and compare its logits
            with the hooked model's on ``check_prompts`` (`check_export`); a difference above
            ``tolerance`` raises `ExportCheckError` and nothing is written. The measured
            difference is kept in the folder's ``circuitlab_export.json`` (``check``).
        tolerance: the largest logit difference the check accepts (1e-3 suits float32).
        check_prompts: prompts of the check.

    Returns:
        The folder written.
    """
    target = Path(path)
    items = [interventions] if not isinstance(interventions, (list, tuple)) else interventions
    tolerance = check_tolerance(tolerance)
    check_writable_folder(target, overwrite=overwrite)
    resolved = resolve(model, list(items))
    config = copy.deepcopy(model.hf_model.config)
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    config.architectures = [type(model.hf_model).__name__]
    baked = bake(model, resolved, config)
    _check_finite_weights(  # only what the interventions wrote: the rest is the model's own
        {key: baked.state[key] for key in baked.edited if key in baked.state},
        resolved.interventions,
    )
    with no_init_weights():  # every weight is loaded below: skip the random initialisation
        clean = AutoModelForCausalLM.from_config(baked.config, dtype=model.dtype)
    clean.tie_weights()  # init_weights, skipped above, is what ties embeddings
    expected = clean.state_dict().keys()
    state = {key: value for key, value in baked.state.items() if key in expected}  # no aliases
    missing, unexpected = clean.load_state_dict(state, strict=False)
    tied = set(getattr(clean, "_tied_weights_keys", None) or {})
    missing = [key for key in missing if key not in tied]
    if missing or unexpected:  # pragma: no cover - a layout this module does not know
        raise RuntimeError(
            f"Export produced a state dict that does not fit {type(clean).__name__}: missing "
            f"{missing[:5]}, unexpected {unexpected[:5]}. Please report this."
        )
    clean.eval()
    with staged_folder(target) as staging:
        clean.save_pretrained(staging, safe_serialization=True)
        model.tokenizer.save_pretrained(staging)
        record = {  # a spec: `load_interventions` reads it back
            "model": _model_reference(model),
            "interventions": to_spec(resolved.interventions),
            "export": {
                "summary": [repr(item) for item in resolved.interventions],
                "pruned_layers": list(resolved.pruned_layers),
                "removed_heads": list(baked.removed_heads),
                "zeroed_heads": list(baked.zeroed_heads),
                "circuitlab_version": circuitlab.__version__,
                "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        }
        if check:
            difference = check_export(
                model, resolved.interventions, staging, check_prompts, tolerance=tolerance
            )
            record["check"] = {
                "max_logit_difference": difference,
                "tolerance": tolerance,
                "prompts": [check_prompts] if isinstance(check_prompts, str) else [*check_prompts],
            }
        (staging / EXPORT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return target


def check_tolerance(tolerance: float) -> float:
    """A logit tolerance: a finite number >= 0 (NaN would accept anything)."""
    return check_number("tolerance", tolerance, lambda v: v >= 0, "a finite number >= 0, e.g. 1e-3")


def _check_finite_weights(state: dict[str, Tensor], interventions: Sequence[Intervention]) -> None:
    """Refuse baked weights holding NaN or inf (an intervention overflowed the dtype)."""
    broken = [key for key, value in state.items() if not bool(torch.isfinite(value).all())]
    if broken:
        raise NumericalError(
            f"Baking {', '.join(repr(item) for item in interventions)} gives non-finite weights "
            f"({', '.join(broken[:3])}{', ...' if len(broken) > 3 else ''}): the values overflow "
            f"the dtype. Use a smaller factor or vector. Nothing was written."
        )


def _model_reference(model: ModelHandle) -> str:
    """What `circuitlab.load` needs to load ``model`` again: a registry name or a folder path."""
    if model.name in KNOWN_MODELS:
        return model.name
    folder = getattr(model.hf_model.config, "_name_or_path", "") or ""
    return str(Path(folder).resolve()) if folder and Path(folder).is_dir() else model.name


@checked_arguments
def check_export(
    model: ModelHandle,
    interventions: Intervention | Sequence[Intervention],
    path: str | os.PathLike[str],
    prompts: str | Sequence[str] = DEFAULT_CHECK_PROMPTS,
    *,
    tolerance: float | None = None,
) -> float:
    """Largest logit difference between an exported checkpoint and the hooked model.

    Reloads ``path`` with plain ``transformers`` (eager attention, the handle's dtype and
    device) and compares its logits at every real token of ``prompts`` with ``model``'s under
    ``interventions``. Expect <= 1e-4 on tiny float32 models and <= 1e-3 on real ones.

    Args:
        model: the model handle; its logits are computed under ``interventions``.
        interventions: one intervention or a list of them, as given to `export_hf`.
        path: the folder `export_hf` wrote.
        prompts: the prompt or prompts compared, at every real token.
        tolerance: raise `ExportCheckError` when the difference exceeds it (logits).

    Returns:
        The maximum absolute difference, in logits.
    """
    items = [interventions] if not isinstance(interventions, (list, tuple)) else interventions
    if tolerance is not None:
        tolerance = check_tolerance(tolerance)
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise InputError(
            f"No exported checkpoint at {folder}: "
            f"{'the folder has no config.json' if folder.is_dir() else 'there is no such folder'}."
            f" Pass the folder export_hf wrote."
        )
    batch = model.tokenize(list(prompts) if not isinstance(prompts, str) else prompts)
    batch = batch.to(model.device)
    with model.intervene(*items):
        hooked = model.logits(batch)
    try:
        reloaded = AutoModelForCausalLM.from_pretrained(
            folder, dtype=model.dtype, attn_implementation="eager", local_files_only=True
        )
    except (OSError, ValueError) as error:
        raise InputError(
            f"Plain transformers cannot reload the checkpoint at {folder}: {error}".splitlines()[0]
        ) from None
    reloaded = reloaded.to(model.device).eval()
    with torch.no_grad():
        plain = reloaded(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
    mask = batch.attention_mask.bool()
    difference = float((plain[mask].float() - hooked[mask].float()).abs().max())
    if tolerance is not None and not difference <= tolerance:  # NaN fails too
        raise ExportCheckError(
            f"The exported checkpoint at {path} differs from the hooked model by "
            f"{difference:.2e} logits, more than the tolerance {tolerance:g}. In bf16 or fp16 "
            f"raise the tolerance; in float32 please report this."
        )
    return difference
