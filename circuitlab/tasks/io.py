"""Loading classification tasks (built-in, JSON lines, CSV, ``datasets``) and saving them.

Every source goes through one path: rows of ``(text, raw label)`` become a
`circuitlab.tasks.task.ClassificationTask`. A raw label is either a label name (a
string) or a class index (an integer; in CSV files, a string of digits that is not a label
name).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circuitlab.checks import checked_arguments
from circuitlab.errors import InputError
from circuitlab.files import output_file, read_text_file
from circuitlab.tasks.task import ClassificationTask

if TYPE_CHECKING:
    import datasets

__all__ = ["BUILTIN_TASKS", "DEFAULT_FILE_TEMPLATES", "load_task", "save_task", "task_from_dataset"]

DEFAULT_FILE_TEMPLATES: tuple[str, ...] = ("{text}\nAnswer:",)
"""Templates of a task loaded from a file or dataset when none are given."""

_JSON_SUFFIXES = (".jsonl", ".json")
_CSV_SUFFIXES = (".csv",)
_SUFFIXES = _JSON_SUFFIXES + _CSV_SUFFIXES


@dataclass(frozen=True)
class _Builtin:
    file: str
    label_names: tuple[str, ...]
    label_words: tuple[str, ...]
    templates: tuple[str, ...]


_BUILTINS: dict[str, _Builtin] = {
    "sentiment": _Builtin(
        file="sentiment.jsonl",
        label_names=("negative", "positive"),
        label_words=(" negative", " positive"),
        templates=(
            "Review: {text}\nSentiment:",
            "{text}\nThe sentiment of this review is",
            "Movie review: {text}\nIs this review positive or negative? Answer:",
        ),
    ),
    "yesno": _Builtin(
        file="yesno.jsonl",
        label_names=("no", "yes"),
        label_words=(" No", " Yes"),
        templates=(
            "Question: {text}\nAnswer:",
            "{text}\nThe answer (Yes or No) is:",
            "Q: {text}\nA:",
        ),
    ),
    "topic": _Builtin(
        file="topic.jsonl",
        label_names=("world", "sports", "business", "technology"),
        label_words=(" World", " Sports", " Business", " Technology"),
        templates=(
            "Article: {text}\nTopic:",
            "{text}\nThe topic of this news article is",
            "News: {text}\nIs this about World, Sports, Business or Technology? Answer:",
        ),
    ),
    "nli": _Builtin(
        file="nli.jsonl",
        label_names=("entailment", "neutral", "contradiction"),
        label_words=(" Yes", " Maybe", " No"),
        templates=(
            "Premise: {text}\nDoes the premise imply the hypothesis? Yes, No, or Maybe?\nAnswer:",
            "{text}\nGiven the first sentence, is the hypothesis true? Yes, No, or Maybe? Answer:",
            "Text: {text}\nQuestion: Is the hypothesis true? Answer Yes, No, or Maybe.\nAnswer:",
        ),
    ),
}

BUILTIN_TASKS: tuple[str, ...] = tuple(_BUILTINS)
"""Names `load_task` knows, all written for circuitlab and class-balanced:
``sentiment`` (200 movie-review sentences, negative/positive), ``yesno`` (200
general-knowledge questions, No/Yes), ``topic`` (240 news leads, World/Sports/Business/
Technology, 60 each) and ``nli`` (240 premise/hypothesis pairs, entailment/neutral/
contradiction as Yes/Maybe/No, 80 each)."""


@dataclass(frozen=True)
class _Row:
    """One example before label mapping; ``where`` locates it for error messages."""

    text: Any
    label: Any
    where: str


@checked_arguments
def load_task(
    source: str | os.PathLike[str],
    *,
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    label_words: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    name: str | None = None,
) -> ClassificationTask:
    """A task from a built-in name or a ``.jsonl`` / ``.json`` / ``.csv`` file.

    Args:
        source: one of `BUILTIN_TASKS`, or a path. ``.jsonl`` and ``.json`` files hold
            one JSON object per line (a ``.json`` file holding one JSON list of objects also
            works); ``.csv`` files have a header row.
        text_column: the column (key) holding the text. Ignored for built-in tasks.
        label_column: the column holding the label: a label name or a class index.
            Ignored for built-in tasks.
        label_names: class names in class order. Default: the built-in task's own, or the
            sorted distinct string labels of the file (required when labels are indices).
        label_words: one next-token word per class. Default: the built-in task's own, or
            ``" " + name`` per label name.
        templates: prompt templates with one ``{text}`` field. Default: the built-in task's 3
            templates, or ``("{text}\\nAnswer:",)``.
        name: the task's name. Default: the built-in name or the file's stem.

    Returns:
        The task, examples in file order.

    Example:
        >>> task = load_task("sentiment")
        >>> len(task), task.label_words
        (200, (' negative', ' positive'))
        >>> load_task("reviews.csv", text_column="sentence", label_names=["neg", "pos"])
    """
    if isinstance(source, str) and source in _BUILTINS:
        return _load_builtin(source, label_names, label_words, templates, name)
    path = _existing_file(source)
    if path.suffix.lower() in _CSV_SUFFIXES:
        rows = _csv_rows(path, text_column, label_column)
    else:
        rows = _json_rows(path, text_column, label_column)
    return _build_task(
        rows,
        label_names=label_names,
        label_words=label_words,
        templates=DEFAULT_FILE_TEMPLATES if templates is None else templates,
        name=path.stem if name is None else name,
        source=str(path),
        digit_strings_are_indices=path.suffix.lower() in _CSV_SUFFIXES,
    )


def task_from_dataset(
    dataset: datasets.Dataset,
    *,
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    label_words: Sequence[str] | None = None,
    templates: Sequence[str] | None = None,
    name: str = "dataset",
) -> ClassificationTask:
    """A task from a Hugging Face ``datasets.Dataset`` (one split).

    Args:
        dataset: the dataset; its label column holds label names or class indices.
        text_column: the column holding the text.
        label_column: the column holding the label.
        label_names: class names in class order. Default: the names of a ``ClassLabel``
            feature, else the sorted distinct string labels.
        label_words: one next-token word per class. Default: ``" " + name`` per label name.
        templates: prompt templates. Default: ``("{text}\\nAnswer:",)``.
        name: the task's name.

    Returns:
        The task, examples in dataset order.

    Example:
        >>> sst2 = datasets.load_dataset("glue", "sst2", split="validation")
        >>> task = task_from_dataset(sst2, text_column="sentence", name="sst2")
        >>> task.label_names
        ('negative', 'positive')
    """
    column_names = getattr(dataset, "column_names", None)
    if not isinstance(column_names, list):
        hint = (
            " It looks like a DatasetDict: pick one split, e.g. dataset['train']."
            if isinstance(column_names, dict)
            else ""
        )
        raise InputError(
            f"task_from_dataset expects a datasets.Dataset, got {type(dataset).__name__}.{hint}"
        )
    for column in (text_column, label_column):
        if column not in column_names:
            raise InputError(
                f"The dataset has no column {column!r}; its columns are {column_names}. Pass "
                f"text_column= and label_column= naming the right ones."
            )
    from datasets import ClassLabel

    feature = dataset.features[label_column]
    if label_names is None and isinstance(feature, ClassLabel):
        label_names = tuple(feature.names)
    rows = (
        _Row(text, label, f"row {index}")
        for index, (text, label) in enumerate(
            zip(dataset[text_column], dataset[label_column], strict=True)
        )
    )
    return _build_task(
        rows,
        label_names=label_names,
        label_words=label_words,
        templates=DEFAULT_FILE_TEMPLATES if templates is None else templates,
        name=name,
        source=f"dataset {name!r}",
        digit_strings_are_indices=False,
    )


def save_task(task: ClassificationTask, path: str | os.PathLike[str]) -> None:
    """Write a task's examples as ``{"text", "label"}`` rows with label names, atomically.

    ``.jsonl`` / ``.json`` give JSON lines, ``.csv`` a CSV file with a header. Label words and
    templates are not stored; `load_task` recovers the classes from the label names
    (sorted, unless ``label_names=`` is passed, which also keeps classes without examples).

    Args:
        task: the task to write.
        path: the target file; its folder is created if needed. An existing file is replaced.

    Example:
        >>> save_task(load_task("yesno").balanced_sample(20), "yesno-20.jsonl")
    """
    if not isinstance(task, ClassificationTask):
        raise InputError(f"save_task expects a ClassificationTask, got {type(task).__name__}.")
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in _SUFFIXES:
        raise InputError(
            f"Cannot save a task as {str(target)!r}: unsupported extension {suffix or '(none)'!r}. "
            f"Use one of {list(_SUFFIXES)}."
        )
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            f"Cannot create the folder {target.parent} ({error.strerror}). Save to a writable path."
        ) from error
    names = [task.label_names[label] for label in task.labels]
    with output_file(target) as tmp:
        with tmp.open("w", encoding="utf-8", newline="") as handle:
            if suffix in _CSV_SUFFIXES:
                writer = csv.writer(handle)
                writer.writerow(["text", "label"])
                writer.writerows(zip(task.texts, names, strict=True))
            else:
                for text, label in zip(task.texts, names, strict=True):
                    handle.write(json.dumps({"text": text, "label": label}, ensure_ascii=False))
                    handle.write("\n")
        tmp.chmod(0o644)


# ------------------------------------------------------------------ sources
def _load_builtin(
    source: str,
    label_names: Sequence[str] | None,
    label_words: Sequence[str] | None,
    templates: Sequence[str] | None,
    name: str | None,
) -> ClassificationTask:
    spec = _BUILTINS[source]
    data = resources.files("circuitlab.tasks").joinpath("data", spec.file)
    with resources.as_file(data) as path:
        rows = _json_rows(path, "text", "label")
    names = spec.label_names if label_names is None else _names_tuple(label_names)
    if label_words is None:
        own = dict(zip(spec.label_names, spec.label_words, strict=True))
        label_words = tuple(own.get(label, " " + label) for label in names)
    return _build_task(
        rows,
        label_names=names,
        label_words=label_words,
        templates=spec.templates if templates is None else templates,
        name=source if name is None else name,
        source=f"built-in task {source!r}",
        digit_strings_are_indices=False,
    )


def _existing_file(source: str | os.PathLike[str]) -> Path:
    if not isinstance(source, (str, os.PathLike)):
        raise InputError(
            f"A task source must be a built-in name or a path, got {type(source).__name__}. "
            f"For a datasets.Dataset use task_from_dataset()."
        )
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix not in _SUFFIXES:
            raise InputError(
                f"Cannot read tasks from {str(path)!r}: unsupported extension "
                f"{suffix or '(none)'!r}. Use a JSON lines ({', '.join(_JSON_SUFFIXES)}) or CSV "
                f"file, or a built-in task: {', '.join(BUILTIN_TASKS)}."
            )
        return path
    if path.exists():
        raise InputError(f"{str(path)!r} is a folder, not a file. Pass the path of a data file.")
    if suffix in _SUFFIXES or isinstance(source, os.PathLike) or len(path.parts) > 1:
        raise InputError(
            f"The task file {str(path)!r} does not exist (looked in {Path.cwd()}). Check the "
            f"path, or use a built-in task: {', '.join(BUILTIN_TASKS)}."
        )
    close = difflib.get_close_matches(str(source), BUILTIN_TASKS, n=1)
    suggestion = f" Did you mean {close[0]!r}?" if close else ""
    raise InputError(
        f"Unknown task {str(source)!r}.{suggestion} Built-in tasks are "
        f"{', '.join(BUILTIN_TASKS)}; a path to a .jsonl, .json or .csv file also works."
    )


def _json_rows(path: Path, text_column: str, label_column: str) -> list[_Row]:
    content = read_text_file(path, "task file")
    if content.lstrip().startswith("["):
        try:
            records = json.loads(content)
        except json.JSONDecodeError as error:
            raise InputError(
                f"{str(path)!r} starts like a JSON list but is not valid JSON (line "
                f"{error.lineno}: {error.msg}). Fix the file or write one JSON object per line."
            ) from None
        numbered: Iterator[tuple[str, Any]] = (
            (f"item {index} of {path.name}", record) for index, record in enumerate(records)
        )
    else:
        numbered = _json_lines(path, content)
    rows = []
    for where, record in numbered:
        if not isinstance(record, dict):
            raise InputError(
                f"{where} is a JSON {type(record).__name__}, not an object. Write each example "
                f'as {{"{text_column}": ..., "{label_column}": ...}}.'
            )
        for column in (text_column, label_column):
            if column not in record:
                raise InputError(
                    f"{where} has no key {column!r}; its keys are {sorted(record)}. Pass "
                    f"text_column= and label_column= naming the right keys."
                )
        rows.append(_Row(record[text_column], record[label_column], where))
    if not rows:
        raise InputError(f"{str(path)!r} holds no examples. Add at least one JSON object.")
    return rows


def _json_lines(path: Path, content: str) -> Iterator[tuple[str, Any]]:
    for number, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"line {number} of {path.name}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as error:
            raise InputError(
                f"{where} is not valid JSON ({error.msg}): {line[:80]!r}. Each line must be "
                f"one JSON object."
            ) from None


def _csv_rows(path: Path, text_column: str, label_column: str) -> list[_Row]:
    reader = csv.DictReader(io.StringIO(read_text_file(path, "task file"), newline=""))
    header = reader.fieldnames or []
    if not header:
        raise InputError(f"{str(path)!r} is empty. Write a header row and one row per example.")
    for column in (text_column, label_column):
        if column not in header:
            raise InputError(
                f"{str(path)!r} has no column {column!r}; its columns are {header}. Pass "
                f"text_column= and label_column= naming the right ones."
            )
    rows = [
        _Row(record[text_column], record[label_column], f"line {reader.line_num} of {path.name}")
        for record in reader
    ]
    if not rows:
        raise InputError(f"{str(path)!r} has a header but no examples. Add at least one row.")
    return rows


# ----------------------------------------------------------- one code path
def _build_task(
    rows: Iterator[_Row] | list[_Row],
    *,
    label_names: Sequence[str] | None,
    label_words: Sequence[str] | None,
    templates: Sequence[str],
    name: str,
    source: str,
    digit_strings_are_indices: bool,
) -> ClassificationTask:
    rows = list(rows)
    if not rows:
        raise InputError(f"{source} holds no examples. Give at least one example.")
    for row in rows:
        if not isinstance(row.text, str) or not row.text.strip():
            raise InputError(
                f"{row.where}: the text is {row.text!r}, expected a non-empty string. Fill it "
                f"in or remove the example."
            )
    names = None if label_names is None else _names_tuple(label_names)
    raw = [_raw_label(row, names, digit_strings_are_indices) for row in rows]
    if names is None:
        if any(isinstance(label, int) for label in raw):
            first = next(
                row for row, label in zip(rows, raw, strict=True) if isinstance(label, int)
            )
            raise InputError(
                f"{first.where} gives the label as the class index {first.label!r}, so the class "
                f"names are unknown. Pass label_names= in class order, e.g. "
                f'label_names=["negative", "positive"].'
            )
        names = tuple(sorted(set(raw)))
    labels = [_label_index(row, label, names) for row, label in zip(rows, raw, strict=True)]
    words = tuple(" " + label for label in names) if label_words is None else label_words
    return ClassificationTask(
        name=name,
        texts=tuple(row.text for row in rows),
        labels=tuple(labels),
        label_names=names,
        label_words=words,
        templates=templates,
    )


def _names_tuple(label_names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(label_names, str):
        raise InputError(
            f"label_names must be a list of names, got the string {label_names!r}. Pass e.g. "
            f'label_names=["negative", "positive"].'
        )
    names = tuple(label_names)
    bad = [value for value in names if not isinstance(value, str)]
    if bad:
        raise InputError(f"label_names must be strings, got {bad[0]!r} in {list(names)}.")
    return names


def _raw_label(row: _Row, names: tuple[str, ...] | None, digit_strings: bool) -> str | int:
    """The label as a name (str) or a class index (int)."""
    label = row.label
    if isinstance(label, bool) or not isinstance(label, (str, int)):
        if hasattr(label, "__index__") and not isinstance(label, bool):
            return int(label)  # numpy integers from a dataset
        raise InputError(
            f"{row.where}: the label {label!r} is a {type(label).__name__}; expected a label "
            f"name (string) or a class index (integer)."
        )
    if isinstance(label, str) and digit_strings and (names is None or label not in names):
        stripped = label.strip()
        if stripped.lstrip("-").isdigit():
            return int(stripped)
    return label


def _label_index(row: _Row, label: str | int, names: tuple[str, ...]) -> int:
    if isinstance(label, int):
        if not 0 <= label < len(names):
            unlabelled = " (-1 usually marks an unlabelled test split)" if label == -1 else ""
            raise InputError(
                f"{row.where}: class index {label}{unlabelled} is out of range for the "
                f"{len(names)} classes {list(names)} (0 .. {len(names) - 1}). Use labelled "
                f"examples, or fix label_names=."
            )
        return label
    if label not in names:
        raise InputError(
            f"{row.where}: the label {label!r} is not among the label names {list(names)}. "
            f"Fix the label, or pass label_names= listing every class."
        )
    return names.index(label)
