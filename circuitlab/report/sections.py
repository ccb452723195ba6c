"""The report's sections: each runs one analysis compactly and says what it found.

A section function takes the model, the settings and a ``step`` callback (called once per unit
of work, for the stage's progress bar) and returns a `Section`: a short summary, bullet facts,
tables, figures and the results it computed (every one a `circuitlab.results.Result`).
Inputs are checked by `check_inputs` before any section runs, so a bad task or pair fails in
seconds, not after minutes of work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from circuitlab.errors import InputError, NoContrastError

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from circuitlab.model import ModelHandle
    from circuitlab.report.settings import ReportSettings
    from circuitlab.results import Result

__all__ = ["SECTION_STEPS", "SECTION_TITLES", "Section", "SectionSkipped", "check_inputs"]

Step = Callable[[], None]


class SectionSkipped(Exception):
    """A section that cannot run on this model and data (the reason goes into the report)."""


@dataclass
class Section:
    """One section of the report.

    Attributes:
        key: the section's name (one of `REPORT_SECTIONS`).
        title: its heading.
        summary: one paragraph: what was run, on what.
        facts: the findings, one line each.
        tables: (caption, DataFrame) pairs.
        figures: file stem → matplotlib Figure.
        results: name → result object (saved into ``results.json``).
        seconds: wall time of the section.
        skipped: why the section did not run (None: it ran).
    """

    key: str
    title: str
    summary: str = ""
    facts: list[str] = field(default_factory=list)
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: dict[str, Figure] = field(default_factory=dict)
    results: dict[str, Result] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: str | None = None


SECTION_TITLES = {
    "decomposition": "Decomposition: which components write the answer",
    "component_accuracy": "Component accuracy on a classification task",
    "layers": "Layer importance: AVSS, Block Influence and the single-layer ground truth",
    "patching": "Activation patching: where the answer is carried",
    "consistency": "Consistency heads",
    "hallucination": "Hallucination-prone layers",
    "ila": "Alignment-critical layers (ILA)",
}
"""Each section's heading on the page."""

SECTION_STEPS = {
    "decomposition": 2,
    "component_accuracy": 2,
    "layers": 2,
    "patching": 2,
    "consistency": 2,
    "hallucination": 2,
    "ila": 2,
}
"""Units of work per section (the length of its progress bar)."""


def _task(settings: ReportSettings) -> Any:
    from circuitlab.tasks import load_task

    task = load_task(settings.task)
    if settings.task_examples is None:
        return task
    n_labels = len(task.label_words)
    smallest = min(task.labels.count(i) for i in range(n_labels))
    n = min(settings.task_examples, smallest * n_labels) // n_labels * n_labels
    if n < n_labels:
        raise InputError(
            f"Task {task.name!r} has too few examples per label for a balanced sample of "
            f"{settings.task_examples}; give a larger --task-examples or another --task."
        )
    return task.balanced_sample(n, seed=settings.seed)


def _paraphrases(settings: ReportSettings) -> Any:
    from circuitlab.consistency import load_paraphrase_task

    return load_paraphrase_task(settings.paraphrase_task).balanced_sample(
        settings.paraphrase_inputs, seed=settings.seed
    )


def _pairs(settings: ReportSettings) -> list[Any]:
    from circuitlab.patching import PromptPair

    return [PromptPair(*pair) for pair in settings.pairs]


def check_inputs(model: ModelHandle, settings: ReportSettings) -> None:
    """Check every input the chosen sections read, before any of them runs.

    Args:
        model: the model handle the report runs on.
        settings: the report's settings (its sections, task, pairs and data).

    Raises:
        InputError: a task whose label words are not single tokens, patching pairs whose
            prompts differ in token count, an unknown task or data set.
    """
    runs = settings.runs
    if "decomposition" in runs:
        for prompt in settings.prompts:
            model.tokenize([prompt])  # a prompt longer than the context fails here, clearly
    if "component_accuracy" in runs:
        task = _task(settings)
        try:
            model.token_ids(task.label_words)
        except InputError as error:
            raise InputError(
                f"The report's task {settings.task!r} cannot be scored on {model.name}: {error} "
                f"Choose a task whose label words are single tokens (--task)."
            ) from None
    if "patching" in runs:
        from circuitlab.patching.pairs import paired_tokens

        pairs = _pairs(settings)
        lengths = set(paired_tokens(model, pairs).lengths)
        if len(lengths) > 1:
            raise InputError(
                f"The report's patching pairs have different token counts {sorted(lengths)}; "
                f"a layer × position map needs every pair the same length. Give pairs of one "
                f"length (--pair)."
            )
        for pair in pairs:
            model.token_ids([pair.answer, pair.wrong])
    if "consistency" in runs:
        _paraphrases(settings).check_label_words(model)
    if "ila" in runs:
        from circuitlab.ila import load_instructions

        load_instructions(settings.ila_data)


