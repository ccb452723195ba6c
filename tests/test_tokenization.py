"""The BOS policy and right padding."""

from __future__ import annotations

import pytest
import torch

from circuitlab import InputError, ModelHandle
from circuitlab.testing import tiny_hf_model, tiny_model


def test_right_padding_and_last_positions() -> None:
    model = tiny_model("llama")
    batch = model.tokenize(["the cat", "the cat sat on the mat", "yes"])
    assert batch.input_ids.shape == (3, 6)
    assert batch.lengths.tolist() == [2, 6, 1]
    assert batch.last_positions.tolist() == [1, 5, 0]
    assert batch.attention_mask.tolist()[0] == [1, 1, 0, 0, 0, 0]
    assert (batch.input_ids[0, 2:] == model.pad_token_id).all()
    assert batch.row(0).tolist() == batch.input_ids[0, :2].tolist()


@pytest.mark.parametrize(
    ("architecture", "prepend_bos", "starts_with_bos"),
    [
        ("llama", None, False),
        ("gemma3", None, True),
        ("llama", True, True),
        ("gemma3", False, False),
    ],
)
def test_bos_policy(architecture: str, prepend_bos: bool | None, starts_with_bos: bool) -> None:
    hf_model, tokenizer = tiny_hf_model(architecture)
    model = ModelHandle(hf_model, tokenizer, name="t", prepend_bos=prepend_bos)
    tokens = model.tokenize(["the cat", "yes"])
    bos = tokenizer.bos_token_id
    assert [bool(row[0] == bos) for row in tokens.input_ids] == [starts_with_bos] * 2
    assert tokens.input_ids[:, 1:].eq(bos).sum() == 0


def test_label_words_must_be_single_tokens() -> None:
    model = tiny_model("llama")
    assert model.token_ids(["yes", "no"]) == [
        model.tokenizer.convert_tokens_to_ids(w) for w in ("yes", "no")
    ]
    with pytest.raises(InputError, match=r"'yes no' is 2 tokens \(\['yes', 'no'\]\)"):
        model.token_id("yes no")
    with pytest.raises(InputError, match="non-empty"):
        model.token_id("")
    with pytest.raises(InputError, match="No label words"):
        model.token_ids([])


def test_empty_prompt_list_and_empty_prompt() -> None:
    model = tiny_model("llama")
    with pytest.raises(InputError, match="No prompts were given"):
        model.tokenize([])
    with pytest.raises(InputError, match="No prompts were given"):
        list(model.batches([]))
    with pytest.raises(InputError, match="has no tokens"):
        model.tokenize(["the cat", ""])
    with pytest.raises(InputError, match=r"list of strings.*its items are str, int"):
        model.tokenize(["the cat", 3])  # type: ignore[list-item]


def test_prompt_longer_than_context() -> None:
    model = tiny_model("llama")
    with pytest.raises(
        InputError, match=r"Prompt 1 is 130 tokens long but the model's context is 128"
    ):
        model.tokenize(["the cat", " ".join(["cat"] * 130)])
    with pytest.raises(InputError, match="exceeds the model's context"):
        model.generate_ids(" ".join(["cat"] * 120), max_new_tokens=20)


def test_batches_cover_every_prompt_in_order() -> None:
    model = tiny_model("gpt2")
    prompts = [f"the cat {'sat ' * i}" for i in range(7)]
    batches = list(model.batches(prompts, batch_size=3))
    assert [len(batch) for batch in batches] == [3, 3, 1]
    assert [p for batch in batches for p in batch.prompts] == prompts
    full = model.next_token_logits(prompts)
    streamed = torch.cat([model.next_token_logits(batch) for batch in batches])
    torch.testing.assert_close(streamed, full, atol=1e-5, rtol=0)


def test_tokenizer_without_pad_token_is_left_untouched() -> None:
    hf_model, _ = tiny_hf_model("gpt2")
    from circuitlab.testing import tiny_tokenizer

    tokenizer = tiny_tokenizer()
    tokenizer.pad_token = None
    vocab_before = len(tokenizer)
    model = ModelHandle(hf_model, tokenizer, name="no-pad")
    assert tokenizer.pad_token is None and len(tokenizer) == vocab_before
    assert model.pad_token_id == tokenizer.eos_token_id
    batch = model.tokenize(["the cat", "the cat sat"])
    assert batch.input_ids[0, 2] == tokenizer.eos_token_id and batch.attention_mask[0, 2] == 0
