"""One target per prompt in direct logit attribution, and the two-token logit difference of
ablation studies on prompts (tiny models; ground truth: the model's own logits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from circuitlab import Attribution, InputError, LogitDiff, ablation_study, direct_logit_attribution
from circuitlab.ablation.metrics import logit_diff_values
from circuitlab.cli.main import main
from circuitlab.interventions import Ablate
from circuitlab.results import write_result_file
from circuitlab.testing import tiny_model

PROMPTS = ["the capital of france is", "the cat sat on the", "a dog ran to a"]
TARGETS = ["paris", "mat", LogitDiff("cat", "dog")]


def _own_logits(model, prompts=PROMPTS) -> torch.Tensor:
    logits = model.next_token_logits(prompts)
    return torch.stack(
        [
            logits[0, model.token_id("paris")],
            logits[1, model.token_id("mat")],
            logits[2, model.token_id("cat")] - logits[2, model.token_id("dog")],
        ]
    )


def test_each_prompt_gets_its_own_target_and_the_sum_is_exact(tiny_architecture: str) -> None:
    model = tiny_model(tiny_architecture)
    result = direct_logit_attribution(model, PROMPTS, TARGETS, per_prompt=True)
    assert result.values.shape == (3, len(result.components), 1)
    torch.testing.assert_close(result.logits[:, 0], _own_logits(model), atol=1e-5, rtol=0)
    assert result.reconstruction_error() < 1e-4
    assert result.prompt_targets == ("'paris'", "'mat'", "'cat' - 'dog'")
    shared = direct_logit_attribution(model, PROMPTS, ["paris", "mat"])
    torch.testing.assert_close(result.values[0, :, 0], shared.values[0, :, 0])
    torch.testing.assert_close(result.values[1, :, 0], shared.values[1, :, 1])


def test_a_per_prompt_result_shows_and_stores_its_targets(tmp_path: Path) -> None:
    model = tiny_model("llama")
    result = direct_logit_attribution(model, PROMPTS, TARGETS, per_prompt=True)
    frame = result.to_frame()
    assert frame.groupby("prompt")["target"].first().tolist() == list(result.prompt_targets)
    assert "one target per prompt" in repr(result)
    again = Attribution.load(result.save(tmp_path / "dla.safetensors"))
    assert again.prompt_targets == result.prompt_targets
    torch.testing.assert_close(again.values, result.values)
    result.plot()
    result.plot_heads()


def test_per_prompt_targets_follow_interventions() -> None:
    model = tiny_model("llama")
    with model.intervene(Ablate("L1H2")):
        result = direct_logit_attribution(model, PROMPTS, TARGETS, per_prompt=True)
        own = _own_logits(model)
    torch.testing.assert_close(result.logits[:, 0], own, atol=1e-5, rtol=0)


@pytest.mark.parametrize("batch_size", [1, 2])
def test_per_prompt_batches_keep_each_row_its_own_target(batch_size: int) -> None:
    model = tiny_model("qwen2")
    prompts = [*PROMPTS, "the dog sat on a", "a cat ran to the"]
    answers = ["paris", "mat", LogitDiff("cat", "dog"), model.token_id("mat"), "paris"]
    columns = ["paris", "mat", LogitDiff("cat", "dog")]
    which = [0, 1, 2, 1, 0]  # the shared column of each prompt's target
    result = direct_logit_attribution(
        model, prompts, answers, per_prompt=True, positions=-2, batch_size=batch_size
    )
    shared = direct_logit_attribution(model, prompts, columns, positions=-2)
    rows = torch.arange(len(prompts))
    torch.testing.assert_close(result.values[:, :, 0], shared.values[rows, :, which])
    torch.testing.assert_close(result.constant[:, 0], shared.constant[rows, which])
    torch.testing.assert_close(result.logits[:, 0], shared.logits[rows, which])
    assert result.prompt_targets[3] == "'mat'"


def test_an_attribution_written_without_prompt_targets_still_loads(tmp_path: Path) -> None:
    result = direct_logit_attribution(tiny_model("llama"), PROMPTS, ["paris", "mat"])
    fields = {k: v for k, v in result._fields().items() if k != "prompt_targets"}
    older = write_result_file(tmp_path / "older.safetensors", "Attribution", fields)
    again = Attribution.load(older)
    assert again.prompt_targets == () and again.targets == ("'paris'", "'mat'")
    torch.testing.assert_close(again.values, result.values)


def test_logit_diff_values_is_the_difference_of_two_gathered_logits() -> None:
    logits = torch.randn(4, 11, dtype=torch.float64).to(torch.bfloat16)
    positive, negative = torch.tensor([0, 3, 10, 5]), torch.tensor([1, 3, 2, 9])
    values = logit_diff_values(logits, positive, negative)
    assert values.dtype == torch.float32 and values.shape == (4,)
    expected = [float(logits[i, positive[i]]) - float(logits[i, negative[i]]) for i in range(4)]
    torch.testing.assert_close(values, torch.tensor(expected), atol=0, rtol=0)
    assert values[1] == 0


def test_ablation_logit_diff_takes_ids_like_tokens() -> None:
    model = tiny_model("llama")
    ids = LogitDiff(model.token_id("cat"), model.token_id("dog"))
    by_id = ablation_study(model, PROMPTS, ids, components=["MLP0"])
    by_text = ablation_study(model, PROMPTS, LogitDiff("cat", "dog"), components=["MLP0"])
    torch.testing.assert_close(by_id.ablated, by_text.ablated, atol=0, rtol=0)
    torch.testing.assert_close(by_id.baseline, by_text.baseline, atol=0, rtol=0)


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        (["paris", "mat"], "2 target\\(s\\) for 3 prompt\\(s\\)"),
        (["paris", "mat", "london paris"], "is 2 tokens"),
        ([], "0 target\\(s\\) for 3 prompt\\(s\\)"),
        (["paris", ["mat", "rug"], "cat"], "its items are str, list"),
        ("paris", "1 target\\(s\\) for 3 prompt\\(s\\)"),
    ],
)
def test_per_prompt_bad_targets(targets: list, message: str) -> None:
    with pytest.raises(InputError, match=message):
        direct_logit_attribution(tiny_model("llama"), PROMPTS, targets, per_prompt=True)


def test_ablation_study_measures_a_two_token_logit_difference() -> None:
    model = tiny_model("llama")
    pairs = [LogitDiff("paris", "london"), LogitDiff("mat", "rug"), LogitDiff("cat", "dog")]
    effects = ablation_study(model, PROMPTS, pairs, components=["L1H2", "MLP0"])
    assert effects.metric == "logit_diff"
    logits = model.next_token_logits(PROMPTS)
    expected = torch.stack(
        [logits[i, model.token_id(p.positive)] - logits[i, model.token_id(p.negative)]
         for i, p in enumerate(pairs)]
    )  # fmt: skip
    torch.testing.assert_close(effects.baseline, expected, atol=1e-5, rtol=0)
    with model.intervene(Ablate("MLP0")):
        ablated = model.next_token_logits(PROMPTS)
    expected = torch.stack(
        [ablated[i, model.token_id(p.positive)] - ablated[i, model.token_id(p.negative)]
         for i, p in enumerate(pairs)]
    )  # fmt: skip
    column = [str(c) for c in effects.components].index("MLP0")
    torch.testing.assert_close(effects.ablated[:, column], expected, atol=1e-5, rtol=0)
    one = ablation_study(model, PROMPTS, LogitDiff("cat", "dog"), components=["MLP0"])
    assert one.baseline.shape == (3,)


def test_ablation_logit_diff_bad_inputs() -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match="not a mix"):
        ablation_study(model, PROMPTS[:2], ["paris", LogitDiff("mat", "rug")], components="MLP0")
    with pytest.raises(InputError, match="use metric 'logit_diff'"):
        ablation_study(model, PROMPTS, LogitDiff("cat", "dog"), metric="prob", components="MLP0")
    with pytest.raises(InputError, match="LogitDiff\\(answer, other\\)"):
        ablation_study(model, PROMPTS, "paris", metric="logit_diff", components="MLP0")


def test_cli_per_prompt_decompose_and_ablate_diff(
    tiny_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "dla.json"
    prompts = [arg for prompt in PROMPTS[:2] for arg in ("--prompt", prompt)]
    code = main(
        ["decompose", "--model", str(tiny_folder), *prompts, "--target", "paris", "--target",
         "mat", "--per-prompt", "--json", str(out)]
    )  # fmt: skip
    assert code == 0
    assert "one target per prompt: 'paris', 'mat'" in capsys.readouterr().out
    result = Attribution.from_document(json.loads(out.read_text()))
    assert result.prompt_targets == ("'paris'", "'mat'")
    code = main(
        ["ablate", "--model", str(tiny_folder), *prompts, "--diff", "paris", "london",
         "--components", "MLP0", "MLP1"]
    )  # fmt: skip
    assert code == 0
    assert "logit_diff of the intact model" in capsys.readouterr().out


def test_cli_per_prompt_refuses_a_mix_of_target_and_diff(
    tiny_folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    prompts = [arg for prompt in PROMPTS[:2] for arg in ("--prompt", prompt)]
    code = main(
        ["decompose", "--model", str(tiny_folder), *prompts, "--diff", "cat", "dog", "--target",
         "mat", "--per-prompt"]
    )  # fmt: skip
    assert code == 2
    assert "not a mix: the command line cannot tell their order" in capsys.readouterr().err