def decomposition(model: ModelHandle, settings: ReportSettings, step: Step) -> Section:
    """Each prompt's top next token, and the components that write it (direct logit
    attribution; exact: the parts sum to the logit)."""
    import pandas as pd

    from circuitlab.decomposition import direct_logit_attribution

    prompts = list(settings.prompts)
    predictions = [model.top_next_tokens(prompt, k=1)[0] for prompt in prompts]
    step()
    attribution = direct_logit_attribution(
        model,
        prompts,
        [prediction.token_id for prediction in predictions],
        per_prompt=True,
        batch_size=settings.batch_size,
        progress=False,
    )
    step()
    first_prompt = direct_logit_attribution(
        model, prompts[0], predictions[0].token_id, progress=False
    )
    rows = []
    for row, (prompt, prediction) in enumerate(zip(prompts, predictions, strict=True)):
        values = attribution.values[row, :, 0]
        order = values.abs().argsort(descending=True, stable=True)[:3].tolist()
        top = [(attribution.components[i], float(values[i])) for i in order]
        rows.append(
            {
                "prompt": prompt,
                "top token": repr(prediction.token),
                "probability": round(prediction.probability, 3),
                "logit": round(prediction.logit, 2),
                "strongest writers (logits)": ", ".join(f"{c} {v:+.2f}" for c, v in top),
            }
        )
    first = first_prompt.top(settings.top_k)
    section = Section(
        "decomposition",
        SECTION_TITLES["decomposition"],
        summary=(
            f"Direct logit attribution of {len(prompts)} factual prompts: every attention head, "
            f"MLP and the embedding's contribution to the logit of the model's own top next "
            f"token, read at the last position through the final norm's scale."
        ),
        facts=[
            f"The contributions sum to each logit within "
            f"{attribution.reconstruction_error():.1e} (the decomposition is exact).",
            f"{prompts[0]!r} → {predictions[0].token!r}: strongest writers "
            + ", ".join(f"{c} {v:+.2f}" for c, v in first[:5])
            + ".",
        ],
        tables=[
            (
                "Top next token of each prompt and its three strongest writers (largest "
                "|attribution|)",
                pd.DataFrame(rows),
            )
        ],
        results={"attribution": attribution, "first_prompt": first_prompt},
    )
    section.figures["decomposition_top_components"] = first_prompt.plot(
        k=15, title=f"Writers of {predictions[0].token!r} after {prompts[0]!r}"
    )
    section.figures["decomposition_heads"] = first_prompt.plot_heads(
        title=f"Heads writing {predictions[0].token!r} (logits)"
    )
    return section


def component_accuracy(model: ModelHandle, settings: ReportSettings, step: Step) -> Section:
    """Every component's accuracy on a labelled task, from its attribution to the label words."""
    from circuitlab.decomposition import component_accuracy as score

    task = _task(settings)
    step()
    accuracy = score(
        model,
        task,
        k_shot=settings.k_shot,
        seed=settings.seed,
        batch_size=settings.batch_size,
        progress=False,
    )
    step()
    types = accuracy.component_types()
    frame = accuracy.to_frame().sort_values("accuracy", ascending=False, kind="stable")
    return Section(
        "component_accuracy",
        SECTION_TITLES["component_accuracy"],
        summary=(
            f"Task {task.name!r}: {len(task)} examples (label words "
            f"{', '.join(repr(word) for word in task.label_words)}), "
            f"{settings.k_shot}-shot. A component's accuracy is how often its own contribution "
            f"ranks the gold label word highest."
        ),
        facts=[
            f"The whole model: accuracy {types['model_accuracy']:.1%} (chance "
            f"{types['chance']:.1%}).",
            f"Best component: {types['good'][0][0]} ({types['good'][0][1]:.1%}); worst: "
            f"{types['bad'][0][0]} ({types['bad'][0][1]:.1%}"
            + (", below chance)." if types["bad_below_chance"] else ")."),
            f"Label-biased components (always the same label): "
            f"{types['label_biased_fraction']:.0%}.",
        ],
        tables=[
            (f"The {settings.top_k} most accurate components", frame.head(settings.top_k).round(3))
        ],
        figures={"component_accuracy": accuracy.plot()},
        results={"component_accuracy": accuracy},
    )


