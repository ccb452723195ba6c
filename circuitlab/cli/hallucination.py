"""The hallucination commands: ``circuitlab hallucination-layers`` and
``circuitlab contrastive-finetune``.

Both read the same answers: the model's graded greedy answers to the shipped factual questions
(or ``--questions FILE``), or labelled answers in TruthfulQA's shape (``--data FILE``).
``contrastive-finetune`` splits them by question (``--test-fraction``, ``--seed``), chooses
layers on the training answers, trains, and compares the test questions before and after.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from circuitlab.cli.output import save_figure, write_json, write_result_json
from circuitlab.errors import InputError
from circuitlab.evaluation.data import FactualQuestion, load_factual_qa
from circuitlab.hallucination.contrastive import contrastive_finetune as finetune
from circuitlab.hallucination.data import (
    AnswerSet,
    label_model_answers,
    load_labelled_answers,
    load_questions,
)
from circuitlab.hallucination.evaluate import choice_accuracy, hallucination_rates
from circuitlab.hallucination.export import export_contrastive
from circuitlab.hallucination.result import HallucinationScores, check_layer_count
from circuitlab.hallucination.scores import hallucination_scores
from circuitlab.lora import check_lora_layers
from circuitlab.model import ModelHandle

__all__ = ["contrastive_finetune", "hallucination_layers", "read_questions"]


def read_questions(args: argparse.Namespace) -> list[FactualQuestion] | None:
    """The questions to grade (``--questions`` or the shipped 660), or None for ``--data``;
    ``--limit`` keeps an evenly spread sample. Reads and checks files before any model loads."""
    if args.data is not None:
        load_labelled_answers(
            args.data,
            question_field=args.question_field,
            correct_field=args.correct_field,
            incorrect_field=args.incorrect_field,
        )  # a bad file fails here, before the model loads
        return None
    if args.questions is not None:
        questions = load_questions(args.questions, question_field=args.question_field)
    else:
        questions = load_factual_qa(extended=True)
    if args.limit is not None and args.limit < len(questions):
        step = len(questions) / args.limit
        questions = [questions[int(i * step)] for i in range(args.limit)]
    return questions


def _answers(
    model: ModelHandle, args: argparse.Namespace, questions: list[FactualQuestion] | None
) -> AnswerSet:
    if questions is None:
        answers = load_labelled_answers(
            args.data,
            question_field=args.question_field,
            correct_field=args.correct_field,
            incorrect_field=args.incorrect_field,
        )
        if args.limit is not None and args.limit < len(answers.questions):
            answers = answers.subset(range(args.limit))
        return answers
    return label_model_answers(model, questions, batch_size=max(args.batch_size, 16), progress=True)


def _score(model: ModelHandle, answers: AnswerSet, args: argparse.Namespace, **options: Any):
    return hallucination_scores(
        model,
        answers,
        site=args.site,
        epsilon=args.epsilon,
        C=args.C,
        seed=args.seed,
        batch_size=args.batch_size,
        progress=True,
        **options,
    )


def _choose_top_k(args: argparse.Namespace, model: ModelHandle) -> None:
    """``--top-k`` checked against the model's layers (default 4, or every layer if fewer)."""
    if args.top_k is None:
        args.top_k = min(4, model.n_layers)
    try:
        check_layer_count(args.top_k, model.n_layers)
    except InputError as error:
        raise InputError(str(error).replace("pass k ", "pass --top-k ")) from None


def _print_scores(scores: HallucinationScores, k: int) -> None:
    for method in scores:
        values = scores[method].values
        top = scores.top(k, method)
        print(
            f"  {method:>6}: top {k} layers {top}  ({', '.join(f'{values[i]:.3g}' for i in top)})"
        )
    probe = scores["probe"].values
    best = scores.top(1, "probe")[0]
    print(f"  probe peak: layer {best} at {probe[best]:.3f} (chance {scores.chance:.3f})")


def hallucination_layers(
    args: argparse.Namespace, model: ModelHandle, questions: list[FactualQuestion] | None
) -> None:
    """Grade (or read) the answers, score every layer, print the top K of each ranking."""
    _choose_top_k(args, model)
    started = time.perf_counter()
    answers = _answers(model, args, questions)
    truthful, hallucinated = answers.counts()
    answers.check_contrast("scoring hallucination-prone layers")
    scores = _score(model, answers, args, probe_fraction=args.probe_fraction)
    seconds = time.perf_counter() - started
    print(
        f"{model.name}: {len(answers.questions)} questions, {truthful} truthful and "
        f"{hallucinated} hallucinated answers ({answers.source}); {scores.n_layers} layers "
        f"scored at the {args.site} output in {seconds:.1f} s"
    )
    _print_scores(scores, args.top_k)
    if args.plot:
        save_figure(scores.plot(k=args.top_k), args.plot)
    if args.save:
        print(f"wrote {scores.save(args.save)}")
    if args.json:
        write_result_json(
            scores,
            args.json,
            seconds=seconds,
            top_k=args.top_k,
            chosen={method: scores.top(args.top_k, method) for method in scores},
        )


