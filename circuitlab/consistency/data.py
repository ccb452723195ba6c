"""Paraphrase tasks: the same inputs under many instruction paraphrases (arXiv 2501.11041).

A `ParaphraseTask` is a `circuitlab.tasks.ClassificationTask` whose templates are instruction
paraphrases of one prompt, split into *locating* paraphrases (used to find consistency heads)
and *held-out* paraphrases (used to evaluate an edit). Every paraphrase is answered with the
same single-token label words, which follow the rendered paraphrase directly.

circuitlab ships paraphrase sets written for it (`PARAPHRASE_TASKS`, in
``consistency/data/paraphrases.json``) over the inputs of the built-in tasks; users bring
their own inputs (JSON lines or CSV) and paraphrases (a list, or a ``.txt`` / ``.json`` /
``.jsonl`` file) through `load_paraphrase_task`.
"""

from __future__ import annotations

import dataclasses
import json
import operator
import os
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circuitlab.checks import check_number, checked_arguments
from circuitlab.errors import InputError
from circuitlab.files import read_text_file
from circuitlab.tasks import BUILTIN_TASKS, ClassificationTask, load_task

if TYPE_CHECKING:
    from circuitlab.model import ModelHandle

__all__ = [
    "PARAPHRASE_TASKS",
    "ParaphraseTask",
    "ParaphraseView",
    "load_paraphrase_task",
    "shipped_paraphrases",
]

PARAPHRASE_TASKS: tuple[str, ...] = ("sentiment", "yesno", "topic", "nli")
"""Built-in tasks with shipped paraphrases: 10 each, paraphrases 0-5 locate, 6-9 held out."""

Entry = str | Mapping[str, Any]
"""One paraphrase as given by a user: its template, or a mapping with the keys ``template``
(required), ``label_words`` (optional, must equal every other paraphrase's) and ``split``
(optional, ``"locate"`` or ``"heldout"``)."""

_ENTRY_KEYS = ("template", "label_words", "split")
_SPLITS = ("locate", "heldout")
_PARAPHRASE_SUFFIXES = (".txt", ".json", ".jsonl")