def layers(model: ModelHandle, settings: ReportSettings, step: Step) -> Section:
    """AVSS and Block Influence rankings beside the single-layer ground truth."""
    import pandas as pd

    from circuitlab.evaluation import EvaluationSuite, load_heldout_prose
    from circuitlab.layers import ground_truth_scores, score_layers

    texts = load_heldout_prose("calibration")
    if settings.calibration_texts is not None:
        texts = texts[: settings.calibration_texts]
    scores = score_layers(
        model, texts, ["avss", "block_influence"], batch_size=settings.batch_size, progress=False
    )
    step()
    suite = EvaluationSuite(
        tasks=settings.ground_truth_tasks,
        perplexity_tokens=settings.ground_truth_tokens,
        sentiment_examples=settings.ground_truth_examples,
        qa_questions=settings.ground_truth_examples,
        batch_size=settings.batch_size,
        seed=settings.seed,
    )
    truth = ground_truth_scores(model, suite)
    step()
    rankings = {"avss": scores["avss"], "block_influence": scores["block_influence"]}
    frame = pd.DataFrame({"layer": range(model.n_layers)})
    for name, result in {**rankings, "ground_truth": truth}.items():
        frame[name] = result.values
    facts = [
        "Spearman ρ with the ground truth: "
        + ", ".join(f"{name} {result.spearman(truth):+.2f}" for name, result in rankings.items())
        + ".",
        f"Most important layer by the ground truth: {truth.ranking[-1]} (removing it alone "
        f"loses {truth.values[truth.ranking[-1]]:.0%} of the performance).",
    ]
    facts += [
        f"25% least important by {name}: {list(result.lowest(25))}"
        for name, result in {**rankings, "ground_truth": truth}.items()
    ]
    return Section(
        "layers",
        SECTION_TITLES["layers"],
        summary=(
            f"AVSS (activation variance over sparsity) and Block Influence (1 − cosine of a "
            f"block's input and output) on {scores['avss'].settings['tokens']} tokens of "
            f"calibration prose; the ground truth removes each layer alone and measures the "
            f"performance lost on {_suite_text(settings)}. Higher = more important."
        ),
        facts=facts,
        tables=[("Scores per layer", frame.round(4))],
        figures={"layer_rankings": _rankings_figure(frame)},
        results={**rankings, "ground_truth": truth},
    )


def _suite_text(settings: ReportSettings) -> str:
    parts = {
        "perplexity": f"{settings.ground_truth_tokens} tokens of held-out prose (perplexity)",
        "sentiment": f"{settings.ground_truth_examples} sentiment examples (4-shot accuracy)",
        "qa": f"{settings.ground_truth_examples} factual questions",
    }
    return " and ".join(parts[task] for task in settings.ground_truth_tasks)


