"""The labelled classification task: texts, gold labels, label words and prompt templates.

A `ClassificationTask` is an immutable value. Every operation (a subset, a split, new
label words) returns a new task; nothing is changed in place. Prompts follow the paper
"When Parts are Greater Than Sums": the label word follows the template directly, and K-shot
prompts put one fixed, class-balanced demonstration set in front of every query.
"""

from __future__ import annotations

import dataclasses
import operator
import random
import string
from collections.abc import Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

from circuitlab.errors import InputError

__all__ = ["ClassificationTask"]

Demo = tuple[str, int]
"""One demonstration: its text and its label index."""


@dataclass(frozen=True, repr=False)
class ClassificationTask:
    """A labelled classification task whose classes are predicted as single next tokens.

    Lists are accepted for every tuple field and stored as tuples. The task is validated on
    construction; a bad field raises `circuitlab.errors.InputError`.

    Attributes:
        name: a short name (``"sentiment"``), used in reprs and reports.
        texts: the examples' texts.
        labels: each example's gold label, an index into ``label_words`` / ``label_names``.
        label_names: a readable name per class (``("negative", "positive")``).
        label_words: what the model should predict next for each class, usually with a
            leading space (``(" negative", " positive")``).
        templates: prompt templates, each with exactly one ``{text}`` field; the label word
            follows the rendered template directly. Literal braces are written ``{{`` ``}}``.
        demo_separator: what joins demonstrations and the query in a K-shot prompt.

    Example:
        >>> task = ClassificationTask(
        ...     name="toy",
        ...     texts=("great film", "awful film"),
        ...     labels=(1, 0),
        ...     label_names=("negative", "positive"),
        ...     label_words=(" negative", " positive"),
        ...     templates=("Review: {text}\\nSentiment:",),
        ... )
        >>> task.label_counts()
        {'negative': 1, 'positive': 1}
        >>> task.prompt("fine film", demos=[("great film", 1)])
        'Review: great film\\nSentiment: positive\\n\\nReview: fine film\\nSentiment:'
    """

    name: str
    texts: tuple[str, ...]
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    label_words: tuple[str, ...]
    templates: tuple[str, ...]
    demo_separator: str = "\n\n"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise InputError(f"The task name must be a string, got {type(self.name).__name__}.")
        for field in ("texts", "labels", "label_names", "label_words", "templates"):
            object.__setattr__(self, field, _as_tuple(field, getattr(self, field)))
        object.__setattr__(self, "labels", tuple(_as_label(x) for x in self.labels))
        if not isinstance(self.demo_separator, str):
            raise InputError(
                f"demo_separator must be a string, got {type(self.demo_separator).__name__}. "
                f'Pass a string such as "\\n\\n".'
            )
        self._check_classes()
        self._check_examples()
        if not self.templates:
            raise InputError(
                f"Task {self.name!r} has no templates. Give at least one, e.g. "
                f'templates=("Review: {{text}}\\nSentiment:",).'
            )
        for index, template in enumerate(self.templates):
            _check_template(index, template)

    def _check_classes(self) -> None:
        names, words = self.label_names, self.label_words
        if len(names) != len(words):
            raise InputError(
                f"Task {self.name!r} has {len(names)} label names {list(names)} but "
                f"{len(words)} label words {list(words)}. Give exactly one label word per class."
            )
        if len(words) < 2:
            raise InputError(
                f"Task {self.name!r} has {len(words)} class(es) {list(names)}; a classification "
                f"task needs at least 2. Give at least two label names and label words."
            )
        for kind, values in (("label name", names), ("label word", words)):
            bad = [value for value in values if not isinstance(value, str) or value == ""]
            if bad:
                raise InputError(
                    f"Every {kind} must be a non-empty string; task {self.name!r} has {bad[0]!r}."
                )
            repeated = sorted({value for value in values if values.count(value) > 1})
            if repeated:
                raise InputError(
                    f"Task {self.name!r} repeats the {kind}(s) {repeated} in {list(values)}. "
                    f"Each class needs its own {kind}."
                )

    def _check_examples(self) -> None:
        if not self.texts:
            raise InputError(
                f"Task {self.name!r} has no examples (texts is empty). Give at least one example."
            )
        if len(self.texts) != len(self.labels):
            raise InputError(
                f"Task {self.name!r} has {len(self.texts)} texts but {len(self.labels)} labels. "
                f"Give exactly one label per text."
            )
        for index, text in enumerate(self.texts):
            if not isinstance(text, str) or not text.strip():
                raise InputError(
                    f"Text {index} of task {self.name!r} is {text!r}; every text must be a "
                    f"non-empty string. Remove or fill in that example."
                )
        for index, label in enumerate(self.labels):
            if not 0 <= label < self.n_labels:
                raise InputError(
                    f"Label {index} of task {self.name!r} is {label}, but the task has "
                    f"{self.n_labels} classes {list(self.label_names)} (labels 0 .. "
                    f"{self.n_labels - 1}). Fix the label or add the missing class."
                )

    # ------------------------------------------------------------------ facts
    def __len__(self) -> int:
        return len(self.texts)

    @property
    def n_labels(self) -> int:
        """Number of classes."""
        return len(self.label_words)

    def label_counts(self) -> dict[str, int]:
        """Number of examples per class, keyed by label name, in class order (zeros included)."""
        counts = dict.fromkeys(self.label_names, 0)
        for label in self.labels:
            counts[self.label_names[label]] += 1
        return counts

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}={count}" for name, count in self.label_counts().items())
        return (
            f"ClassificationTask({self.name!r}: {len(self)} examples ({counts}), "
            f"label words {list(self.label_words)}, {len(self.templates)} template(s))"
        )

    # --------------------------------------------------------------- subsets
    def subset(self, indices: Sequence[int]) -> ClassificationTask:
        """The examples at ``indices``, in that order (repeats allowed).

        Args:
            indices: positions in this task, each in ``0 .. len(task) - 1``.

        Returns:
            A task with the same classes and templates and ``len(indices)`` examples.

        Example:
            >>> task.subset([2, 0]).texts == (task.texts[2], task.texts[0])
            True
        """
        chosen = [self._index(index) for index in indices]
        if not chosen:
            raise InputError(
                f"subset() got no indices; a task needs at least one example. Pass positions "
                f"in 0 .. {len(self) - 1}."
            )
        return dataclasses.replace(
            self,
            texts=tuple(self.texts[i] for i in chosen),
            labels=tuple(self.labels[i] for i in chosen),
        )

    def split(
        self, n_first: int, *, seed: int = 0, balanced: bool = True
    ) -> tuple[ClassificationTask, ClassificationTask]:
        """Split into ``n_first`` examples and the rest (e.g. demos/train versus test).

        Both parts keep the examples' original order. The choice depends only on ``seed``.

        Args:
            n_first: size of the first part, ``1 .. len(task) - 1``.
            seed: random seed of the choice.
            balanced: keep each class's share in both parts (stratified; shares are rounded by
                largest remainder). ``False`` draws uniformly at random.

        Returns:
            ``(first, rest)``, of sizes ``n_first`` and ``len(task) - n_first``.

        Example:
            >>> train, test = task.split(50, seed=1)     # a 100/100 task of 200
            >>> train.label_counts(), len(test)
            ({'negative': 25, 'positive': 25}, 150)
        """
        n_first = _as_count("n_first", n_first)
        if not 0 < n_first < len(self):
            raise InputError(
                f"split() needs 0 < n_first < {len(self)} (the task's size) so that both parts "
                f"are non-empty, got n_first={n_first}."
            )
        rng = random.Random(seed)
        if balanced:
            groups = self._indices_by_class()
            quotas = _largest_remainder(n_first, [len(group) for group in groups])
            first: list[int] = []
            for group, quota in zip(groups, quotas, strict=True):
                rng.shuffle(group)
                first.extend(group[:quota])
        else:
            first = rng.sample(range(len(self)), n_first)
        chosen = set(first)
        rest = [index for index in range(len(self)) if index not in chosen]
        return self.subset(sorted(chosen)), self.subset(rest)

    def balanced_sample(self, n: int, *, seed: int = 0) -> ClassificationTask:
        """``n`` examples drawn at random, the same number from every class.

        Args:
            n: how many examples; a multiple of ``n_labels`` no larger than ``n_labels`` times
                the smallest class.
            seed: random seed of the draw.

        Returns:
            A task of ``n`` examples in their original order.

        Example:
            >>> task.balanced_sample(10, seed=0).label_counts()
            {'negative': 5, 'positive': 5}
        """
        n = _as_count("n", n)
        per_class, remainder = divmod(n, self.n_labels)
        groups = self._indices_by_class()
        smallest = min(len(group) for group in groups)
        if n <= 0 or remainder or per_class > smallest:
            raise InputError(
                f"balanced_sample({n}) of task {self.name!r} is impossible: n must be a positive "
                f"multiple of {self.n_labels} (the number of classes) and at most "
                f"{self.n_labels * smallest} (the smallest class has {smallest} examples; "
                f"counts {self.label_counts()}). Pick such an n."
            )
        rng = random.Random(seed)
        chosen = [index for group in groups for index in rng.sample(group, per_class)]
        return self.subset(sorted(chosen))

    # --------------------------------------------------------------- prompts
    def prompt(self, text: str, *, template: int = 0, demos: Sequence[Demo] = ()) -> str:
        """One prompt: the rendered demonstrations, then the query without its label.

        Each demonstration is ``template.format(text=demo_text) + label_words[demo_label]``;
        demonstrations and the query are joined by ``demo_separator``.

        Args:
            text: the query text.
            template: index of the template in ``templates``.
            demos: ``(text, label index)`` pairs, in the order they appear.

        Returns:
            The prompt; the model's next token should be the query's label word.

        Example:
            >>> task.prompt("so good", demos=[("dull", 0)])
            'Review: dull\\nSentiment: negative\\n\\nReview: so good\\nSentiment:'
        """
        form = self.templates[self._template_index(template)]
        parts = []
        for position, demo in enumerate(demos):
            demo_text, demo_label = self._check_demo(position, demo)
            parts.append(form.format(text=demo_text) + self.label_words[demo_label])
        if not isinstance(text, str):
            raise InputError(f"The query text must be a string, got {type(text).__name__}.")
        parts.append(form.format(text=text))
        return self.demo_separator.join(parts)

    def demonstrations(
        self, k_shot: int, *, demo_pool: ClassificationTask | None = None, seed: int = 0
    ) -> list[Demo]:
        """The fixed demonstration set that `prompts` uses for ``k_shot`` and ``seed``.

        Classes take turns (round robin, in a seed-dependent class order) so the set is as
        balanced as the pool allows; the set is then shuffled.

        Args:
            k_shot: number of demonstrations (0 gives an empty list).
            demo_pool: the task to draw from (default: this task).
            seed: random seed of the draw and of the order.

        Returns:
            ``(text, label index)`` pairs, in prompt order.

        Example:
            >>> sorted(label for _, label in task.demonstrations(4, seed=0))
            [0, 0, 1, 1]
        """
        pool = self._demo_pool(demo_pool)
        k_shot = self._check_k_shot(k_shot, pool, needs_spare=False)
        demos, _ = _draw_demos(pool, k_shot, seed)
        return [(pool.texts[index], pool.labels[index]) for index in demos]

    def prompts(
        self,
        *,
        template: int = 0,
        k_shot: int = 0,
        demo_pool: ClassificationTask | None = None,
        seed: int = 0,
    ) -> list[str]:
        """One prompt per example, all sharing one fixed K-shot demonstration set.

        The demonstrations are those of `demonstrations`. A query never sees itself (or
        an identical text) as a demonstration: for that query such a demonstration is swapped
        for the next unused pool example of the same class (any class if none is left).

        Args:
            template: index of the template in ``templates``.
            k_shot: demonstrations per prompt (0: zero-shot).
            demo_pool: the task demonstrations come from (default: this task); it must have
                the same label names.
            seed: random seed of the demonstration set.

        Returns:
            ``len(task)`` prompts, in example order.

        Example:
            >>> test_prompts = test.prompts(template=1, k_shot=4, demo_pool=train, seed=3)
            >>> len(test_prompts) == len(test)
            True
        """
        self._template_index(template)
        pool = self._demo_pool(demo_pool)
        k_shot = self._check_k_shot(k_shot, pool, needs_spare=pool is self)
        demos, spares = _draw_demos(pool, k_shot, seed)
        demo_texts = {pool.texts[index] for index in demos}
        results = []
        for text in self.texts:
            chosen = demos
            if text in demo_texts:
                chosen = self._replace_query(pool, demos, spares, text)
            pairs = [(pool.texts[index], pool.labels[index]) for index in chosen]
            results.append(self.prompt(text, template=template, demos=pairs))
        return results

    def with_label_words(self, words: Sequence[str]) -> ClassificationTask:
        """The same task predicting other label words (one per class, in class order).

        Args:
            words: the new label words, one per class (``" good"``: mind the leading space).

        Example:
            >>> task.with_label_words([" bad", " good"]).label_words
            (' bad', ' good')
        """
        words = _as_tuple("label_words", words)
        if len(words) != self.n_labels:
            raise InputError(
                f"Task {self.name!r} has {self.n_labels} classes {list(self.label_names)} but "
                f"{len(words)} label words {list(words)} were given. Give one word per class."
            )
        return dataclasses.replace(self, label_words=words)

    # --------------------------------------------------------------- helpers
    def _index(self, index: int) -> int:
        try:
            position = operator.index(index)
        except TypeError:
            raise InputError(
                f"Indices must be integers, got {index!r} ({type(index).__name__})."
            ) from None
        if not 0 <= position < len(self):
            raise InputError(
                f"Index {position} is out of range for task {self.name!r} of {len(self)} "
                f"examples. Use positions 0 .. {len(self) - 1}."
            )
        return position

    def _indices_by_class(self) -> list[list[int]]:
        groups: list[list[int]] = [[] for _ in range(self.n_labels)]
        for index, label in enumerate(self.labels):
            groups[label].append(index)
        return groups

    def _template_index(self, template: int) -> int:
        template = _as_count("template", template)
        if not 0 <= template < len(self.templates):
            raise InputError(
                f"Template {template} does not exist: task {self.name!r} has "
                f"{len(self.templates)} template(s) (0 .. {len(self.templates) - 1})."
            )
        return template

    def _check_demo(self, position: int, demo: Demo) -> Demo:
        if isinstance(demo, str) or not isinstance(demo, Sequence) or len(demo) != 2:
            raise InputError(
                f"Demo {position} is {demo!r}; each demo must be a (text, label index) pair."
            )
        text, label = demo[0], _as_label(demo[1])
        if not isinstance(text, str):
            raise InputError(f"Demo {position}'s text must be a string, got {text!r}.")
        if not 0 <= label < self.n_labels:
            raise InputError(
                f"Demo {position} has label {label}, but task {self.name!r} has labels "
                f"0 .. {self.n_labels - 1} ({list(self.label_names)})."
            )
        return text, label

    def _demo_pool(self, demo_pool: ClassificationTask | None) -> ClassificationTask:
        if demo_pool is None:
            return self
        if not isinstance(demo_pool, ClassificationTask):
            raise InputError(
                f"demo_pool must be a ClassificationTask, got {type(demo_pool).__name__}."
            )
        if demo_pool.label_names != self.label_names:
            raise InputError(
                f"demo_pool {demo_pool.name!r} has classes {list(demo_pool.label_names)} but "
                f"task {self.name!r} has {list(self.label_names)}. Use a pool with the same "
                f"label names in the same order."
            )
        return demo_pool

    def _check_k_shot(self, k_shot: int, pool: ClassificationTask, *, needs_spare: bool) -> int:
        k_shot = _as_count("k_shot", k_shot)
        if k_shot < 0:
            raise InputError(f"k_shot must be 0 or more, got {k_shot}.")
        available = len(pool) - 1 if needs_spare else len(pool)
        if k_shot > available:
            source = "this task itself (minus the query)" if pool is self else f"pool {pool.name!r}"
            raise InputError(
                f"k_shot={k_shot} demonstrations are needed but {source} offers only "
                f"{available}. Lower k_shot or pass a larger demo_pool."
            )
        return k_shot

    @staticmethod
    def _replace_query(
        pool: ClassificationTask, demos: list[int], spares: list[list[int]], text: str
    ) -> list[int]:
        """The demo set with every demo whose text equals ``text`` swapped for a spare."""
        used = set(demos)
        chosen = []
        for index in demos:
            if pool.texts[index] != text:
                chosen.append(index)
                continue
            label = pool.labels[index]
            candidates = spares[label] + [i for group in spares for i in group]
            substitute = next(
                (i for i in candidates if i not in used and pool.texts[i] != text), None
            )
            if substitute is None:
                raise InputError(
                    f"Cannot build demonstrations for the query {text!r}: every example left in "
                    f"pool {pool.name!r} has the query's text. Lower k_shot or pass a larger "
                    f"demo_pool."
                )
            used.add(substitute)
            chosen.append(substitute)
        return chosen