def _test_questions(answers: AnswerSet, test: list[int]) -> list[FactualQuestion]:
    """The held-out questions as `FactualQuestion`s (gold answer and aliases)."""
    return [
        FactualQuestion(answers.questions[q], answers.golds[q][0], tuple(answers.golds[q][1:]))
        for q in test
    ]


def _measure(model: ModelHandle, test: AnswerSet, questions: list[FactualQuestion]) -> dict:
    measured: dict[str, Any] = {}
    if test.source == "generated":
        rates = hallucination_rates(model, questions, progress=False)
        measured.update(rates.as_dict())
        measured["predictions"] = list(rates.predictions)
    if test.counts()[1]:
        choice = choice_accuracy(model, test)
        measured["choice_accuracy"] = choice.accuracy
        measured["choice_questions"] = choice.questions
    return measured


def contrastive_finetune(
    args: argparse.Namespace, model: ModelHandle, questions: list[FactualQuestion] | None
) -> None:
    """Split, choose layers, train, compare before/after on the test questions, export."""
    if args.layers is not None:  # checked before any work
        layers = check_lora_layers(args.layers, model.n_layers)
    else:
        _choose_top_k(args, model)
    started = time.perf_counter()
    answers = _answers(model, args, questions)
    answers.check_contrast("contrastive fine-tuning")
    train_q, test_q = answers.split_questions(
        (1 - args.test_fraction, args.test_fraction), seed=args.seed
    )
    train, test = answers.subset(train_q), answers.subset(test_q)
    if args.layers is not None:
        chosen_by = "--layers"
    else:
        scores = _score(model, train, args)
        layers = scores.top(args.top_k, args.method)
        chosen_by = f"top {args.top_k} {args.method} on the training answers"
    test_questions = _test_questions(answers, test_q)
    print(
        f"{model.name}: {len(train_q)} training and {len(test_q)} test questions; layers "
        f"{layers} ({chosen_by})"
    )
    before = _measure(model, test, test_questions)
    training_started = time.perf_counter()
    run = finetune(
        model,
        train,
        layers,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        margin=args.margin,
        ranking_weight=args.ranking_weight,
        representation_weight=args.representation_weight,
        temperature=args.temperature,
        r=args.rank,
        lora_alpha=args.lora_alpha,
        modules=args.modules,
        seed=args.seed,
        checkpoint=args.checkpoint,
    )
    training_seconds = time.perf_counter() - training_started
    after = _measure(model, test, test_questions)
    seconds = time.perf_counter() - started
    losses = run.history.losses
    print(
        f"  trained {run.settings['steps']} steps in {training_seconds:.0f} s; epoch loss "
        f"{losses[0]:.3f} -> {losses[-1]:.3f}"
    )
    for key in ("accuracy", "hallucination_rate", "abstention_rate", "choice_accuracy"):
        if key in before:
            print(f"  {key:>18}: {before[key]:.3f} -> {after[key]:.3f}")
    if "predictions" in before:
        for q, old, new in list(
            zip(test_questions, before["predictions"], after["predictions"], strict=True)
        )[: args.show]:
            print(f"  Q: {q.question}  gold: {q.answer!r}  before: {old!r}  after: {new!r}")
    result: dict[str, Any] = {
        "kind": "contrastive-finetune",
        "model": model.name,
        "layers": layers,
        "chosen_by": chosen_by,
        "settings": run.settings,
        "losses": list(losses),
        "train_questions": len(train_q),
        "test_questions": len(test_q),
        "before": before,
        "after": after,
        "seconds": seconds,
        "training_seconds": training_seconds,
    }
    if args.export:
        folder = export_contrastive(
            model,
            run.adapter,
            args.export,
            test_questions,
            settings=run.settings,
            overwrite=args.overwrite,
        )
        print(
            f"exported {folder}/adapter (peft) and {folder}/merged (transformers); both give "
            f"circuitlab's answers to the {len(test_questions)} test questions"
        )
        result["export"] = str(folder)
    if args.json:
        write_json(result, args.json)