def _rankings_figure(frame: pd.DataFrame) -> Figure:
    """Each method's scores by layer, min-max scaled to [0, 1] so they share an axis."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.2), layout="constrained")
    axes = figure.add_subplot()
    for column in frame.columns[1:]:
        values = frame[column].to_numpy(dtype=float)
        span = values.max() - values.min()
        scaled = (values - values.min()) / span if span > 0 else values * 0
        axes.plot(frame["layer"], scaled, marker="o", markersize=3, label=column)
    axes.set_xlabel("layer")
    axes.set_ylabel("score (min-max scaled)")
    axes.set_title("Layer importance: three rankings")
    axes.legend(fontsize=8)
    return figure


def patching(model: ModelHandle, settings: ReportSettings, step: Step) -> Section:
    """Denoising activation patching of the residual stream: layer × position."""
    from circuitlab.patching import activation_patching

    pairs = _pairs(settings)
    step()
    result = activation_patching(
        model, pairs, "logit_diff", site="resid_pre", batch_size=32, progress=False
    )
    step()
    tokens = model.to_str_tokens(pairs[0].clean)
    top = result.top(5)
    return Section(
        "patching",
        SECTION_TITLES["patching"],
        summary=(
            f"{len(pairs)} pair(s), e.g. {pairs[0].clean!r} vs {pairs[0].corrupted!r}, metric "
            f"logit({pairs[0].answer!r}) − logit({pairs[0].wrong!r}). Each cell runs the "
            f"corrupted prompt with the clean residual stream patched in at one layer and "
            f"position; 1 = the clean answer fully restored, 0 = no effect."
        ),
        facts=[
            "Strongest cells: "
            + ", ".join(
                f"layer {layer} at {tokens[position]!r} ({value:.2f})"
                for layer, position, value in top
            )
            + "."
        ],
        figures={"patching_map": result.plot()},
        results={"patching_map": result},
    )


def consistency(model: ModelHandle, settings: ReportSettings, step: Step) -> Section:
    """Heads whose last-token output tells whether paraphrases get the same answer."""
    from circuitlab.consistency import locate_consistency_heads

    task = _paraphrases(settings)
    step()
    try:
        heads = locate_consistency_heads(
            model, task, seed=settings.seed, batch_size=settings.batch_size, progress=False
        )
    except NoContrastError as error:  # the model's answers leave nothing to probe
        raise SectionSkipped(str(error)) from None
    step()
    frame = heads.to_frame().sort_values("accuracy", ascending=False, kind="stable")
    return Section(
        "consistency",
        SECTION_TITLES["consistency"],
        summary=(
            f"A linear probe on every head's last-token output predicts whether the model's "
            f"answer under one paraphrase of the instruction agrees with its answers under the "
            f"others ({settings.paraphrase_task}, {settings.paraphrase_inputs} inputs)."
        ),
        facts=[f"{heads!r}", "Top heads: " + ", ".join(f"{h} {v:.2f}" for h, v in heads.top(5))],
        tables=[(f"The {settings.top_k} best heads", frame.head(settings.top_k).round(3))],
        figures={"consistency_heads": heads.plot()},
        results={"consistency_heads": heads},
    )


def hallucination(model: ModelHandle, settings: ReportSettings, step: Step) -> Section:
    """The model's own answers graded, then every layer scored for hallucination propensity."""
    from circuitlab.evaluation import load_factual_qa
    from circuitlab.hallucination import hallucination_scores, label_model_answers

    questions = load_factual_qa(extended=True)
    stride = max(1, len(questions) // settings.factual_questions)
    questions = questions[::stride][: settings.factual_questions]
    answers = label_model_answers(model, questions, batch_size=settings.batch_size, progress=False)
    step()
    truthful, hallucinated = answers.counts()
    if min(truthful, hallucinated) < 4:
        raise SectionSkipped(
            f"the model answered {truthful} of {len(answers)} questions right and "
            f"{hallucinated} wrong; the contrast needs at least 4 of each (raise "
            f"--factual-questions)."
        )
    scores = hallucination_scores(
        model, answers, seed=settings.seed, batch_size=settings.batch_size, progress=False
    )
    step()
    k = min(4, scores.n_layers)
    return Section(
        "hallucination",
        SECTION_TITLES["hallucination"],
        summary=(
            f"The model answered {len(answers)} factual questions (greedy, graded against the "
            f"gold answers): {truthful} right, {hallucinated} wrong. Each layer is scored by how "
            f"much the activation variance and sparsity of right and wrong answers differ "
            f"(EAVSS, HSAV, HSS) and by a linear probe."
        ),
        facts=[f"Top {k} layers by {method}: {scores.top(k, method)}" for method in scores.scores],
        tables=[("Scores per layer", scores.to_frame().round(4))],
        figures={"hallucination_layers": scores.plot()},
        results={"hallucination_scores": scores},
    )


def ila(model: ModelHandle, settings: ReportSettings, step: Step) -> Section:
    """ILA's stage 2 on a given stage-1 adapter: learned gates rank the layers."""
    from circuitlab.ila import load_instructions
    from circuitlab.ila.fit import fit_gates
    from circuitlab.layers import LayerScores
    from circuitlab.lora import load_lora

    assert settings.ila_adapter is not None  # runs only with one (ReportSettings.runs)
    data = load_instructions(settings.ila_data)
    adapter = load_lora(model, settings.ila_adapter)
    step()
    try:
        fit = fit_gates(model, data, steps=settings.ila_steps, seed=settings.seed, batch_size=8)
        try:
            ranking = LayerScores("ila", fit.layer_gamma, settings=fit.settings, model=model.name)
        finally:
            fit.gates.remove()
    finally:
        adapter.remove()
    step()
    return Section(
        "ila",
        SECTION_TITLES["ila"],
        summary=(
            f"Gates learned over the stage-1 LoRA adapter in {settings.ila_adapter} on "
            f"{data.name!r} ({len(data)} pairs, {settings.ila_steps} steps): a layer whose gate "
            f"stays open matters for following the instructions."
        ),
        facts=[f"25% most important layers: {sorted(ranking.highest(25))}"],
        tables=[("Gate γ per layer", ranking.to_frame().round(4))],
        figures={"ila_ranking": ranking.plot(25)},
        results={"ila_ranking": ranking},
    )


SECTIONS: dict[str, Callable[[ModelHandle, ReportSettings, Step], Section]] = {
    "decomposition": decomposition,
    "component_accuracy": component_accuracy,
    "layers": layers,
    "patching": patching,
    "consistency": consistency,
    "hallucination": hallucination,
    "ila": ila,
}