@dataclass(frozen=True, repr=False)
class ParaphraseTask:
    """A classification task whose templates are instruction paraphrases of one prompt.

    Validated on construction (`circuitlab.errors.InputError` on a bad field): at least two
    paraphrases, all different; ``locate`` and ``heldout`` disjoint, non-empty and in range;
    no paraphrase ends with whitespace when the label words start with a space. Paraphrases in
    neither set are allowed (and unused by `locating` / `held_out`).

    A paraphrase task has one set of label words (``task.label_words``), shared by every
    paraphrase: answers under two paraphrases are comparable only then.

    Attributes:
        task: the inputs, labels, label words, and every paraphrase as ``task.templates``.
        locate: template indices of the locating paraphrases. Empty: every paraphrase not in
            ``heldout`` (both empty: the first 60 %, at least one, locate; the rest held out).
        heldout: template indices of the held-out paraphrases. Empty: every paraphrase not in
            ``locate``.

    Example:
        >>> ptask = load_paraphrase_task("sentiment")
        >>> ptask.n_paraphrases, ptask.locate, ptask.heldout
        (10, (0, 1, 2, 3, 4, 5), (6, 7, 8, 9))
        >>> len(ptask.prompts(indices=[0, 1], templates=ptask.heldout))   # 2 inputs x 4
        8
    """

    task: ClassificationTask
    locate: tuple[int, ...] = ()
    heldout: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.task, ClassificationTask):
            raise InputError(
                f"ParaphraseTask needs a ClassificationTask as task=, got "
                f"{type(self.task).__name__}. Build one with circuitlab.tasks.load_task, or use "
                f"load_paraphrase_task."
            )
        count = self.n_paraphrases
        if count < 2:
            raise InputError(
                f"Paraphrase task {self.name!r} has {count} paraphrase ({self.templates[0]!r}); "
                f"consistency compares answers across paraphrases, so with one there are no "
                f"pairs. Give at least two templates, e.g. 6 locating + 4 held-out paraphrases."
            )
        locate = self._indices("locate", self.locate)
        heldout = self._indices("heldout", self.heldout)
        if not locate and not heldout:
            locate = tuple(range(max(1, min(count - 1, round(0.6 * count)))))
        if not locate:
            locate = tuple(i for i in range(count) if i not in heldout)
        if not heldout:
            heldout = tuple(i for i in range(count) if i not in locate)
        for field, chosen in (("locate", locate), ("heldout", heldout)):
            if not chosen:
                raise InputError(
                    f"Paraphrase task {self.name!r}: {field} is empty because the other set "
                    f"takes all {count} paraphrases. Leave at least one paraphrase for {field}."
                )
        overlap = sorted(set(locate) & set(heldout))
        if overlap:
            raise InputError(
                f"Paraphrase task {self.name!r}: paraphrases {overlap} are both locating "
                f"(locate={list(locate)}) and held out (heldout={list(heldout)}). A held-out "
                f"paraphrase must not be used for locating; make the two sets disjoint."
            )
        object.__setattr__(self, "locate", locate)
        object.__setattr__(self, "heldout", heldout)
        self._check_templates()

    def _indices(self, field: str, values: object) -> tuple[int, ...]:
        if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, Sequence):
            raise InputError(
                f"{field} must be a sequence of template indices, got "
                f"{type(values).__name__} {values!r}. Pass e.g. {field}=(0, 1, 2)."
            )
        indices = tuple(_as_index(field, value) for value in values)
        count = self.n_paraphrases
        bad = [index for index in indices if not 0 <= index < count]
        if bad:
            raise InputError(
                f"{field}={list(indices)} of paraphrase task {self.name!r} names paraphrase "
                f"{bad[0]}, but the task has {count} (0 .. {count - 1})."
            )
        repeated = sorted({index for index in indices if indices.count(index) > 1})
        if repeated:
            raise InputError(
                f"{field}={list(indices)} repeats paraphrase(s) {repeated}. Name each once."
            )
        return indices

    def _check_templates(self) -> None:
        seen: dict[str, int] = {}
        for index, template in enumerate(self.templates):
            if template in seen:
                raise InputError(
                    f"Paraphrases {seen[template]} and {index} of task {self.name!r} are the "
                    f"same template {template!r}; identical paraphrases always agree. Remove "
                    f"one or reword it."
                )
            seen[template] = index
            spaced = [word for word in self.label_words if word[:1].isspace()]
            if spaced and template[-1:].isspace():
                raise InputError(
                    f"Paraphrase {index} of task {self.name!r} ({template!r}) ends with "
                    f"whitespace, but the label word {spaced[0]!r} that follows it directly "
                    f"starts with a space, so the prompt would end in "
                    f"{template[-12:] + spaced[0]!r}. Remove the trailing whitespace."
                )

    # ------------------------------------------------------------------ facts
    @property
    def name(self) -> str:
        """The task's name."""
        return self.task.name

    @property
    def templates(self) -> tuple[str, ...]:
        """Every paraphrase (template), in index order."""
        return self.task.templates

    @property
    def n_paraphrases(self) -> int:
        """Number of paraphrases."""
        return len(self.task.templates)

    @property
    def paraphrases(self) -> tuple[int, ...]:
        """Template indices of every paraphrase, ``(0, .., n_paraphrases - 1)``."""
        return tuple(range(self.n_paraphrases))

    @property
    def label_words(self) -> tuple[str, ...]:
        """The label words every paraphrase is answered with, in class order."""
        return self.task.label_words

    def __len__(self) -> int:
        """Number of inputs."""
        return len(self.task)

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={n}" for name, n in self.task.label_counts().items())
        return (
            f"ParaphraseTask({self.name!r}: {len(self)} inputs ({counts}) x "
            f"{self.n_paraphrases} paraphrases (locate {list(self.locate)}, held out "
            f"{list(self.heldout)}), label words {list(self.label_words)})"
        )

    # --------------------------------------------------------------- prompts
    def prompts(
        self, indices: Sequence[int] | None = None, templates: Sequence[int] | None = None
    ) -> list[str]:
        """Zero-shot prompts, input-major: for each input, one prompt per paraphrase.

        Prompt ``k`` is input ``indices[k // P]`` under paraphrase ``templates[k % P]`` with
        ``P = len(templates)``, so ``logits.view(len(indices), P, -1)`` gives
        [input, paraphrase, ...].

        Args:
            indices: input positions (default: every input, in order; repeats allowed).
            templates: template indices of the paraphrases (default: all, in order; no repeats).

        Returns:
            ``len(indices) * len(templates)`` prompts; each one's next token should be the
            input's label word.

        Example:
            >>> ptask.prompts(indices=[0], templates=[0, 7])
            ['Review: ...\\nSentiment:', 'Sentence: ...\\nThis sentence expresses a']
        """
        rows = self._inputs(indices)
        columns = self._paraphrase_indices(templates)
        forms = [self.templates[column] for column in columns]
        return [form.format(text=self.task.texts[row]) for row in rows for form in forms]

    def _inputs(self, indices: Sequence[int] | None) -> list[int]:
        if indices is None:
            return list(range(len(self)))
        if isinstance(indices, (str, bytes)) or not isinstance(indices, Sequence):
            raise InputError(
                f"indices must be a sequence of input positions, got {type(indices).__name__}."
            )
        rows = [_as_index("indices", index) for index in indices]
        bad = [row for row in rows if not 0 <= row < len(self)]
        if bad or not rows:
            raise InputError(
                f"indices={_short(list(indices))} is invalid for paraphrase task {self.name!r} "
                f"of {len(self)} inputs: give at least one position in 0 .. {len(self) - 1}."
            )
        return rows

    def _paraphrase_indices(self, templates: Sequence[int] | None) -> tuple[int, ...]:
        if templates is None:
            return self.paraphrases
        columns = self._indices("templates", templates)
        if not columns:
            raise InputError(
                f"templates=[] selects no paraphrase of task {self.name!r}. Pass template "
                f"indices in 0 .. {self.n_paraphrases - 1}, or None for all."
            )
        return columns

    # ----------------------------------------------------------------- views
    def view(self, templates: Sequence[int], role: str = "custom") -> ParaphraseView:
        """The paraphrases ``templates`` of this task, keeping their template indices.

        Args:
            templates: Indices of the paraphrased instructions the view uses.
            role: Name of the view (``locate``, ``held_out``, ``custom``).
        """
        return ParaphraseView(self, self._paraphrase_indices(templates), role)

    def locating(self) -> ParaphraseView:
        """The locating paraphrases (``locate``) over every input."""
        return self.view(self.locate, "locate")

    def held_out(self) -> ParaphraseView:
        """The held-out paraphrases (``heldout``) over every input."""
        return self.view(self.heldout, "heldout")

    # --------------------------------------------------------------- inputs
    def subset(self, indices: Sequence[int]) -> ParaphraseTask:
        """The inputs at ``indices`` (in that order), with the same paraphrases and split.

        Args:
            indices: Positions of the inputs to keep.
        """
        return dataclasses.replace(self, task=self.task.subset(indices))

    def balanced_sample(self, n: int, *, seed: int = 0) -> ParaphraseTask:
        """``n`` inputs drawn at random, the same number per class (see the task's method).

        Args:
            n: Number of inputs to keep, spread evenly over the labels.
            seed: Seed of the draw.
        """
        return dataclasses.replace(self, task=self.task.balanced_sample(n, seed=seed))

    def split_inputs(
        self, fraction: float = 0.5, *, seed: int = 0
    ) -> tuple[ParaphraseTask, ParaphraseTask]:
        """Two tasks over disjoint inputs (class-balanced, seeded), same paraphrases and split.

        Args:
            fraction: share of the inputs in the first task, in (0, 1); rounded to a count in
                ``1 .. len(self) - 1``.
            seed: random seed of the choice.

        Returns:
            ``(first, rest)``; each keeps the inputs' original order.

        Example:
            >>> probe, evaluate = load_paraphrase_task("sentiment").split_inputs(0.5, seed=0)
            >>> len(probe), len(evaluate)
            (100, 100)
        """
        fraction = check_number("fraction", fraction, lambda f: 0 < f < 1, "between 0 and 1")
        if len(self) < 2:
            raise InputError(
                f"split_inputs needs at least 2 inputs; paraphrase task {self.name!r} has "
                f"{len(self)}. Add inputs."
            )
        n_first = min(len(self) - 1, max(1, round(fraction * len(self))))
        first, rest = self.task.split(n_first, seed=seed, balanced=True)
        return dataclasses.replace(self, task=first), dataclasses.replace(self, task=rest)

    # ---------------------------------------------------------------- model
    def check_label_words(self, model: ModelHandle) -> list[int]:
        """The label words' token ids for ``model``, checked after every paraphrase.

        Each label word must be one token, and appending it to each rendered paraphrase must
        add exactly that token (a paraphrase whose end merges with the label word cannot be
        read with one next-token logit). The first input is used for the check, every input
        for paraphrases that end with ``{text}``.

        Args:
            model: a `circuitlab.model.ModelHandle`.

        Returns:
            One token id per class, in class order.

        Example:
            >>> load_paraphrase_task("nli").check_label_words(circuitlab.load())
            [9230, 7948, 2838]
        """
        model_name = getattr(model, "name", type(model).__name__)
        try:
            ids = model.token_ids(list(self.label_words))
        except InputError as error:
            raise InputError(
                f"Paraphrase task {self.name!r} cannot be answered by {model_name!r}: {error} "
                f"Every paraphrase is answered with the label words {list(self.label_words)}, "
                f"so each must be one token; pass other label_words= to load_paraphrase_task."
            ) from None
        tokenizer = model.tokenizer
        for index, template in enumerate(self.templates):
            texts = self.task.texts if template.endswith("{text}") else self.task.texts[:1]
            for text in texts:
                prompt = template.format(text=text)
                base = tokenizer(prompt, add_special_tokens=False)["input_ids"]
                for word, token in zip(self.label_words, ids, strict=True):
                    full = tokenizer(prompt + word, add_special_tokens=False)["input_ids"]
                    if list(full) != [*base, token]:
                        tail = [tokenizer.decode([t]) for t in full[-3:]]
                        raise InputError(
                            f"Paraphrase {index} of task {self.name!r} ({template!r}) is not "
                            f"single-token-label compatible with {model_name!r}: after it the "
                            f"label word {word!r} is not the one token {token} (the prompt "
                            f"ends in the tokens {tail}). End the paraphrase so that the label "
                            f"word starts a new token (e.g. with ':' or a word, no trailing "
                            f"space)."
                        )
        return ids


