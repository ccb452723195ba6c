"""Every public entry point, every parameter, a row of wrong values: a circuitlab error or a
normal result, never a raw exception from deep inside torch or Python (issue 15).

The wrong values are the classes of mistakes a new user makes: None, text where a number
belongs, negative and zero counts, a fraction where a whole number belongs, an empty list,
NaN, an arbitrary object and a bool.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import circuitlab
from circuitlab.errors import CircuitlabError
from circuitlab.readers import Logits
from circuitlab.testing import tiny_model

PROMPT = "the capital of france is"
WRONG_VALUES = [None, "abc", -1, 0, 2.5, [], float("nan"), object(), True]


@pytest.fixture(scope="module")
def model() -> circuitlab.ModelHandle:
    return tiny_model("llama")


def _entry_points(
    model: circuitlab.ModelHandle, tmp: Path
) -> dict[str, tuple[Callable[..., Any], dict[str, Any]]]:
    """Each entry point with arguments of a call that works."""
    task = circuitlab.load_task("sentiment").balanced_sample(4)
    return {
        "direct_logit_attribution": (
            circuitlab.direct_logit_attribution,
            {"model": model, "prompts": [PROMPT, "the sky is"], "targets": "paris"},
        ),
        "decompose_residual": (
            circuitlab.decompose_residual,
            {"model": model, "prompts": [PROMPT]},
        ),
        "component_accuracy": (circuitlab.component_accuracy, {"model": model, "task": task}),
        "ablation_study": (
            circuitlab.ablation_study,
            {"model": model, "data": [PROMPT], "targets": "paris", "components": ["L0H0"]},
        ),
        "score_layers": (
            circuitlab.score_layers,
            {"model": model, "data": ["the cat sat on the mat"] * 2, "methods": ["avss"]},
        ),
        "collect": (
            circuitlab.collect,
            {"model": model, "data": [PROMPT], "readers": {"logits": Logits()}},
        ),
        "label_contributions": (
            circuitlab.label_contributions,
            {"model": model, "data": task},
        ),
        "perplexity": (
            circuitlab.perplexity,
            {"model": model, "texts": ["the cat sat on the mat"], "window": 64},
        ),
        "export_hf": (
            circuitlab.export_hf,
            {"model": model, "interventions": [circuitlab.Ablate("L0H0")], "path": tmp / "x"},
        ),
        "ModelHandle.top_next_tokens": (model.top_next_tokens, {"prompt": PROMPT, "k": 3}),
        "ModelHandle.run_with_cache": (model.run_with_cache, {"prompts": [PROMPT]}),
        "ModelHandle.generate": (model.generate, {"prompts": [PROMPT], "max_new_tokens": 2}),
        "ModelHandle.logits": (model.logits, {"prompts": [PROMPT]}),
        "ModelHandle.token_ids": (model.token_ids, {"words": ["paris", "london"]}),
    }


ENTRY_POINTS = [
    "direct_logit_attribution",
    "decompose_residual",
    "component_accuracy",
    "ablation_study",
    "score_layers",
    "collect",
    "label_contributions",
    "perplexity",
    "export_hf",
    "ModelHandle.top_next_tokens",
    "ModelHandle.run_with_cache",
    "ModelHandle.generate",
    "ModelHandle.logits",
    "ModelHandle.token_ids",
]


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_wrong_values_get_circuitlab_errors(
    model: circuitlab.ModelHandle, tmp_path: Path, entry_point: str
) -> None:
    function, arguments = _entry_points(model, tmp_path)[entry_point]
    function(**arguments)  # the base call works
    parameters = [
        name
        for name in inspect.signature(function).parameters
        if name not in ("model", "progress", "desc", "self") and name in {**arguments, name: 0}
    ]
    raw = []
    for parameter in parameters:
        for value in WRONG_VALUES:
            call = {**arguments, parameter: value}
            if "path" in call:
                call["path"] = tmp_path / f"out-{len(raw)}-{parameter}"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    function(**call)
            except CircuitlabError:
                continue
            except Exception as error:
                raw.append(f"{parameter}={value!r}: {type(error).__name__}: {error}")
    assert not raw, f"{entry_point}: raw exceptions:\n" + "\n".join(raw)


def test_unknown_keyword_is_named_with_the_parameters(model: circuitlab.ModelHandle) -> None:
    with pytest.raises(CircuitlabError, match=r"unexpected keyword argument 'batchsize'.*"):
        circuitlab.direct_logit_attribution(model, PROMPT, "paris", batchsize=4)


def test_full_cache_holds_every_firing_hook(model: circuitlab.ModelHandle) -> None:
    logits, cache = model.run_with_cache([PROMPT, "the sky is"])
    _, one = model.run_with_cache([PROMPT, "the sky is"], names=["blocks.1.hook_resid_post"])
    assert "blocks.0.attn.hook_z" in cache and len(cache) > 50
    assert cache["blocks.1.hook_resid_post"].allclose(one["blocks.1.hook_resid_post"], atol=1e-5)
    assert logits.shape[:2] == (2, 5)


@pytest.fixture(scope="module")
def results(model: circuitlab.ModelHandle) -> dict[str, Any]:
    task = circuitlab.load_task("sentiment").balanced_sample(8)
    return {
        "Attribution": circuitlab.direct_logit_attribution(
            model, [PROMPT, "the sky is"], ["paris", "london"]
        ),
        "ComponentAccuracy": circuitlab.component_accuracy(model, task),
        "AblationEffects": circuitlab.ablation_study(
            model, [PROMPT], "paris", components=["L0H0", "L1H1", "mlps"]
        ),
        "LayerScores": circuitlab.score_layers(model, ["the cat sat on the mat"] * 2, ["avss"])[
            "avss"
        ],
        "LabelContributions": circuitlab.label_contributions(model, task),
    }


@pytest.mark.parametrize(
    "kind",
    ["Attribution", "ComponentAccuracy", "AblationEffects", "LayerScores", "LabelContributions"],
)
def test_result_methods_refuse_wrong_values_clearly(
    results: dict[str, Any], kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # save("abc") writes a file named abc: keep it here
    result = results[kind]
    raw = []
    for name, method in inspect.getmembers(result, inspect.ismethod):
        if name.startswith("_") or name in ("plot", "plot_heads", "to_document", "from_document"):
            continue
        for parameter in inspect.signature(method).parameters.values():
            if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                continue
            for value in [*WRONG_VALUES, 10**6]:
                try:
                    method(**{parameter.name: value})
                except CircuitlabError:
                    continue
                except TypeError as error:  # another required argument is missing: fine
                    if "missing" in str(error) and "required" in str(error):
                        continue
                    raw.append(f"{name}({parameter.name}={value!r}): TypeError: {error}")
                except Exception as error:
                    raw.append(
                        f"{name}({parameter.name}={value!r}): {type(error).__name__}: {error}"
                    )
    assert not raw, f"{kind}: raw exceptions:\n" + "\n".join(raw)
