"""Classification tasks: validation, splits, K-shot prompts, loading and saving."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from circuitlab import InputError
from circuitlab.tasks import (
    BUILTIN_TASKS,
    ClassificationTask,
    load_task,
    save_task,
    task_from_dataset,
)

FIELDS: dict[str, Any] = {
    "name": "toy",
    "texts": ("good film", "bad film", "great film", "awful film", "fine film", "dull film"),
    "labels": (1, 0, 1, 0, 1, 0),
    "label_names": ("negative", "positive"),
    "label_words": (" negative", " positive"),
    "templates": ("Review: {text}\nSentiment:", "{text} =>"),
}


def make_task(**changes: Any) -> ClassificationTask:
    return ClassificationTask(**{**FIELDS, **changes})


def make_large(n_per_class: tuple[int, ...] = (30, 20)) -> ClassificationTask:
    texts, labels = [], []
    for label, count in enumerate(n_per_class):
        texts += [f"text {label}-{i}" for i in range(count)]
        labels += [label] * count
    names = tuple(f"c{i}" for i in range(len(n_per_class)))
    return ClassificationTask(
        name="large",
        texts=tuple(texts),
        labels=tuple(labels),
        label_names=names,
        label_words=tuple(" " + name for name in names),
        templates=("{text}:",),
    )


# ------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"texts": (), "labels": ()}, "no examples"),
        ({"labels": (1, 0, 1)}, "6 texts but 3 labels"),
        ({"labels": (1, 0, 1, 0, 1, 2)}, "Label 5 of task 'toy' is 2"),
        ({"labels": (1, 0, 1, 0, 1, -1)}, "is -1"),
        ({"labels": (1, 0, 1, 0, 1, "no")}, "integer class index"),
        ({"label_names": ("negative",), "label_words": (" negative",)}, "at least 2"),
        ({"label_names": ("negative", "positive", "neutral")}, "3 label names"),
        ({"label_words": (" good", " good")}, "repeats the label word"),
        ({"label_words": (" negative", "")}, "non-empty string"),
        ({"templates": ("Review: {text} {text}",)}, "exactly one"),
        ({"templates": ("Review:",)}, "exactly one"),
        ({"templates": ("{review}",)}, "['review']"),
        ({"templates": ("{text} {",)}, "malformed"),
        ({"templates": ()}, "no templates"),
        ({"templates": "{text}"}, "Wrap it"),
        ({"texts": ("good film", "", "a", "b", "c", "d")}, "Text 1"),
        ({"texts": ("good film", None, "a", "b", "c", "d")}, "Text 1"),
    ],
)
def test_validation_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as caught:
        make_task(**changes)
    assert message in str(caught.value)


def test_lists_become_tuples_and_literal_braces_work() -> None:
    task = make_task(texts=list(FIELDS["texts"]), templates=["{{ {text} }}"])
    assert isinstance(task.texts, tuple)
    assert task.prompt("x") == "{ x }"
    assert task == make_task(templates=("{{ {text} }}",))
    assert "6 examples" in repr(task) and "good film" not in repr(task)


def test_facts() -> None:
    task = make_task()
    assert len(task) == 6
    assert task.n_labels == 2
    assert task.label_counts() == {"negative": 3, "positive": 3}
    assert make_task(labels=(1,) * 6).label_counts() == {"negative": 0, "positive": 6}


# ---------------------------------------------------------------- subsets
def test_subset_keeps_order_and_checks_indices() -> None:
    task = make_task()
    part = task.subset([4, 1])
    assert part.texts == ("fine film", "bad film") and part.labels == (1, 0)
    assert part.templates == task.templates
    with pytest.raises(InputError, match="out of range"):
        task.subset([6])
    with pytest.raises(InputError, match="no indices"):
        task.subset([])


def test_split_is_deterministic_and_stratified() -> None:
    task = make_large((30, 20))
    first, rest = task.split(10, seed=3)
    again, _ = task.split(10, seed=3)
    other, _ = task.split(10, seed=4)
    assert first == again
    assert first.texts != other.texts
    assert first.label_counts() == {"c0": 6, "c1": 4}
    assert rest.label_counts() == {"c0": 24, "c1": 16}
    assert set(first.texts).isdisjoint(rest.texts)
    assert sorted(first.texts + rest.texts) == sorted(task.texts)
    # both parts keep the original order
    assert list(first.texts) == [t for t in task.texts if t in set(first.texts)]


def test_split_rounds_shares_by_largest_remainder() -> None:
    task = make_large((5, 3, 2))
    first, rest = task.split(5, seed=0)
    assert first.label_counts() == {"c0": 3, "c1": 1, "c2": 1}  # exact shares 2.5, 1.5, 1.0
    assert len(rest) == 5


def test_unbalanced_split_has_the_right_size() -> None:
    first, rest = make_large().split(7, seed=1, balanced=False)
    assert (len(first), len(rest)) == (7, 43)
    with pytest.raises(InputError, match="0 < n_first < 50"):
        make_large().split(50)


def test_balanced_sample() -> None:
    task = make_large((30, 20))
    sample = task.balanced_sample(16, seed=2)
    assert sample.label_counts() == {"c0": 8, "c1": 8}
    assert sample == task.balanced_sample(16, seed=2)
    assert len(set(sample.texts)) == 16
    assert task.balanced_sample(40).label_counts() == {"c0": 20, "c1": 20}
    for impossible in (15, 42, 0):
        with pytest.raises(InputError, match="impossible"):
            task.balanced_sample(impossible)


# ---------------------------------------------------------------- prompts
def test_k_shot_prompt_format_exactly() -> None:
    task = make_task()
    prompt = task.prompt("fine film", demos=[("good film", 1), ("bad film", 0)])
    assert prompt == (
        "Review: good film\nSentiment: positive\n\n"
        "Review: bad film\nSentiment: negative\n\n"
        "Review: fine film\nSentiment:"
    )
    assert task.prompt("x", template=1) == "x =>"
    custom = make_task(demo_separator="\n---\n")
    assert custom.prompt("b", template=1, demos=[("a", 0)]) == "a => negative\n---\nb =>"
    with pytest.raises(InputError, match="Template 2 does not exist"):
        task.prompt("x", template=2)
    with pytest.raises(InputError, match="label 5"):
        task.prompt("x", demos=[("a", 5)])


def test_zero_shot_prompts() -> None:
    task = make_task()
    assert task.prompts(template=1) == [f"{text} =>" for text in task.texts]


def test_prompts_share_one_balanced_demo_set_from_a_pool() -> None:
    task = make_task()
    pool = make_large((4, 4)).subset(range(8))
    pool = ClassificationTask(**{**FIELDS, "texts": pool.texts, "labels": pool.labels})
    prompts = task.prompts(k_shot=4, demo_pool=pool, seed=5)
    demos = task.demonstrations(4, demo_pool=pool, seed=5)
    assert sorted(label for _, label in demos) == [0, 0, 1, 1]
    assert prompts == [task.prompt(text, demos=demos) for text in task.texts]
    assert task.prompts(k_shot=4, demo_pool=pool, seed=5) == prompts
    assert task.demonstrations(4, demo_pool=pool, seed=6) != demos


def test_odd_k_shot_is_as_balanced_as_possible() -> None:
    task = make_large((10, 10, 10))
    for seed in range(5):
        counts = sorted(
            [label for _, label in task.demonstrations(5, seed=seed)].count(c) for c in range(3)
        )
        assert counts == [1, 2, 2]
    scarce = make_large((10, 1))
    labels = [label for _, label in scarce.demonstrations(4, seed=0)]
    assert sorted(labels) == [0, 0, 0, 1]


def test_demos_never_include_the_query_from_the_same_task() -> None:
    task = make_task()
    k_shot = 4
    demos = task.demonstrations(k_shot, seed=0)
    demo_texts = {text for text, _ in demos}
    for text, prompt in zip(task.texts, task.prompts(k_shot=k_shot, seed=0), strict=True):
        blocks = prompt.split("\n\n")
        assert len(blocks) == k_shot + 1
        assert blocks[-1] == f"Review: {text}\nSentiment:"
        shown = [block.split("\n")[0].removeprefix("Review: ") for block in blocks[:-1]]
        assert text not in shown
        assert len(set(shown)) == k_shot
        if text not in demo_texts:
            assert set(shown) == demo_texts
    # the largest possible K from the task itself is len(task) - 1
    assert len(task.prompts(k_shot=5)) == 6
    with pytest.raises(InputError, match="offers only 5"):
        task.prompts(k_shot=6)


def test_demo_pool_errors() -> None:
    task = make_task()
    with pytest.raises(InputError, match="offers only 2"):
        task.prompts(k_shot=3, demo_pool=task.subset([0, 1]))
    with pytest.raises(InputError, match="same label names"):
        task.prompts(k_shot=1, demo_pool=make_large())
    with pytest.raises(InputError, match="0 or more"):
        task.prompts(k_shot=-1)


def test_with_label_words() -> None:
    task = make_task().with_label_words([" bad", " good"])
    assert task.label_words == (" bad", " good")
    assert task.prompt("x", template=1, demos=[("y", 1)]) == "y => good\n\nx =>"
    with pytest.raises(InputError, match="one word per class"):
        task.with_label_words([" bad"])


# ----------------------------------------------------------------- loading
@pytest.mark.parametrize("name", BUILTIN_TASKS)
def test_builtin_tasks(name: str) -> None:
    task = load_task(name)
    size, n_labels = {"sentiment": (200, 2), "yesno": (200, 2), "topic": (240, 4), "nli": (240, 3)}[
        name
    ]
    assert task.name == name
    assert len(task) == size
    assert list(task.label_counts().values()) == [size // n_labels] * n_labels
    assert len(set(task.texts)) == size
    assert len({text.lower().strip(" .?!") for text in task.texts}) == size
    assert len(task.templates) == 3
    # interleaved, not sorted by class
    assert all(0 < task.labels[:30].count(label) < 30 for label in range(n_labels))
    assert all(prompt.endswith((":", "is")) for prompt in task.prompts(template=1))


def test_builtin_label_words_and_lengths() -> None:
    sentiment, yesno = load_task("sentiment"), load_task("yesno")
    assert sentiment.label_names == ("negative", "positive")
    assert sentiment.label_words == (" negative", " positive")
    assert yesno.label_names == ("no", "yes")
    assert yesno.label_words == (" No", " Yes")
    assert all(6 <= len(text.split()) <= 25 for text in sentiment.texts)
    assert all(text.endswith("?") for text in yesno.texts)
    assert load_task("yesno", label_names=["yes", "no"]).label_words == (" Yes", " No")
    assert load_task("sentiment", name="s", templates=["{text}!"]).templates == ("{text}!",)
    topic, nli = load_task("topic"), load_task("nli")
    assert topic.label_words == (" World", " Sports", " Business", " Technology")
    assert nli.label_names == ("entailment", "neutral", "contradiction")
    assert nli.label_words == (" Yes", " Maybe", " No")
    assert all(text.count("\nHypothesis: ") == 1 for text in nli.texts)
    words = {name.lower() for name in topic.label_names}
    assert not any(words & set(text.lower().split()) for text in topic.texts)


def test_unknown_builtin_name() -> None:
    with pytest.raises(InputError) as caught:
        load_task("sentimnet")
    message = str(caught.value)
    assert "Did you mean 'sentiment'" in message
    assert "sentiment, yesno, topic, nli" in message and ".jsonl" in message


def write_lines(path: Path, rows: list[Any]) -> Path:
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    task = make_task(texts=('a "quoted", text', "line\nbreak", "ünïcödé", "d", "e", "f"))
    path = tmp_path / "sub" / f"toy{suffix}"
    save_task(task, path)
    loaded = load_task(path, templates=task.templates)
    assert loaded == task
    assert loaded.name == "toy"
    assert not list(path.parent.glob("*.partial"))


def test_saved_jsonl_rows(tmp_path: Path) -> None:
    path = tmp_path / "toy.jsonl"
    save_task(make_task(), path)
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert first == {"text": "good film", "label": "positive"}
    with pytest.raises(InputError, match="unsupported extension"):
        save_task(make_task(), tmp_path / "toy.txt")


def test_file_defaults(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "qa.jsonl",
        [{"q": "Is it?", "a": "yes"}, {"q": "Is it not?", "a": "no"}, {"q": "Hm?", "a": "maybe"}],
    )
    task = load_task(path, text_column="q", label_column="a")
    assert task.label_names == ("maybe", "no", "yes")
    assert task.label_words == (" maybe", " no", " yes")
    assert task.templates == ("{text}\nAnswer:",)
    assert task.labels == (2, 1, 0)
    assert task.name == "qa"


def test_integer_labels(tmp_path: Path) -> None:
    rows = [{"text": "x", "label": 1}, {"text": "y", "label": 0}]
    path = write_lines(tmp_path / "ints.jsonl", rows)
    with pytest.raises(InputError, match="Pass label_names="):
        load_task(path)
    task = load_task(path, label_names=["bad", "good"])
    assert task.labels == (1, 0) and task.label_words == (" bad", " good")
    csv_path = tmp_path / "ints.csv"
    csv_path.write_text("text,label\nx,1\ny,0\n", encoding="utf-8")
    assert load_task(csv_path, label_names=["bad", "good"]).labels == (1, 0)
    with pytest.raises(InputError, match="class index 2 is out of range"):
        write_lines(path, [*rows, {"text": "z", "label": 2}])
        load_task(path, label_names=["bad", "good"])


def test_json_list_file(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"text": "a", "label": "x"}, {"text": "b", "label": "y"}]))
    assert load_task(path).texts == ("a", "b")


@pytest.mark.parametrize(
    ("filename", "content", "kwargs", "message"),
    [
        ("missing.jsonl", None, {}, "does not exist"),
        ("data.txt", "text,label\n", {}, "unsupported extension '.txt'"),
        ("empty.jsonl", "", {}, "holds no examples"),
        ("blank.jsonl", "\n\n", {}, "holds no examples"),
        ("empty.csv", "", {}, "is empty"),
        ("header.csv", "text,label\n", {}, "no examples"),
        ("cols.csv", "sentence,label\nhi,a\n", {}, "no column 'text'; its columns are"),
        ("cols.jsonl", '{"sentence": "hi", "label": "a"}\n', {}, "its keys are ['label'"),
        (
            "bad.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b", "label": \n',
            {},
            "line 2 of bad.jsonl is not valid JSON",
        ),
        ("array.jsonl", '["a", "x"]\n', {}, "not an object"),
        (
            "other.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b", "label": "z"}\n',
            {"label_names": ["x", "y"]},
            "line 2 of other.jsonl: the label 'z' is not among the label names ['x', 'y']",
        ),
        ("float.jsonl", '{"text": "a", "label": 1.5}\n', {}, "is a float"),
        ("blanktext.csv", "text,label\n ,a\nb,c\n", {}, "line 2 of blanktext.csv: the text"),
        ("one.jsonl", '{"text": "a", "label": "x"}\n', {}, "at least 2"),
    ],
)
def test_file_errors(
    tmp_path: Path, filename: str, content: str | None, kwargs: dict[str, Any], message: str
) -> None:
    path = tmp_path / filename
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        load_task(path, **kwargs)
    assert message in str(caught.value)


def test_folder_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a folder"):
        load_task(tmp_path)


# ---------------------------------------------------------------- datasets
def test_dataset_with_class_label() -> None:
    import datasets

    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["negative", "positive"]),
        }
    )
    data = datasets.Dataset.from_dict(
        {"sentence": ["good", "bad", "fine"], "label": [1, 0, 1]}, features=features
    )
    task = task_from_dataset(data, text_column="sentence", name="sst")
    assert task.label_names == ("negative", "positive")
    assert task.label_words == (" negative", " positive")
    assert task.labels == (1, 0, 1)
    assert task.name == "sst"
    with pytest.raises(InputError, match="its columns are"):
        task_from_dataset(data)
    with pytest.raises(InputError, match="pick one split"):
        task_from_dataset(datasets.DatasetDict({"train": data}), text_column="sentence")


def test_dataset_with_string_labels_and_unlabelled_rows() -> None:
    import datasets

    data = datasets.Dataset.from_dict({"text": ["a", "b"], "label": ["yes", "no"]})
    assert task_from_dataset(data).label_names == ("no", "yes")
    unlabelled = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [-1, -1]})
    with pytest.raises(InputError, match="unlabelled"):
        task_from_dataset(unlabelled, label_names=["no", "yes"])


# ---------------------------------------------------------- real tokenizers
@pytest.mark.real_model
@pytest.mark.parametrize("fixture", ["smollm2", "gemma3"])
def test_builtin_label_words_are_single_tokens(
    fixture: str, request: pytest.FixtureRequest
) -> None:
    model = request.getfixturevalue(fixture)
    for name in BUILTIN_TASKS:
        task = load_task(name)
        assert len(set(model.token_ids(task.label_words))) == task.n_labels