@dataclass(frozen=True, repr=False)
class ParaphraseView:
    """Some paraphrases of a `ParaphraseTask` (the locating or held-out ones), over its inputs.

    Template indices are those of the whole task, so results name paraphrases consistently.

    Attributes:
        source: the paraphrase task.
        paraphrases: template indices of the paraphrases in view.
        role: ``"locate"``, ``"heldout"`` or ``"custom"``.
    """

    source: ParaphraseTask
    paraphrases: tuple[int, ...]
    role: str = "custom"

    @property
    def task(self) -> ClassificationTask:
        """The underlying task (inputs, labels, label words, every template)."""
        return self.source.task

    @property
    def name(self) -> str:
        """The task's name."""
        return self.source.name

    @property
    def label_words(self) -> tuple[str, ...]:
        """The label words, in class order."""
        return self.source.label_words

    def __len__(self) -> int:
        """Number of inputs."""
        return len(self.source)

    def __repr__(self) -> str:
        return (
            f"ParaphraseView({self.name!r} {self.role}: {len(self)} inputs x paraphrases "
            f"{list(self.paraphrases)})"
        )

    def prompts(self, indices: Sequence[int] | None = None) -> list[str]:
        """Input-major prompts over the paraphrases in view (see `ParaphraseTask.prompts`).

        Args:
            indices: Inputs to build prompts for (default: all).
        """
        return self.source.prompts(indices, self.paraphrases)


