"""Contrastive fine-tuning of chosen layers: raise correct answers above hallucinated ones.

The paper (arXiv 2411.10069) fine-tunes its hallucination-prone layers "contrastively" without
publishing the loss. circuitlab trains a LoRA adapter on the chosen layers only
(`circuitlab.lora.add_lora`), through the shared trainer (`circuitlab.training.train`), with
this loss per question q (prompt p, correct answer c, incorrect answers i_1..i_m):

- ℓ(a) = (1/|a|) Σ_t log p(a_t | p, a_<t): the mean log-likelihood per answer token;
- likelihood term: −ℓ(c), so the correct answer becomes more likely;
- ranking term: λ · max(0, m − (ℓ(c) − max_j ℓ(i_j))), a margin ranking (hinge) between the
  correct answer and the most likely incorrect one (absent for questions without an incorrect
  answer: the truthful ones of a model-graded set);
- optional representation term: μ · an InfoNCE loss over the batch's answers at the chosen
  layers (each answer's block output averaged over its tokens, cosine similarity, temperature
  τ): for each correct answer, the other correct answers are the positives and the incorrect
  ones the negatives (supervised-contrastive form), pulling truthful representations together
  and away from hallucinated ones.

The loss of a batch is the mean over its questions (plus μ times the representation term).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from circuitlab import sites
from circuitlab.checks import check_integer, check_number, checked_arguments
from circuitlab.errors import InputError
from circuitlab.fingerprint import data_fingerprint, model_fingerprint
from circuitlab.hallucination.data import AnswerSet
from circuitlab.lora import LoraAdapter, add_lora, check_lora_layers
from circuitlab.model import ModelHandle
from circuitlab.training import Step, Stopping, TrainingHistory, shuffled_batches, train

__all__ = [
    "ContrastPair",
    "ContrastiveRun",
    "continuation_logprobs",
    "contrastive_finetune",
    "contrastive_loss",
    "contrastive_pairs",
    "representation_loss",
]


@dataclass(frozen=True)
class ContrastPair:
    """One question's training example: its prompt, the correct answer and the incorrect ones
    (answers start with a space).

    Attributes:
        prompt: The question's few-shot QA prompt (ends with ``"A:"``).
        correct: The correct answer continuation (the first gold answer).
        incorrect: The question's hallucinated answer continuations (may be empty).
    """

    prompt: str
    correct: str
    incorrect: tuple[str, ...]


def contrastive_pairs(answers: AnswerSet) -> list[ContrastPair]:
    """One `ContrastPair` per question: the gold answer as the correct one, the set's
    hallucinated answers to that question as the incorrect ones.

    Args:
        answers: Labelled answers with truthful and hallucinated samples.
    """
    prompts: dict[int, str] = {}
    wrong: dict[int, list[str]] = {}
    for prompt, answer, right, question in zip(
        answers.prompts, answers.answers, answers.truthful, answers.question, strict=True
    ):
        prompts.setdefault(question, prompt)
        if not right:
            wrong.setdefault(question, []).append(answer)
    return [
        ContrastPair(prompts[q], " " + answers.golds[q][0], tuple(wrong.get(q, ())))
        for q in sorted(prompts)
    ]


def continuation_logprobs(
    model: ModelHandle,
    prompts: Sequence[str],
    continuations: Sequence[str],
    *,
    grad: bool = False,
    layers: Sequence[int] = (),
) -> tuple[Float[Tensor, " n"], dict[int, Float[Tensor, "n d_model"]]]:
    """Mean log-probability per token of each continuation after its prompt, and (for
    ``layers``) each continuation's block output averaged over its tokens.

    Args:
        model: The model.
        prompts: The prompts.
        continuations: One continuation per prompt, scored after it.
        grad: Keep the graph, for training.
        layers: Layers whose residual stream is also returned, mean-pooled over the continuation.

    Returns:
        ``(logprobs [n], {layer: pooled [n, d_model]})``; with ``grad`` both keep the graph.
    """
    texts = [p + c for p, c in zip(prompts, continuations, strict=True)]
    starts = model.tokenize(list(prompts)).lengths.to(model.device)
    batch = model.tokenize(texts)
    lengths = batch.lengths.to(model.device)
    if bool((lengths <= starts).any()):
        row = int((lengths <= starts).nonzero()[0])
        raise InputError(f"Continuation {continuations[row]!r} adds no token after its prompt.")
    captured: dict[int, Tensor] = {}
    hooks = [
        (sites.resid_post(layer), lambda x, hook, layer=layer: captured.__setitem__(layer, x))
        for layer in layers
    ]
    with model.hooks(hooks):
        logits = model.logits(batch, grad=grad)  # [n, pos, vocab]
    positions = torch.arange(logits.shape[1], device=logits.device)
    # token t (t >= start) is predicted at position t - 1
    in_answer = (positions[None, :] >= starts[:, None]) & (positions[None, :] < lengths[:, None])
    targets = batch.input_ids.to(logits.device)
    log_probs = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    token_lp = log_probs.gather(-1, targets[:, 1:, None]).squeeze(-1)  # [n, pos - 1]
    mask = in_answer[:, 1:].to(token_lp.dtype)
    mean_lp = (token_lp * mask).sum(-1) / mask.sum(-1)
    pooled = {}
    for layer, values in captured.items():
        span = in_answer.to(values.dtype)[..., None]
        pooled[layer] = (values * span).sum(1) / span.sum(1)
    return mean_lp, pooled


def contrastive_loss(
    correct: Float[Tensor, " question"],
    incorrect: Float[Tensor, "question m"],
    *,
    margin: float = 1.0,
    ranking_weight: float = 1.0,
) -> Float[Tensor, ""]:
    """Mean over questions of −ℓ(c) + λ·max(0, m − (ℓ(c) − max_j ℓ(i_j))) (module docstring).

    ``incorrect`` holds each question's incorrect answers' ℓ, padded with −inf (a row of −inf:
    no incorrect answer, no ranking term).

    Args:
        correct: Log-likelihood ℓ(c) of each question's correct answer [question].
        incorrect: Log-likelihoods of each question's incorrect answers, padded with −inf [question,
            m].
        margin: The ranking margin m.
        ranking_weight: The weight λ of the ranking term.
    """
    strongest = incorrect.max(dim=-1).values if incorrect.shape[-1] else None
    loss = -correct
    if strongest is not None:
        has = torch.isfinite(strongest)
        gap = correct - torch.where(has, strongest, correct)
        hinge = torch.clamp(margin - gap, min=0) * has.to(correct.dtype)
        loss = loss + ranking_weight * hinge
    return loss.mean()


def representation_loss(
    pooled: Float[Tensor, "n d"], truthful: Tensor, temperature: float
) -> Float[Tensor, ""]:
    """Supervised-contrastive InfoNCE: each truthful answer against the others (module
    docstring); 0 when the batch has fewer than two truthful answers or no hallucinated one.

    Args:
        pooled: Pooled representations of the answers [n, d].
        truthful: Which answers are truthful [n] (bool).
        temperature: The InfoNCE temperature.
    """
    truthful = truthful.to(pooled.device).bool()
    if int(truthful.sum()) < 2 or bool(truthful.all()):
        return pooled.sum() * 0
    unit = torch.nn.functional.normalize(pooled.float(), dim=-1)
    similarity = unit @ unit.T / temperature
    eye = torch.eye(len(unit), dtype=torch.bool, device=unit.device)
    similarity = similarity.masked_fill(eye, float("-inf"))
    log_all = torch.logsumexp(similarity, dim=-1)
    positive = similarity.masked_fill(~truthful[None, :], float("-inf"))
    log_positive = torch.logsumexp(positive, dim=-1)
    return -(log_positive - log_all)[truthful].mean()


@dataclass
class ContrastiveRun:
    """A finished contrastive fine-tuning: the adapter (still on the model) and its history.

    Args:
        adapter: The trained LoRA adapter, still on the model.
        history: Losses and metrics of the training run.
        layers: The layers that were fine-tuned.
        settings: The training settings, for the record.
    """

    adapter: LoraAdapter
    history: TrainingHistory
    layers: tuple[int, ...]
    settings: dict[str, Any]


@checked_arguments
def contrastive_finetune(
    model: ModelHandle,
    answers: AnswerSet,
    layers: Sequence[int],
    *,
    epochs: int = 2,
    batch_size: int = 8,
    learning_rate: float = 5e-4,
    margin: float = 1.0,
    ranking_weight: float = 1.0,
    representation_weight: float = 0.0,
    temperature: float = 0.1,
    r: int = 8,
    lora_alpha: float = 16.0,
    modules: Sequence[str] | None = None,
    seed: int = 0,
    checkpoint: str | os.PathLike[str] | None = None,
) -> ContrastiveRun:
    """Train a LoRA adapter on ``layers`` only with the contrastive loss (module docstring).

    Args:
        model: the model handle (the adapter is attached to it and stays on).
        answers: the training answers (`label_model_answers` or `load_labelled_answers`).
        layers: the layers that get adapters (e.g. the top-k hallucination-prone ones).
        epochs: passes over the questions; steps = epochs × ceil(questions / batch_size).
        batch_size: questions per step.
        learning_rate: AdamW step size.
        margin: m of the ranking term, in mean log-probability per token (nats).
        ranking_weight: λ.
        representation_weight: μ (0: no representation term).
        temperature: τ of the representation term.
        r: LoRA rank.
        lora_alpha: LoRA scaling numerator.
        modules: LoRA target modules (default every linear map of the layers).
        seed: seed of the adapter's initialisation and of the batch order.
        checkpoint: a file keeping the training state after every epoch; rerunning with it
            resumes a killed run (`circuitlab.training.train`).
    """
    epochs = check_integer("epochs", epochs, minimum=1)
    batch_size = check_integer("batch_size", batch_size, minimum=1)
    for name, value in (("margin", margin), ("ranking_weight", ranking_weight)):
        check_number(name, value, lambda v: v >= 0, "zero or positive")
    check_number("representation_weight", representation_weight, lambda v: v >= 0, ">= 0")
    check_number("temperature", temperature, lambda v: v > 0, "positive, e.g. 0.1")
    pairs = contrastive_pairs(answers)
    if not pairs:
        raise InputError("No training questions: the answer set is empty.")
    layer_list = check_lora_layers(layers, model.n_layers)
    torch.manual_seed(seed)
    adapter = add_lora(model, layer_list, modules, r=r, alpha=lora_alpha)

    index_batches = shuffled_batches(len(pairs), batch_size, seed)

    def batches(epoch: int) -> list[list[ContrastPair]]:
        return [[pairs[i] for i in batch] for batch in index_batches(epoch)]

    use_representation = representation_weight > 0

    def objective(batch: list[ContrastPair]) -> Step:
        prompts = [pair.prompt for pair in batch]
        texts = [pair.correct for pair in batch]
        owner = list(range(len(batch)))
        for index, pair in enumerate(batch):
            prompts += [pair.prompt] * len(pair.incorrect)
            texts += list(pair.incorrect)
            owner += [index] * len(pair.incorrect)
        logprobs, pooled = continuation_logprobs(
            model, prompts, texts, grad=True, layers=layer_list if use_representation else ()
        )
        n = len(batch)
        width = max((len(pair.incorrect) for pair in batch), default=0)
        incorrect = logprobs.new_full((n, width), float("-inf"))
        slot = [0] * n
        for row in range(n, len(texts)):
            question = owner[row]
            incorrect[question, slot[question]] = logprobs[row]
            slot[question] += 1
        loss = contrastive_loss(
            logprobs[:n], incorrect, margin=margin, ranking_weight=ranking_weight
        )
        if use_representation:
            truthful = torch.tensor([row < n for row in range(len(texts))])
            terms = [
                representation_loss(pooled[layer], truthful, temperature) for layer in layer_list
            ]
            loss = loss + representation_weight * torch.stack(terms).mean()
        return Step(loss)

    settings = {
        "epochs": epochs,
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "margin": margin,
        "ranking_weight": ranking_weight,
        "representation_weight": representation_weight,
        "temperature": temperature,
        "r": r,
        "lora_alpha": lora_alpha,
        "seed": seed,
        "questions": len(pairs),
        "steps": epochs * -(-len(pairs) // batch_size),
        "layers": layer_list,
        "modules": list(modules) if modules is not None else None,
    }
    scope = {
        "model_fingerprint": model_fingerprint(model),
        "data_fingerprint": data_fingerprint(
            [[p.prompt, p.correct, list(p.incorrect)] for p in pairs]
        ),
        **settings,
    }
    try:
        history = train(
            adapter.parameters(),
            objective,
            batches,
            learning_rate=learning_rate,
            stopping=Stopping(max_epochs=epochs),
            optimizer=torch.optim.AdamW,
            checkpoint=checkpoint,
            scope=scope,
        )
    except BaseException:
        adapter.remove()
        raise
    return ContrastiveRun(
        adapter=adapter, history=history, layers=tuple(layer_list), settings=settings
    )
