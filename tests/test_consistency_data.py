"""Paraphrase tasks: shipped sets, prompts and splits, loading, and every bad input."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

import circuitlab
from circuitlab import InputError
from circuitlab.consistency import (
    PARAPHRASE_TASKS,
    ParaphraseTask,
    ParaphraseView,
    load_paraphrase_task,
    shipped_paraphrases,
)
from circuitlab.tasks import ClassificationTask, load_task
from circuitlab.testing import TINY_VOCABULARY, tiny_model

TEMPLATES = (
    "review {text} . positive or negative ?",
    "the review {text} is",
    "{text} . this movie review is",
    "movie review : {text} . it is",
    "{text} ! the film is",
)


def make_task(templates: tuple[str, ...] = TEMPLATES, **changes: Any) -> ClassificationTask:
    fields: dict[str, Any] = {
        "name": "tiny",
        "texts": ("good film", "bad film", "great movie", "terrible movie", "very good", "bad"),
        "labels": (1, 0, 1, 0, 1, 0),
        "label_names": ("negative", "positive"),
        "label_words": (" negative", " positive"),
        "templates": templates,
    }
    return ClassificationTask(**{**fields, **changes})


def write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    rows = [{"text": f"film {i}", "label": "positive" if i % 2 else "negative"} for i in range(8)]
    return write(tmp_path / "inputs.jsonl", rows)


# ------------------------------------------------------------- shipped sets
def test_shipped_file_names_exactly_the_paraphrase_tasks() -> None:
    data = resources.files("circuitlab.consistency").joinpath("data", "paraphrases.json")
    assert tuple(json.loads(data.read_text(encoding="utf-8"))) == PARAPHRASE_TASKS


@pytest.mark.parametrize("name", PARAPHRASE_TASKS)
def test_shipped_paraphrase_sets(name: str) -> None:
    ptask = load_paraphrase_task(name)
    builtin = load_task(name)
    assert ptask.n_paraphrases >= 10
    assert (len(ptask.locate), len(ptask.heldout)) == (6, 4)
    assert sorted(ptask.locate + ptask.heldout) == list(ptask.paraphrases)
    assert ptask.task.texts == builtin.texts and ptask.task.labels == builtin.labels
    assert ptask.label_words == builtin.label_words
    assert shipped_paraphrases(name)["templates"] == list(ptask.templates)
    for template in ptask.templates:
        assert template.count("{text}") == 1 and not template[-1].isspace()
    # Styles differ: some name the options, some do not.
    words = [word.strip().lower() for word in ptask.label_words]
    naming = [t for t in ptask.templates if all(re.search(rf"\b{w}\b", t.lower()) for w in words)]
    assert 0 < len(naming) < ptask.n_paraphrases


# ------------------------------------------------------------ prompts, views
def test_prompts_are_input_major() -> None:
    ptask = ParaphraseTask(make_task())
    task = ptask.task
    prompts = ptask.prompts()
    assert len(prompts) == len(task) * len(TEMPLATES)
    assert prompts[:2] == [task.prompt(task.texts[0], template=p) for p in (0, 1)]
    assert prompts[len(TEMPLATES)] == task.prompt(task.texts[1], template=0)
    chosen = ptask.prompts(indices=[3, 1], templates=[4, 2])
    assert chosen == [
        task.prompt(task.texts[row], template=column) for row in (3, 1) for column in (4, 2)
    ]


def test_views_keep_template_indices() -> None:
    ptask = ParaphraseTask(make_task(), locate=(0, 2), heldout=(4, 1))
    locating, held_out = ptask.locating(), ptask.held_out()
    assert isinstance(locating, ParaphraseView)
    assert (locating.paraphrases, locating.role) == ((0, 2), "locate")
    assert held_out.paraphrases == (4, 1)
    assert held_out.prompts(indices=[0]) == ptask.prompts(indices=[0], templates=[4, 1])
    assert len(held_out) == len(ptask) and held_out.label_words == ptask.label_words
    assert "heldout" in repr(held_out)


def test_default_split_and_complements() -> None:
    assert ParaphraseTask(make_task()).locate == (0, 1, 2)
    assert ParaphraseTask(make_task()).heldout == (3, 4)
    two = ParaphraseTask(make_task(TEMPLATES[:2]))
    assert (two.locate, two.heldout) == ((0,), (1,))
    assert ParaphraseTask(make_task(), heldout=[1]).locate == (0, 2, 3, 4)
    assert ParaphraseTask(make_task(), locate=[4]).heldout == (0, 1, 2, 3)
    assert "5 paraphrases" in repr(ParaphraseTask(make_task()))


def test_split_inputs_is_disjoint_balanced_and_seeded() -> None:
    ptask = load_paraphrase_task("sentiment")
    first, rest = ptask.split_inputs(0.25, seed=3)
    assert (len(first), len(rest)) == (50, 150)
    assert first.task.label_counts() == {"negative": 25, "positive": 25}
    assert not set(first.task.texts) & set(rest.task.texts)
    assert (first.locate, first.templates) == (ptask.locate, ptask.templates)
    assert ptask.split_inputs(0.25, seed=3)[0] == first
    assert ptask.split_inputs(0.25, seed=4)[0].task.texts != first.task.texts


def test_subset_and_balanced_sample_keep_the_paraphrases() -> None:
    ptask = load_paraphrase_task("nli")
    sample = ptask.balanced_sample(12, seed=0)
    assert sample.task.label_counts() == {"entailment": 4, "neutral": 4, "contradiction": 4}
    assert sample.heldout == ptask.heldout
    assert ptask.subset([5, 2]).task.texts == (ptask.task.texts[5], ptask.task.texts[2])


# ------------------------------------------------------------------ loading
def test_user_inputs_with_a_txt_paraphrase_file(inputs: Path, tmp_path: Path) -> None:
    txt = tmp_path / "prompts.txt"
    txt.write_text("Review: {text}\\nSentiment:\n\nThe review {text} is\nC:\\\\ {text} is\n")
    ptask = load_paraphrase_task(inputs, paraphrases=txt, heldout=[2])
    assert ptask.templates == (
        "Review: {text}\nSentiment:",
        "The review {text} is",
        "C:\\ {text} is",
    )
    assert (ptask.locate, ptask.heldout, len(ptask)) == ((0, 1), (2,), 8)
    assert ptask.label_words == (" negative", " positive")
    assert ptask.name == "inputs"


def test_jsonl_paraphrases_with_splits_and_agreeing_label_words(
    inputs: Path, tmp_path: Path
) -> None:
    words = [" bad", " good"]
    lines = [
        {"template": "A: {text} =>", "split": "locate", "label_words": words},
        {"template": "B: {text} =>", "split": "heldout"},
        {"template": "C: {text} =>", "split": "locate", "label_words": words},
    ]
    ptask = load_paraphrase_task(inputs, paraphrases=write(tmp_path / "p.jsonl", lines))
    assert (ptask.locate, ptask.heldout, ptask.label_words) == ((0, 2), (1,), (" bad", " good"))


def test_json_list_and_templates_argument(inputs: Path, tmp_path: Path) -> None:
    forms = ["A {text} ->", "B {text} ->", "C {text} ->"]
    (tmp_path / "p.json").write_text(json.dumps(forms))
    from_file = load_paraphrase_task(inputs, paraphrases=tmp_path / "p.json")
    from_list = load_paraphrase_task(inputs, templates=forms)
    assert from_file == from_list and from_list.templates == tuple(forms)


def test_builtin_inputs_with_own_paraphrases() -> None:
    ptask = load_paraphrase_task("yesno", templates=["Q: {text}\nA:", "{text} Answer:"])
    assert (len(ptask), ptask.label_words) == (200, (" No", " Yes"))
    worded = load_paraphrase_task("sentiment", label_words=[" bad", " good"])
    assert worded.label_words == (" bad", " good") and worded.heldout == (6, 7, 8, 9)


# ---------------------------------------------------------------- bad input
def test_a_single_paraphrase_is_refused(inputs: Path) -> None:
    with pytest.raises(InputError, match=r"1 paraphrase .*no pairs"):
        ParaphraseTask(make_task(TEMPLATES[:1]))
    with pytest.raises(InputError, match=r"1 paraphrase.*one gives no pairs"):
        load_paraphrase_task(inputs, templates=["Review: {text}\nSentiment:"])


@pytest.mark.parametrize(
    ("template", "found"),
    [("Review without a field:", "no field"), ("{text} versus {text}:", r"\['text', 'text'\]")],
)
def test_paraphrase_needs_exactly_one_text_field(inputs: Path, template: str, found: str) -> None:
    with pytest.raises(InputError, match=f"paraphrase 1 of templates= .*{found}.*one {{text}}"):
        load_paraphrase_task(inputs, templates=["A {text}:", template])


def test_label_words_differing_between_paraphrases(inputs: Path, tmp_path: Path) -> None:
    lines = [
        {"template": "A: {text} =>", "label_words": [" bad", " good"]},
        {"template": "B: {text} =>", "label_words": [" negative", " positive"]},
    ]
    with pytest.raises(InputError, match=r"differ between paraphrases.*paraphrase 0.*paraphrase 1"):
        load_paraphrase_task(inputs, paraphrases=write(tmp_path / "p.jsonl", lines))
    with pytest.raises(InputError, match=r"label_words= has \[' bad', ' good'\].*paraphrase 1"):
        load_paraphrase_task(inputs, templates=lines[:1] + lines[1:], label_words=[" bad", " good"])


def test_overlapping_or_bad_locate_and_heldout(inputs: Path) -> None:
    with pytest.raises(InputError, match=r"paraphrases \[1\] are both locating"):
        ParaphraseTask(make_task(), locate=(0, 1), heldout=(1, 2))
    with pytest.raises(InputError, match="both locating"):
        load_paraphrase_task("sentiment", locate=[0, 1, 2], heldout=[2, 3])
    with pytest.raises(InputError, match="heldout is empty"):
        ParaphraseTask(make_task(), locate=range(5))
    with pytest.raises(InputError, match="names paraphrase 7, but the task has 5"):
        ParaphraseTask(make_task(), heldout=(7,))
    with pytest.raises(InputError, match="repeats"):
        ParaphraseTask(make_task(), locate=(0, 0))
    with pytest.raises(InputError, match="integers"):
        ParaphraseTask(make_task(), locate=(0.5,))


@pytest.mark.parametrize(("suffix", "content"), [(".jsonl", ""), (".jsonl", "\n\n"), (".csv", "")])
def test_empty_input_file(tmp_path: Path, suffix: str, content: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_text(content)
    with pytest.raises(InputError, match=r"empty|no examples"):
        load_paraphrase_task(path, templates=["A {text}:", "B {text}:"])


def test_bad_paraphrase_files(inputs: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(InputError, match="holds no paraphrases"):
        load_paraphrase_task(inputs, paraphrases=tmp_path / "empty.txt")
    (tmp_path / "p.yaml").write_text("- A {text}:")
    with pytest.raises(InputError, match=r"unsupported extension '.yaml'"):
        load_paraphrase_task(inputs, paraphrases=tmp_path / "p.yaml")
    (tmp_path / "p.json").write_text('{"sentiment": ["A {text}:"]}')
    with pytest.raises(InputError, match="holds a JSON dict"):
        load_paraphrase_task(inputs, paraphrases=tmp_path / "p.json")
    (tmp_path / "bad.jsonl").write_text('"A {text}:"\n{oops\n')
    with pytest.raises(InputError, match=r"line 2 of bad.jsonl is not valid JSON"):
        load_paraphrase_task(inputs, paraphrases=tmp_path / "bad.jsonl")
    with pytest.raises(InputError, match="No paraphrase file"):
        load_paraphrase_task(inputs, paraphrases=tmp_path / "missing.txt")


def test_bad_paraphrase_entries(inputs: Path) -> None:
    with pytest.raises(InputError, match="'template' and may have"):
        load_paraphrase_task(inputs, templates=[{"text": "A {text}:"}, "B {text}:"])
    with pytest.raises(InputError, match="split 'test'"):
        load_paraphrase_task(inputs, templates=[{"template": "A {text}:", "split": "test"}, "B"])
    partial = [{"template": "A {text}:", "split": "locate"}, "B {text}:"]
    with pytest.raises(InputError, match="paraphrase 1 has none"):
        load_paraphrase_task(inputs, templates=partial)
    full = [
        {"template": t, "split": s} for t, s in (("A {text}:", "locate"), ("B {text}:", "heldout"))
    ]
    with pytest.raises(InputError, match="Give the split once"):
        load_paraphrase_task(inputs, templates=full, heldout=[1])
    with pytest.raises(InputError, match="templates must be a list"):
        load_paraphrase_task(inputs, templates="A {text}:")
    with pytest.raises(InputError, match=r"label words of paraphrase 0 .* list of strings"):
        load_paraphrase_task(inputs, templates=[{"template": "A {text}:", "label_words": " x"}])


def test_bad_sources_and_argument_combinations(inputs: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"No paraphrases for .*inputs.jsonl.*templates="):
        load_paraphrase_task(inputs)
    with pytest.raises(InputError, match="Both templates= and paraphrases="):
        load_paraphrase_task(inputs, templates=["A {text}:", "B {text}:"], paraphrases=inputs)
    with pytest.raises(InputError, match="Unknown task 'sentimnet'"):
        load_paraphrase_task("sentimnet", templates=["A {text}:", "B {text}:"])
    with pytest.raises(InputError, match="No shipped paraphrases"):
        shipped_paraphrases("sst2")
    with pytest.raises(InputError, match="ClassificationTask"):
        ParaphraseTask("sentiment")  # type: ignore[arg-type]


def test_duplicate_and_trailing_space_paraphrases() -> None:
    with pytest.raises(InputError, match=r"Paraphrases 0 and 2 .* are the same"):
        ParaphraseTask(make_task((TEMPLATES[0], TEMPLATES[1], TEMPLATES[0])))
    with pytest.raises(InputError, match=r"Paraphrase 1 .* ends with whitespace.*' negative'"):
        ParaphraseTask(make_task((TEMPLATES[0], "Sentiment: {text} Answer: ")))


def test_bad_prompt_and_split_arguments() -> None:
    ptask = ParaphraseTask(make_task())
    with pytest.raises(InputError, match=r"0 .. 5"):
        ptask.prompts(indices=[6])
    with pytest.raises(InputError, match="selects no paraphrase"):
        ptask.prompts(templates=[])
    with pytest.raises(InputError, match="names paraphrase 9"):
        ptask.view([9])
    for fraction in (0.0, 1.0, float("nan")):
        with pytest.raises(InputError, match="fraction"):
            ptask.split_inputs(fraction)


# --------------------------------------------------------- label-word checks
def tiny_paraphrase_task(
    label_words: tuple[str, ...], templates: tuple[str, ...]
) -> ParaphraseTask:
    assert all(piece in TINY_VOCABULARY for word in label_words for piece in word.split())
    task = make_task(
        templates,
        label_names=("no", "yes"),
        label_words=label_words,
        texts=("is the sky blue ?", "is the cat red ?"),
        labels=(1, 0),
    )
    return ParaphraseTask(task)


def test_check_label_words_returns_the_ids() -> None:
    model = tiny_model("llama")
    ptask = tiny_paraphrase_task((" no", " yes"), ("question {text} answer", "{text} yes or no ?"))
    assert ptask.check_label_words(model) == model.token_ids([" no", " yes"])


def test_check_label_words_refuses_a_several_token_word() -> None:
    ptask = tiny_paraphrase_task((" no", " very good"), ("question {text}", "{text} answer"))
    with pytest.raises(InputError, match=r"Paraphrase task 'tiny'.*' very good' is 2 tokens"):
        ptask.check_label_words(tiny_model("llama"))


def test_check_label_words_refuses_a_paraphrase_that_merges_with_the_label() -> None:
    # Without a leading space the word-level tokenizer glues the label to the prompt's last word.
    ptask = tiny_paraphrase_task(("no", "yes"), ("question {text} answer", "{text} answer ?"))
    with pytest.raises(InputError, match=r"Paraphrase 0 of task 'tiny'.*not single-token-label"):
        ptask.check_label_words(tiny_model("llama"))


@pytest.mark.real_model
@pytest.mark.parametrize("model_name", ["smollm2-135m-instruct", "gemma3-270m"])
def test_shipped_label_words_are_single_tokens_after_every_paraphrase(
    model_name: str, request: pytest.FixtureRequest
) -> None:
    model: circuitlab.ModelHandle = request.getfixturevalue(
        "smollm2" if model_name.startswith("smollm2") else "gemma3"
    )
    for name in PARAPHRASE_TASKS:
        ptask = load_paraphrase_task(name)
        assert ptask.check_label_words(model) == model.token_ids(list(ptask.label_words))