# ----------------------------------------------------------------- loading
@checked_arguments
def load_paraphrase_task(
    source: str | os.PathLike[str],
    *,
    paraphrases: str | os.PathLike[str] | None = None,
    templates: Sequence[Entry] | None = None,
    text_column: str = "text",
    label_column: str = "label",
    label_names: Sequence[str] | None = None,
    label_words: Sequence[str] | None = None,
    locate: Sequence[int] | None = None,
    heldout: Sequence[int] | None = None,
    name: str | None = None,
) -> ParaphraseTask:
    """A paraphrase task: a built-in name, or a file of inputs with your paraphrases.

    Paraphrases come from ``templates=`` or a ``paraphrases=`` file (for a built-in task, the
    shipped ones by default). Each paraphrase is a template with one ``{text}`` field, or a
    mapping ``{"template": ..., "label_words": [...], "split": "locate" | "heldout"}``.
    A paraphrase task has one set of label words: a paraphrase that names its own label words
    must name the same ones as every other (and as ``label_words=``).

    Paraphrase files: ``.txt``, one template per line (blank lines skipped; write a newline
    inside a template as ``\\n``, a tab as ``\\t``, a backslash as ``\\\\``); ``.jsonl``, one
    paraphrase (a JSON string or object) per line; ``.json``, a JSON list of paraphrases.

    Args:
        source: one of `PARAPHRASE_TASKS` (or another built-in task, with paraphrases given),
            or a ``.jsonl`` / ``.json`` / ``.csv`` file of inputs (read by
            `circuitlab.tasks.load_task`).
        paraphrases: a file of paraphrases (not together with ``templates=``).
        templates: the paraphrases as a list (not together with ``paraphrases=``).
        text_column: the column holding the input text (files only).
        label_column: the column holding the label (files only).
        label_names: class names in class order (needed when a file's labels are indices).
        label_words: one single-token word per class. Default: the built-in task's, the
            paraphrases' own, or ``" " + name`` per label name.
        locate: template indices of the locating paraphrases. Default: the shipped split,
            the paraphrases' ``"split"`` keys, or the complement of ``heldout``.
        heldout: template indices of the held-out paraphrases (same defaults).
        name: the task's name. Default: the built-in name or the input file's stem.

    Returns:
        The paraphrase task.

    Example:
        >>> load_paraphrase_task("yesno")
        ParaphraseTask('yesno': 200 inputs (no=100, yes=100) x 10 paraphrases ...)
        >>> load_paraphrase_task("reviews.csv", paraphrases="prompts.txt", heldout=[8, 9])
    """
    if templates is not None and paraphrases is not None:
        raise InputError(
            "Both templates= and paraphrases= were given. Give the paraphrases once: as a "
            "list (templates=) or as a file (paraphrases=)."
        )
    builtin = isinstance(source, str) and source in BUILTIN_TASKS
    where = "templates="
    if paraphrases is not None:
        entries, where = _read_paraphrase_file(paraphrases), str(paraphrases)
    elif templates is not None:  # checked_arguments refuses a lone string or mapping
        entries = list(templates)
    elif builtin and source in PARAPHRASE_TASKS:
        shipped = shipped_paraphrases(source)
        entries, where = list(shipped["templates"]), f"the shipped paraphrases of {source!r}"
        if locate is None and heldout is None:
            locate, heldout = shipped["locate"], shipped["heldout"]
    else:
        known = ", ".join(PARAPHRASE_TASKS)
        raise InputError(
            f"No paraphrases for {str(source)!r}: circuitlab ships paraphrases for {known}. "
            f"Pass them as templates=[...] (each with one {{text}}) or paraphrases='file.txt'."
        )
    forms, words, splits = _parse_entries(entries, where)
    words = _agreed_label_words(words, label_words, where)
    if splits is not None:
        if locate is not None or heldout is not None:
            raise InputError(
                f"The paraphrases in {where} carry 'split' keys and locate=/heldout= were "
                f"given too. Give the split once: in the paraphrases or as arguments."
            )
        locate = [i for i, split in enumerate(splits) if split == "locate"]
        heldout = [i for i, split in enumerate(splits) if split == "heldout"]
    task = load_task(
        source,
        text_column=text_column,
        label_column=label_column,
        label_names=label_names,
        label_words=words,
        templates=forms,
        name=name,
    )
    return ParaphraseTask(
        task,
        locate=() if locate is None else tuple(locate),
        heldout=() if heldout is None else tuple(heldout),
    )