def round_robin_draw(
    pool: ClassificationTask, n: int, rng: random.Random
) -> tuple[list[int], list[list[int]]]:
    """``n`` pool indices with classes taking turns (in an ``rng``-chosen class order).

    Every prefix of the draw is as class-balanced as the pool allows.

    Returns:
        ``(drawn, spares)``: the drawn indices in draw order, and per class the indices not
        drawn, in the (shuffled) order they would have been drawn next.
    """
    if n > len(pool):
        raise InputError(f"Cannot draw {n} examples from {pool.name!r} of {len(pool)} examples.")
    groups = pool._indices_by_class()
    for group in groups:
        rng.shuffle(group)
    class_order = list(range(pool.n_labels))
    rng.shuffle(class_order)
    drawn: list[int] = []
    taken = [0] * pool.n_labels
    while len(drawn) < n:
        for label in class_order:
            if len(drawn) < n and taken[label] < len(groups[label]):
                drawn.append(groups[label][taken[label]])
                taken[label] += 1
    return drawn, [group[count:] for group, count in zip(groups, taken, strict=True)]


def _draw_demos(
    pool: ClassificationTask, k_shot: int, seed: int
) -> tuple[list[int], list[list[int]]]:
    """Round-robin draw of ``k_shot`` pool indices (shuffled); also the unused ones per class."""
    rng = random.Random(seed)
    demos, spares = round_robin_draw(pool, k_shot, rng)
    rng.shuffle(demos)
    return demos, spares