def shipped_paraphrases(task: str) -> dict[str, Any]:
    """The shipped paraphrase set of a built-in task.

    Args:
        task: A built-in task name (see `PARAPHRASE_TASKS`).

    Returns:
        ``{"label_words": [...], "templates": [...], "locate": [...], "heldout": [...]}``.

    Example:
        >>> len(shipped_paraphrases("nli")["templates"])
        10
    """
    if task not in PARAPHRASE_TASKS:
        raise InputError(
            f"No shipped paraphrases for {task!r}. Shipped: {', '.join(PARAPHRASE_TASKS)}."
        )
    data = resources.files("circuitlab.consistency").joinpath("data", "paraphrases.json")
    entry = json.loads(data.read_text(encoding="utf-8"))[task]
    own = load_task(task).label_words
    if tuple(entry["label_words"]) != own:  # the shipped file and the built-in task disagree
        raise InputError(
            f"The shipped paraphrases of {task!r} expect the label words {entry['label_words']} "
            f"but the built-in task has {list(own)}. This is a bug in circuitlab; please report "
            f"it."
        )
    return entry


def _read_paraphrase_file(path: str | os.PathLike[str]) -> list[Entry]:
    file = Path(path)
    suffix = file.suffix.lower()
    if suffix not in _PARAPHRASE_SUFFIXES:
        raise InputError(
            f"Cannot read paraphrases from {str(file)!r}: unsupported extension "
            f"{suffix or '(none)'!r}. Use .txt (one template per line), .jsonl (one per line) "
            f"or .json (a list)."
        )
    content = read_text_file(file, "paraphrase file")
    if suffix == ".txt":
        entries: list[Entry] = [_unescape(line) for line in content.splitlines() if line.strip()]
    elif suffix == ".jsonl":
        entries = [
            _json_value(line, f"line {number} of {file.name}")
            for number, line in enumerate(content.splitlines(), start=1)
            if line.strip()
        ]
    else:
        value = _json_value(content, file.name)
        if not isinstance(value, list):
            raise InputError(
                f"{str(file)!r} holds a JSON {type(value).__name__}; a .json paraphrase file "
                f"holds one JSON list of paraphrases (strings or objects with a 'template')."
            )
        entries = value
    if not entries:
        raise InputError(f"{str(file)!r} holds no paraphrases. Write at least two.")
    return entries


def _parse_entries(
    entries: list[Any], where: str
) -> tuple[list[str], list[tuple[int, tuple[str, ...]]], list[str] | None]:
    """Templates, the label words some paraphrases name, and every paraphrase's split."""
    forms: list[str] = []
    words: list[tuple[int, tuple[str, ...]]] = []
    splits: list[str | None] = []
    for index, entry in enumerate(entries):
        label = f"paraphrase {index} of {where}"
        if isinstance(entry, Mapping):
            unknown = sorted(set(entry) - set(_ENTRY_KEYS))
            if unknown or "template" not in entry:
                raise InputError(
                    f"{label} has the keys {sorted(entry)}; a paraphrase object needs "
                    f"'template' and may have 'label_words' and 'split' (no others)."
                )
            template, split = entry["template"], entry.get("split")
            if entry.get("label_words") is not None:
                words.append((index, _words(label, entry["label_words"])))
            if split is not None and split not in _SPLITS:
                raise InputError(
                    f"{label} has split {split!r}; use 'locate' or 'heldout' (or leave it out)."
                )
        else:
            template, split = entry, None
        forms.append(_check_template(label, template))
        splits.append(split)
    if len(forms) < 2:
        raise InputError(
            f"{where} gives {len(forms)} paraphrase(s); consistency compares answers across "
            f"paraphrases, so one gives no pairs. Give at least two (e.g. 6 locating + 4 "
            f"held-out)."
        )
    given = [split for split in splits if split is not None]
    if given and len(given) != len(splits):
        missing = splits.index(None)
        raise InputError(
            f"Some paraphrases of {where} have a 'split' and paraphrase {missing} has none. "
            f"Give every paraphrase a split, or none (then use locate=/heldout=)."
        )
    return forms, words, (list(given) if given else None)