def _largest_remainder(total: int, sizes: list[int]) -> list[int]:
    """Split ``total`` across groups in proportion to ``sizes`` (Hamilton's method)."""
    whole = sum(sizes)
    exact = [total * size / whole for size in sizes]
    quotas = [int(share) for share in exact]
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - quotas[i]), i))
    for i in order[: total - sum(quotas)]:
        quotas[i] += 1
    return quotas


def _as_tuple(field: str, value: object) -> tuple:
    """A tuple of ``value``'s items (lists, tuples, ranges, arrays); a lone string is refused."""
    if isinstance(value, (str, bytes, Mapping, Set)) or not isinstance(value, Iterable):
        example = '("Review: {text}\\nSentiment:",)' if field == "templates" else "(...)"
        raise InputError(
            f"{field} must be a sequence (tuple or list), got {type(value).__name__} "
            f"{_short(value)}. Wrap it, e.g. {field}={example}."
        )
    return tuple(value)


def _as_label(value: object) -> int:
    if isinstance(value, bool):
        raise InputError(f"A label must be an integer class index, got the bool {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise InputError(
            f"A label must be an integer class index, got {value!r} ({type(value).__name__}). "
            f"Map label names to indices first (load_task does this for you)."
        ) from None


def _as_count(name: str, value: object) -> int:
    if isinstance(value, bool):
        raise InputError(f"{name} must be an integer, got {value!r}.")
    try:
        return operator.index(value)
    except TypeError:
        raise InputError(f"{name} must be an integer, got {value!r}.") from None


def _check_template(index: int, template: object) -> None:
    if not isinstance(template, str):
        raise InputError(f"Template {index} must be a string, got {type(template).__name__}.")
    hint = (
        'Write it with exactly one "{text}" field, and double any literal braces ("{{", "}}"), '
        'e.g. "Review: {text}\\nSentiment:".'
    )
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        raise InputError(f"Template {index} {template!r} is malformed ({error}). {hint}") from None
    if fields != ["text"]:
        raise InputError(
            f"Template {index} {template!r} has the fields {fields}, expected exactly one "
            f'"{{text}}". {hint}'
        )


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