def _agreed_label_words(
    named: list[tuple[int, tuple[str, ...]]], label_words: Sequence[str] | None, where: str
) -> tuple[str, ...] | None:
    """The one set of label words the paraphrases and ``label_words=`` agree on (or None)."""
    if label_words is not None:
        named = [(-1, _words("label_words=", label_words)), *named]
    for index, words in named[1:]:
        first_index, first = named[0]
        if words != first:
            origin = "label_words=" if first_index < 0 else f"paraphrase {first_index}"
            raise InputError(
                f"Label words differ between paraphrases of {where}: {origin} has "
                f"{list(first)} but paraphrase {index} has {list(words)}. A paraphrase task "
                f"has one set of label words, shared by every paraphrase, so that answers "
                f"compare; give the same label words everywhere (or only once, label_words=)."
            )
    return named[0][1] if named else None


def _words(label: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise InputError(
            f"The label words of {label} must be a list of strings (one per class), got "
            f'{value!r}. Write e.g. [" negative", " positive"].'
        )
    if not all(isinstance(word, str) and word for word in value):
        raise InputError(f"The label words of {label} must be non-empty strings, got {value!r}.")
    return tuple(value)


def _check_template(label: str, template: object) -> str:
    if not isinstance(template, str):
        raise InputError(f"{label} must be a template string, got {type(template).__name__}.")
    hint = (
        'Write every paraphrase with exactly one "{text}" field where the input goes, and '
        'double literal braces ("{{", "}}"), e.g. "Review: {text}\\nSentiment:".'
    )
    try:
        fields = [part for _, part, _, _ in string.Formatter().parse(template) if part is not None]
    except ValueError as error:
        raise InputError(f"{label} ({template!r}) is malformed ({error}). {hint}") from None
    if fields != ["text"]:
        found = "no field" if not fields else f"the fields {fields}"
        raise InputError(f"{label} ({template!r}) has {found}, expected one {{text}}. {hint}")
    return template


def _unescape(line: str) -> str:
    """A ``.txt`` line with ``\\n``, ``\\t`` and ``\\\\`` decoded (other backslashes kept)."""
    out, i = [], 0
    while i < len(line):
        pair = line[i : i + 2]
        if pair in ("\\n", "\\t", "\\\\"):
            out.append({"\\n": "\n", "\\t": "\t", "\\\\": "\\"}[pair])
            i += 2
        else:
            out.append(line[i])
            i += 1
    return "".join(out)


def _json_value(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{where} is not valid JSON ({error.msg}, line {error.lineno}): {text.strip()[:60]!r}."
            f" Write each paraphrase as a JSON string or object."
        ) from None


def _as_index(field: str, value: object) -> int:
    if isinstance(value, bool):
        raise InputError(f"{field} holds {value!r}; indices must be integers.")
    try:
        return operator.index(value)
    except TypeError:
        raise InputError(
            f"{field} holds {value!r} ({type(value).__name__}); indices must be integers."
        ) from None


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
