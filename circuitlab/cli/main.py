"""Entry point of the ``circuitlab`` console script (argparse, one sub-command per job).

Commands:
    circuitlab report [--model NAME] [--out DIR] [--sections ...] [--ila-adapter DIR]
    circuitlab decompose --prompt TEXT --target TOKEN [--diff A B] [--plot PNG]
    circuitlab component-accuracy --task NAME [--k-shot K] [--plot PNG] [--csv FILE]
    circuitlab ablate (--task NAME | --prompt TEXT --target TOKEN) [--components ...]
    circuitlab export SPEC OUTPUT [--overwrite] [--no-check]
    circuitlab layer-scores [--data SPLIT|FILE] [--methods ...] [--site block] [--out DIR]
    circuitlab prune-study --out DIR [--k 10 25 40] [--methods ...] [--export DIR]
    circuitlab patch (--clean TEXT --corrupted TEXT | --pairs FILE) [--diff A B] [--site SITE]
    circuitlab logit-lens --prompt TEXT [--target TOKEN] [--k K] [--position N|all] [--plot PNG]
    circuitlab attention --prompt TEXT --head L3H1 [--layer N] [--html OUT] | --summary [--top N]
    circuitlab study FILE.yaml [--out DIR] [--dry-run]
    circuitlab models list [--json OUT]
    circuitlab models fetch NAME
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from circuitlab.cli.study import add_study_command
from circuitlab.errors import CircuitlabError
from circuitlab.vocabulary import (
    COMPONENT_GROUPS,
    DEFAULT_EPSILON,
    DEFAULT_PERCENTS,
    EVALUATION_TASKS,
    HALLUCINATION_METHODS,
    ILA_SELECTIONS,
    INSTRUCTION_SETS,
    METRICS,
    PARAPHRASE_TASKS,
    PATCH_METRICS,
    PATCHABLE_KINDS,
    REPORT_SECTIONS,
    SCORE_METHODS,
    SCORE_SITES,
)

__all__ = ["DEBUG_ENV_VAR", "build_parser", "main"]

DEBUG_ENV_VAR = "CIRCUITLAB_DEBUG"
"""Set to 1 (or pass ``--debug``) to see the full traceback of an error."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the command and the fix."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _whole_number(minimum: int, meaning: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {meaning}, got {value}")
        return value

    parse.__name__ = "whole number"
    return parse


def _real_number(ok: Callable[[float], bool], meaning: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or not ok(value):
            raise argparse.ArgumentTypeError(f"must be {meaning}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


_count = _whole_number(1, "at least 1")
_index = _whole_number(0, "0 or more")
_window = _whole_number(2, "at least 2 tokens")
_positive_number = _real_number(lambda v: v > 0, "a finite number above 0")
_non_negative_number = _real_number(lambda v: v >= 0, "a finite number, 0 or more")
_percent = _real_number(lambda v: 0 < v < 100, "a percentage above 0 and below 100")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="registry name, local Hugging Face folder, or hub id (default: the embedded "
        "smollm2-135m-instruct)",
    )
    parser.add_argument(
        "--device",
        default=None,
        help="cpu (default), cuda, cuda:1, mps (under torchrun: cuda means cuda:$LOCAL_RANK)",
    )
    parser.add_argument(
        "--device-map",
        default=None,
        metavar="MAP",
        help="spread the model over devices instead of --device (needs accelerate): auto, "
        "balanced, balanced_low_0, sequential, a device, or a JSON object of module names to "
        "devices",
    )
    parser.add_argument("--dtype", default="float32", help="float32 (default), bf16, fp16")
    _add_output_options(parser)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="model cache root (default $CIRCUITLAB_CACHE_DIR or ~/.cache/circuitlab)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON (- = stdout)")
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help=f"show the full traceback of an error (or set ${DEBUG_ENV_VAR}=1)",
    )


def _add_result_options(
    parser: argparse.ArgumentParser, *, top_k: int, plot: str, csv: bool = False, save: bool = False
) -> None:
    """Printing, batching and the files a per-component command can write."""
    parser.add_argument(
        "--top-k", type=_count, default=top_k, help=f"components to print ({top_k})"
    )
    parser.add_argument("--batch-size", type=_count, default=8, help="prompts per forward pass")
    parser.add_argument("--plot", metavar="PNG", help=plot)
    if csv:
        parser.add_argument("--csv", metavar="FILE", help="write the per-component table as CSV")
    if save:
        parser.add_argument("--save", metavar="FILE", help="write the full result (safetensors)")


_TASK_HELP = "built-in task (sentiment, yesno, topic, nli) or a .jsonl/.csv file"


def _add_task_options(parser: argparse.ArgumentParser) -> None:
    """How a task's prompts are built and sampled (shared by the task commands)."""
    parser.add_argument("--template", type=_index, default=0, help="prompt template index (0)")
    parser.add_argument("--k-shot", type=_index, default=0, help="in-context demonstrations (0)")
    parser.add_argument("--seed", type=_index, default=0, help="seed for sampling (0)")
    parser.add_argument("--limit", type=_count, default=None, help="use a balanced sample of N")
    parser.add_argument("--text-column", default="text", help="text column of a file task")
    parser.add_argument("--label-column", default="label", help="label column of a file task")
    parser.add_argument(
        "--label-words", nargs="+", default=None, help="label words, in label order"
    )


def _add_scoring_options(parser: argparse.ArgumentParser, methods: list[str]) -> None:
    """Data and settings of the layer scores (shared by layer-scores and prune-study)."""
    parser.add_argument(
        "--data",
        default="calibration",
        help="texts to score on: a shipped prose split (calibration, evaluation, all) or a "
        ".txt / .jsonl file (default: calibration)",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=methods,
        choices=methods,
        metavar="METHOD",
        help=f"rankings ({', '.join(methods)}; default: all)",
    )
    parser.add_argument(
        "--site",
        choices=list(SCORE_SITES),
        default="block",
        help="activation AVSS measures: block output (default), attn or mlp output",
    )
    parser.add_argument(
        "--epsilon",
        type=_positive_number,
        default=DEFAULT_EPSILON,
        help=f"sparsity threshold ε: |a| < ε counts as near zero (default {DEFAULT_EPSILON})",
    )
    parser.add_argument("--window", type=_window, default=128, help="tokens per window (128)")
    parser.add_argument("--batch-size", type=_count, default=8, help="windows per forward pass")
    parser.add_argument("--seed", type=_index, default=0, help="seed of the random ranking (0)")


def _add_layer_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    scores = sub.add_parser(
        "layer-scores",
        help="AVSS, Block Influence and baseline importance of every layer",
        description="Score every layer in one streaming pass over texts: AVSS (activation "
        "variance / sparsity, arXiv 2411.02117) with its statistics, ShortGPT's Block "
        "Influence and its angular variant, a seeded random ranking and drop-the-last. "
        "Prints the layers k% pruning would remove by each; --out writes a CSV, JSON and one "
        "bar chart per method.",
    )
    _add_model_options(scores)
    _add_scoring_options(scores, list(SCORE_METHODS))
    scores.add_argument("--k", type=_percent, default=25.0, help="percent of layers to mark (25)")
    scores.add_argument("--out", metavar="DIR", help="write tables and figures into DIR")
    scores.set_defaults(handler="layer_scores")

    study = sub.add_parser(
        "prune-study",
        help="prune the k%% lowest-ranked layers by each score; QA / perplexity / sentiment",
        description="Score the layers, measure the ground truth (the drop when each layer "
        "alone is removed), prune the k% lowest-ranked layers by every ranking and evaluate "
        "factual QA, perplexity on held-out prose and sentiment accuracy; report retention "
        "(pruned / original) per task and each score's Spearman ρ with the ground truth. "
        "Evaluations are checkpointed in DIR/evaluations.json: rerun to resume. --export "
        "writes the pruned model as a Hugging Face checkpoint.",
    )
    _add_model_options(study)
    _add_scoring_options(study, [*SCORE_METHODS, "ground_truth"])
    study.add_argument("--out", metavar="DIR", required=True, help="result folder (required)")
    study.add_argument(
        "--k",
        type=_percent,
        nargs="+",
        default=list(DEFAULT_PERCENTS),
        help="percent of layers to remove (default 10 25 40)",
    )
    study.add_argument(
        "--tasks",
        nargs="+",
        default=list(EVALUATION_TASKS),
        choices=list(EVALUATION_TASKS),
        help="evaluation tasks (default: all three)",
    )
    study.add_argument("--qa-questions", type=_count, default=None, help="questions (all 240)")
    study.add_argument(
        "--perplexity-tokens", type=_count, default=None, help="prose tokens (all, ~26k)"
    )
    study.add_argument(
        "--sentiment-examples", type=_count, default=None, help="sentiment examples (all 200)"
    )
    study.add_argument(
        "--suite-seed",
        type=_index,
        default=None,
        help="seed of the evaluation samples (default --seed; give it to vary the random "
        "ranking's --seed alone)",
    )
    study.add_argument("--export", metavar="DIR", help="export the pruned model to DIR")
    study.add_argument(
        "--export-method", default="avss", help="ranking whose pruning is exported (avss)"
    )
    study.add_argument("--export-k", type=_percent, default=25.0, help="percent exported (25)")
    study.add_argument("--overwrite", action="store_true", help="replace an existing export")
    study.set_defaults(handler="prune_study")


def _add_consistency_options(parser: argparse.ArgumentParser) -> None:
    """The paraphrase task, its input split and the probes (shared by both commands)."""
    parser.add_argument(
        "--task",
        default="sentiment",
        help="paraphrase task: sentiment, yesno, topic, nli, or a .jsonl/.csv file of inputs with "
        "--paraphrases (default sentiment)",
    )
    parser.add_argument("--paraphrases", metavar="FILE", help="a .txt/.json/.jsonl of templates")
    parser.add_argument("--limit", type=_count, default=None, help="use a balanced sample of N")
    parser.add_argument(
        "--locate-fraction",
        type=_real_number(lambda v: 0 < v < 1, "between 0 and 1"),
        default=0.5,
        help="share of the inputs used to locate heads; the rest are held out (0.5)",
    )
    parser.add_argument("--C", type=_positive_number, default=1.0, help="probe inverse L2 (1.0)")
    parser.add_argument(
        "--method",
        default="mean_difference",
        choices=["mean_difference", "mass_mean", "probe", "random"],
        help="bias direction (mean_difference: the paper's)",
    )
    parser.add_argument("--seed", type=_index, default=0, help="seed of the input split (0)")
    parser.add_argument("--batch-size", type=_count, default=8, help="prompts per forward pass")
    parser.add_argument("--plot", metavar="PNG", help="write the figure")


def _add_consistency_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    heads = sub.add_parser(
        "consistency-heads",
        help="probe every head for whether paraphrases get the same answer; rank them",
        description="Read every head's last-token output over the task's inputs under its "
        "locating paraphrases (one pass), label each prompt consistent or not, fit one probe "
        "per head and rank the heads by held-out probe accuracy (arXiv 2501.11041).",
    )
    _add_model_options(heads)
    _add_consistency_options(heads)
    heads.add_argument("--top-k", type=_count, default=10, help="heads to print (10)")
    heads.add_argument("--save", metavar="FILE", help="write the located heads (safetensors)")
    heads.set_defaults(handler="consistency_heads")

    edit = sub.add_parser(
        "consistency-edit",
        help="bias injection: sweep alpha x K with controls on held-out data; export the best",
        description="Locate the heads (or load --heads), add alpha times each one's consistency "
        "direction to the top K, and measure consistency and accuracy on held-out inputs (every "
        "input with --evaluate-all) and paraphrases, beside random heads and random directions. "
        "--export bakes the best (or --k/--alpha) into a Hugging Face checkpoint and checks its "
        "answers.",
    )
    _add_model_options(edit)
    _add_consistency_options(edit)
    edit.add_argument("--heads", metavar="FILE", help="located heads from consistency-heads --save")
    edit.add_argument(
        "--evaluate-all",
        action="store_true",
        help="with --heads: evaluate on every input of --task (after --limit), not only the "
        "part --locate-fraction holds out; for heads located on another task (transfer)",
    )
    edit.add_argument(
        "--alphas", type=_real_number(lambda v: True, "a finite number"), nargs="+",
        default=[1, 3, 5, 7, 9], help="bias strengths (1 3 5 7 9)",
    )  # fmt: skip
    edit.add_argument(
        "--ks", type=_count, nargs="+", default=[5, 15, 25, 35], help="heads K (5 15 25 35)"
    )
    edit.add_argument(
        "--control-seeds", type=_index, nargs="*", default=[0, 1, 2],
        help="seeds of the random-head controls (0 1 2); none: no controls",
    )  # fmt: skip
    edit.add_argument(
        "--direction-seeds", type=_index, nargs="*", default=None,
        help="seeds of the random-direction controls (default: --control-seeds)",
    )  # fmt: skip
    edit.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="keep every measured setting in FILE (JSON); rerun with it to resume the sweep",
    )
    edit.add_argument("--export", metavar="DIR", help="export the chosen edit to DIR")
    edit.add_argument("--k", type=_count, default=None, help="export these K heads (best)")
    edit.add_argument(
        "--alpha", type=_real_number(lambda v: True, "a finite number"), default=None,
        help="export with this alpha (best)",
    )  # fmt: skip
    edit.add_argument("--overwrite", action="store_true", help="replace an existing export")
    edit.set_defaults(handler="consistency_edit")


def _add_hallucination_options(parser: argparse.ArgumentParser) -> None:
    """The answers (graded or labelled) and the layer scores (shared by both commands)."""
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--questions",
        metavar="FILE",
        help="questions with gold answers (.jsonl/.json/.csv: question, answer, aliases) whose "
        "greedy answers are graded (default: the 660 shipped factual questions)",
    )
    data.add_argument(
        "--data",
        metavar="FILE",
        help="labelled answers in TruthfulQA's shape (.jsonl/.json/.csv: question, "
        "correct_answers, incorrect_answers); CSV answers are separated by ';'",
    )
    parser.add_argument("--question-field", default="question", help="question field (question)")
    parser.add_argument("--correct-field", default="correct_answers", help="--data correct field")
    parser.add_argument(
        "--incorrect-field", default="incorrect_answers", help="--data incorrect field"
    )
    parser.add_argument("--limit", type=_count, default=None, help="use only N questions")
    parser.add_argument(
        "--site", default="block", choices=["block", "attn", "mlp"], help="scored output (block)"
    )
    parser.add_argument(
        "--epsilon", type=_positive_number, default=DEFAULT_EPSILON, help="sparsity threshold"
    )
    parser.add_argument("--C", type=_positive_number, default=1.0, help="probe inverse L2 (1.0)")
    parser.add_argument(
        "--method",
        default="eavss",
        choices=list(HALLUCINATION_METHODS),
        help="ranking whose top K layers are chosen (eavss)",
    )
    parser.add_argument(
        "--top-k", type=_count, default=None, help="layers chosen, K (4, or every layer if fewer)"
    )
    parser.add_argument("--seed", type=_index, default=0, help="seed of every split (0)")
    parser.add_argument("--batch-size", type=_count, default=8, help="samples per forward pass")


def _add_hallucination_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    layers = sub.add_parser(
        "hallucination-layers",
        help="rank layers by hallucination propensity (EAVSS, HSAV, HSS) beside a probe baseline",
        description="Grade the model's answers to factual questions (or read labelled answers), "
        "then score every layer in one pass: activation variance and sparsity on the "
        "hallucinated and the truthful answer tokens, contrasted as HSAV, HSS and EAVSS, and a "
        "linear probe's held-out accuracy at telling the two apart (arXiv 2411.10069).",
    )
    _add_model_options(layers)
    _add_hallucination_options(layers)
    layers.add_argument(
        "--probe-fraction",
        type=_real_number(lambda v: 0 < v < 1, "between 0 and 1"),
        default=0.5,
        help="share of the questions that train the probes (0.5)",
    )
    layers.add_argument("--plot", metavar="PNG", help="write the scores by layer")
    layers.add_argument("--save", metavar="FILE", help="write the scores (safetensors or .json)")
    layers.set_defaults(handler="hallucination_layers")

    tune = sub.add_parser(
        "contrastive-finetune",
        help="LoRA on the hallucination-prone layers: correct answers above hallucinated ones",
        description="Split the questions into training and test questions, choose the layers "
        "(--layers, or the top K of --method scored on the training answers), train a LoRA "
        "adapter on them with the contrastive loss, and compare the test questions before and "
        "after. --export writes the adapter (plain peft) and the merged model (plain "
        "transformers) and checks that both give circuitlab's answers.",
    )
    _add_model_options(tune)
    _add_hallucination_options(tune)
    tune.add_argument("--layers", type=_index, nargs="+", default=None, help="layers to tune")
    tune.add_argument(
        "--test-fraction",
        type=_real_number(lambda v: 0 < v < 1, "between 0 and 1"),
        default=0.2,
        help="share of the questions held out for the comparison (0.2)",
    )
    tune.add_argument("--epochs", type=_count, default=2, help="passes over the questions (2)")
    tune.add_argument(
        "--learning-rate", type=_positive_number, default=5e-4, help="AdamW step (5e-4)"
    )
    tune.add_argument(
        "--margin", type=_non_negative_number, default=1.0, help="ranking margin, nats/token (1)"
    )
    tune.add_argument(
        "--ranking-weight", type=_non_negative_number, default=1.0, help="ranking term weight (1)"
    )
    tune.add_argument(
        "--representation-weight",
        type=_non_negative_number,
        default=0.0,
        help="InfoNCE term weight (0: off)",
    )
    tune.add_argument(
        "--temperature", type=_positive_number, default=0.1, help="InfoNCE temperature (0.1)"
    )
    tune.add_argument("--rank", type=_count, default=8, help="LoRA rank (8)")
    tune.add_argument("--lora-alpha", type=_positive_number, default=16.0, help="LoRA alpha (16)")
    tune.add_argument(
        "--modules", nargs="+", default=None, help="LoRA target modules (every linear map)"
    )
    tune.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="keep the training state in FILE after every epoch; rerun with it to resume",
    )
    tune.add_argument("--show", type=_index, default=5, help="test answers to print (5)")
    tune.add_argument(
        "--export", metavar="DIR", help="write adapter/ and merged/ to DIR, checked with plain HF"
    )
    tune.add_argument("--overwrite", action="store_true", help="replace an existing export")
    tune.set_defaults(handler="contrastive_finetune")


def _add_instruction_options(parser: argparse.ArgumentParser) -> None:
    """The instruction data and the LoRA training settings both ILA commands share."""
    parser.add_argument(
        "--instruction-column", default="instruction", help="field of the instruction (instruction)"
    )
    parser.add_argument(
        "--response-column", default="response", help="field of the response (response)"
    )
    parser.add_argument("--limit", type=_count, default=None, help="use the first N training pairs")
    parser.add_argument("--batch-size", type=_count, default=8, help="pairs per step (8)")
    parser.add_argument(
        "--learning-rate", type=_positive_number, default=1e-3, help="AdamW step of LoRA (1e-3)"
    )
    parser.add_argument("--rank", type=_count, default=8, help="LoRA rank (8)")
    parser.add_argument("--lora-alpha", type=_positive_number, default=16.0, help="LoRA alpha (16)")
    parser.add_argument(
        "--modules", nargs="+", default=None, help="LoRA target modules (every linear map)"
    )
    budget = parser.add_mutually_exclusive_group()
    budget.add_argument("--top-k", type=_count, default=None, help="budget: K layers")
    budget.add_argument(
        "--percent",
        type=_real_number(lambda v: 0 < v < 100, "between 0 and 100"),
        default=None,
        help="budget: this %% of the layers (25)",
    )


def _position_or_all(text: str) -> int | str:
    if text == "all":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a whole number (negative counts back from the last token) or 'all', got "
            f"{text!r}"
        ) from None


def _add_lens_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    lens = sub.add_parser(
        "logit-lens",
        help="per layer, the next-token distribution read from the residual stream",
        description="The logit lens: read each prompt's residual stream after the embedding "
        "and after every block through the final norm (recomputed on it) and the unembedding, "
        "and print per layer the top token and each target's probability and rank. --plot "
        "draws a layer x position heatmap of the first prompt; --json writes the whole result.",
    )
    _add_model_options(lens)
    lens.add_argument(
        "--prompt", action="append", required=True, help="prompt text (repeat for several)"
    )
    lens.add_argument(
        "--target", action="append", default=[], help="token to follow, e.g. ' Paris' (repeatable)"
    )
    lens.add_argument("--k", type=_count, default=5, help="top tokens kept per layer (5)")
    lens.add_argument(
        "--position",
        type=_position_or_all,
        default=None,
        help="token position read in every prompt (default: each last token; -1 = last; all = "
        "every token: the table shows the last, --plot every position)",
    )
    lens.add_argument("--batch-size", type=_count, default=8, help="prompts per forward pass")
    lens.add_argument("--plot", metavar="PNG", help="write the layer x position heatmap")
    lens.set_defaults(handler="logit_lens")


def _add_patching_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    patch = sub.add_parser(
        "patch",
        help="activation patching: a layer x position (or layer x head) map from prompt pairs",
        description="Patch each layer x position (residual and branch sites) or layer x head "
        "(--site z) with the activation of the paired prompt, and measure a metric: the logit "
        "difference of --diff A B (default), or the log-probability of --target. Denoising "
        "(default) writes clean activations into the corrupted run. --attribution instead "
        "estimates every head's and MLP's effect from gradients (--exact adds exact patching "
        "and the rank correlation).",
    )
    _add_model_options(patch)
    patch.add_argument("--clean", metavar="TEXT", help="the clean prompt")
    patch.add_argument(
        "--corrupted", metavar="TEXT", help="the corrupted prompt (same token count)"
    )
    patch.add_argument(
        "--pairs",
        metavar="FILE",
        help="a .jsonl/.json/.csv file of clean, corrupted, answer, wrong",
    )
    patch.add_argument(
        "--diff", nargs=2, metavar=("A", "B"), help="metric: logit of A minus logit of B"
    )
    patch.add_argument("--target", metavar="TOKEN", help="the answer token (metric log_prob)")
    patch.add_argument("--metric", choices=list(PATCH_METRICS), help="what to measure")
    patch.add_argument(
        "--site", choices=list(PATCHABLE_KINDS), default="resid_pre", help="where to patch"
    )
    patch.add_argument("--direction", choices=("denoise", "noise"), default="denoise")
    patch.add_argument("--layers", type=_index, nargs="+", help="layers to sweep (default all)")
    patch.add_argument(
        "--positions",
        type=int,
        nargs="+",
        help="positions to sweep, or to patch each head at with --site z (negative: from the end)",
    )
    patch.add_argument(
        "--attribution", action="store_true", help="attribution patching (gradient estimate)"
    )
    patch.add_argument(
        "--exact", action="store_true", help="with --attribution: also patch exactly and compare"
    )
    patch.add_argument("--batch-size", type=_count, default=32, help="patched runs per pass (32)")
    patch.add_argument("--plot", metavar="PNG", help="write the map (or the comparison) figure")
    patch.set_defaults(handler="patch")


def _add_attention_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    attention = sub.add_parser(
        "attention",
        help="attention patterns of heads on a prompt (text, HTML, figure), or where every "
        "head attends",
        description="Without --summary: the attention pattern of each --head (and every head "
        "of --layer) on one --prompt. Prints, for every query token, the key each head attends "
        "to most; --html writes a self-contained page (hover a cell for its tokens and weight), "
        "--plot a heatmap, --json the pattern. Head indices count query heads; under "
        "grouped-query attention each head's key/value group is shown. With --summary: every "
        "head's mean attention to the previous token, the first token, earlier copies of the "
        "current token and the induction target, in one pass over repeated random tokens (and "
        "any --prompt); prints the top heads per score.",
    )
    _add_model_options(attention)
    attention.add_argument(
        "--prompt",
        action="append",
        default=[],
        help="prompt text (one for the pattern view; repeatable with --summary)",
    )
    attention.add_argument(
        "--head", action="append", default=[], metavar="LxHy", help="head to show, e.g. L3H1"
    )
    attention.add_argument("--layer", type=_index, default=None, help="every head of layer N")
    attention.add_argument(
        "--summary",
        action="store_true",
        help="score every head instead: previous token, first token, same token, induction",
    )
    attention.add_argument(
        "--top", type=_count, default=5, help="with --summary: heads printed per score (5)"
    )
    attention.add_argument(
        "--sequences",
        type=_index,
        default=16,
        help="with --summary: random sequences, each repeated twice (16; 0: --prompt only)",
    )
    attention.add_argument(
        "--length", type=_count, default=24, help="with --summary: tokens per sequence (24)"
    )
    attention.add_argument(
        "--seed", type=_index, default=0, help="with --summary: seed of the sequences (0)"
    )
    attention.add_argument("--batch-size", type=_count, default=8, help="prompts per forward pass")
    attention.add_argument("--html", metavar="OUT.html", help="write the self-contained HTML view")
    attention.add_argument("--plot", metavar="PNG", help="write the heatmaps")
    attention.set_defaults(handler="attention")


def _add_ila_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    rank = sub.add_parser(
        "ila-rank",
        help="rank layers by learned gates on LoRA updates (ILA, arXiv 2410.17875)",
        description="Stage 1: LoRA on every layer, trained on instruction data until the loss "
        "is stable (the mean of the last --window steps within --stable of the window before). "
        "Stage 2: the adapter frozen, one gate γ = σ(s) per layer (or LoRA matrix) learned under "
        "a budget on mean γ. Layers are ranked by γ; with several --data sets or --seeds, the "
        "Jaccard overlap of their top layers is printed.",
    )
    _add_model_options(rank)
    rank.add_argument(
        "--data",
        nargs="+",
        default=list(INSTRUCTION_SETS),
        help=f"shipped sets ({', '.join(INSTRUCTION_SETS)}; default all) or .jsonl/.json/.csv "
        "files of instruction/response pairs",
    )
    _add_instruction_options(rank)
    rank.add_argument("--seeds", type=_index, nargs="+", default=[0], help="seeds to run (0)")
    rank.add_argument("--max-steps", type=_count, default=300, help="stage-1 step cap (300)")
    rank.add_argument(
        "--stable", type=_positive_number, default=0.02, help="stage-1 ε, relative (0.02)"
    )
    rank.add_argument("--window", type=_count, default=20, help="stage-1 window in steps (20)")
    rank.add_argument("--unit", choices=("layer", "matrix"), default="layer", help="one gate per")
    rank.add_argument(
        "--budget",
        type=_real_number(lambda v: 0 < v < 1, "between 0 and 1"),
        default=0.25,
        help="mean γ the penalty holds (0.25)",
    )
    rank.add_argument(
        "--sparsity", type=_non_negative_number, default=100.0, help="penalty weight λ (100)"
    )
    rank.add_argument("--gate-steps", type=_count, default=20, help="stage-2 steps (20)")
    rank.add_argument(
        "--gate-learning-rate", type=_positive_number, default=0.1, help="Adam step of s (0.1)"
    )
    rank.add_argument(
        "--checkpoint-dir",
        metavar="DIR",
        help="keep both stages' training states in DIR; rerun with it to resume",
    )
    rank.add_argument("--adapters", metavar="DIR", help="write each stage-1 adapter (plain peft)")
    rank.add_argument("--plot", metavar="PNG", help="the ranking (one) or the overlap (several)")
    rank.add_argument(
        "--save", metavar="FILE", help="write the first ranking (for ila-finetune --ranking)"
    )
    rank.set_defaults(handler="ila_rank")

    tune = sub.add_parser(
        "ila-finetune",
        help="LoRA on the layers a rule picks (ILA top, all but ILA bottom, random, AVSS, all)",
        description="Train LoRA for a fixed number of steps on the layers --select picks, and "
        "compare the held-out instruction loss before and after. --export writes the adapter "
        "(plain peft).",
    )
    _add_model_options(tune)
    tune.add_argument(
        "--data",
        nargs=1,
        default=["steps"],
        help="a shipped set (steps) or a .jsonl/.json/.csv file; a file without a split field "
        "holds out 20%%",
    )
    _add_instruction_options(tune)
    tune.add_argument("--select", choices=ILA_SELECTIONS, default="top", help="layer rule (top)")
    tune.add_argument(
        "--ranking", metavar="FILE", help="an ila-rank --save file (top, freeze-bottom)"
    )
    tune.add_argument("--steps", type=_count, default=100, help="optimiser steps (100)")
    tune.add_argument("--seed", type=_index, default=0, help="seed (adapter, batches, random)")
    tune.add_argument(
        "--checkpoint", metavar="FILE", help="keep the training state in FILE; rerun to resume"
    )
    tune.add_argument("--export", metavar="DIR", help="write the adapter (plain peft) to DIR")
    tune.add_argument("--overwrite", action="store_true", help="replace an existing export")
    tune.set_defaults(handler="ila_finetune")


def _add_report_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    report = sub.add_parser(
        "report",
        help="the analysis report: every method on one model, as an HTML page and results",
        description="Run a compact analysis of a model (decomposition, component accuracy, "
        "layer importance with the single-layer ground truth, activation patching, consistency "
        "heads, hallucination-prone layers, and ILA given a stage-1 adapter) and write a folder "
        "with a self-contained index.html, results.json and the figures (PNG and SVG). About "
        "75 s on the embedded default model on 2 CPU cores.",
    )
    _add_model_options(report)
    report.add_argument(
        "--out",
        default="circuitlab-report",
        metavar="DIR",
        help="the report folder (default ./circuitlab-report; a previous report there is "
        "replaced, any other non-empty folder refused)",
    )
    report.add_argument(
        "--overwrite", action="store_true", help="replace --out even if it is not a report"
    )
    report.add_argument(
        "--sections",
        nargs="+",
        choices=REPORT_SECTIONS,
        default=list(REPORT_SECTIONS),
        metavar="SECTION",
        help=f"the sections to run (default all: {', '.join(REPORT_SECTIONS)}; ila only with "
        "--ila-adapter)",
    )
    report.add_argument(
        "--prompt",
        action="append",
        help="a factual prompt to decompose (repeat; default four shipped prompts)",
    )
    report.add_argument(
        "--top-k", type=_count, default=8, help="rows per ranking table (default 8)"
    )
    report.add_argument(
        "--task",
        default="sentiment",
        help="component-accuracy task: sentiment (default), topic, nli, yesno or a task file",
    )
    report.add_argument(
        "--task-examples",
        type=_count,
        default=64,
        help="balanced sample of the task (default 64)",
    )
    report.add_argument(
        "--k-shot", type=_index, default=0, help="demonstrations per task prompt (default 0)"
    )
    report.add_argument(
        "--calibration-texts",
        type=_count,
        default=4,
        help="shipped calibration texts AVSS and Block Influence read (default 4 of 8)",
    )
    report.add_argument(
        "--ground-truth-tasks",
        nargs="+",
        choices=EVALUATION_TASKS,
        default=["perplexity"],
        metavar="TASK",
        help="tasks the single-layer ground truth evaluates with each layer removed: "
        f"{', '.join(EVALUATION_TASKS)} (default perplexity, the cheapest)",
    )
    report.add_argument(
        "--ground-truth-tokens",
        type=_count,
        default=256,
        help="held-out prose tokens of the single-layer ground truth (default 256)",
    )
    report.add_argument(
        "--ground-truth-examples",
        type=_count,
        default=16,
        help="sentiment examples / QA questions of the ground truth (default 16)",
    )
    report.add_argument(
        "--pair",
        nargs=4,
        action="append",
        metavar=("CLEAN", "CORRUPTED", "ANSWER", "WRONG"),
        help="a patching pair (repeat; both prompts the same token count; default the Eiffel "
        "Tower / Colosseum pair)",
    )
    report.add_argument(
        "--paraphrase-task",
        choices=PARAPHRASE_TASKS,
        default="sentiment",
        help="consistency task (default sentiment)",
    )
    report.add_argument(
        "--paraphrase-inputs",
        type=_count,
        default=16,
        help="balanced sample of its inputs (default 16)",
    )
    report.add_argument(
        "--factual-questions",
        type=_count,
        default=48,
        help="factual questions graded for the hallucination section (default 48)",
    )
    report.add_argument(
        "--ila-adapter",
        metavar="DIR",
        help="a stage-1 LoRA adapter folder (circuitlab ila-rank --adapters); adds the ILA section",
    )
    report.add_argument(
        "--ila-data",
        default="facts",
        help=f"instruction set the ILA gates are fitted on: {', '.join(INSTRUCTION_SETS)} or a "
        "file (default facts)",
    )
    report.add_argument(
        "--ila-steps", type=_count, default=20, help="gate-fitting steps (default 20)"
    )
    report.add_argument("--seed", type=_index, default=0, help="seed of every sample and fit")
    report.add_argument(
        "--batch-size", type=_count, default=16, help="prompts per forward pass (default 16)"
    )
    report.set_defaults(handler="report")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog="circuitlab",
        description="Mechanistic interpretability on real Hugging Face models, offline.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help=f"show the full traceback of an error (or set ${DEBUG_ENV_VAR}=1)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_report_command(sub)

    decompose = sub.add_parser(
        "decompose",
        help="direct logit attribution of every head and MLP to target tokens",
        description="Split the final residual stream of each prompt into components (embedding, "
        "attention heads, MLPs) and attribute the target logits to them, exactly.",
    )
    _add_model_options(decompose)
    decompose.add_argument(
        "--prompt", action="append", required=True, help="prompt text (repeat for several)"
    )
    decompose.add_argument(
        "--target", action="append", default=[], help="target token, e.g. ' Paris' (repeatable)"
    )
    decompose.add_argument(
        "--diff",
        nargs=2,
        action="append",
        default=[],
        metavar=("A", "B"),
        help="target the logit difference A - B (repeatable)",
    )
    decompose.add_argument(
        "--per-prompt",
        action="store_true",
        help="the i-th --target (or --diff) belongs to the i-th --prompt: one target per prompt",
    )
    decompose.add_argument(
        "--position",
        type=int,
        default=None,
        help="token position to read in every prompt (default: each last token; -1 = last)",
    )
    _add_result_options(decompose, top_k=10, plot="write a layer x head heatmap", save=True)
    decompose.set_defaults(handler="decompose")

    accuracy = sub.add_parser(
        "component-accuracy",
        help="accuracy of every head and MLP on a labelled task; good/bad/label-biased",
        description="Classify each example of a task with each component's direct logit "
        "attribution to the label words, and report component accuracies and types.",
    )
    _add_model_options(accuracy)
    accuracy.add_argument("--task", required=True, help=_TASK_HELP)
    _add_task_options(accuracy)
    _add_result_options(accuracy, top_k=5, plot="write a layer x head accuracy heatmap", csv=True)
    accuracy.set_defaults(handler="component_accuracy")

    ablate = sub.add_parser(
        "ablate",
        help="effect of ablating each head / MLP / layer on a metric over a task or prompts",
        description="A scripted ablation study: knock out each component in turn (zero, mean "
        "or resample ablation) and measure the change of a metric over a labelled task or over "
        "prompts with target tokens. Writes a table (CSV/JSON) and a heatmap.",
    )
    _add_model_options(ablate)
    data = ablate.add_mutually_exclusive_group(required=True)
    data.add_argument("--task", help=_TASK_HELP)
    data.add_argument("--prompt", action="append", help="prompt text (repeat for several)")
    ablate.add_argument(
        "--target",
        action="append",
        default=[],
        help="with --prompt: the gold next token, e.g. ' Paris' (one, or one per prompt)",
    )
    ablate.add_argument(
        "--diff",
        nargs=2,
        action="append",
        default=[],
        metavar=("A", "B"),
        help="with --prompt: measure logit A - logit B (one pair, or one per prompt)",
    )
    _add_task_options(ablate)
    ablate.add_argument(
        "--components",
        nargs="+",
        default=list(COMPONENT_GROUPS),
        metavar="C",
        help="groups (heads, mlps, layers) and/or components such as L3H1 MLP3 L3 (default: "
        "heads mlps layers)",
    )
    ablate.add_argument("--method", choices=["zero", "mean", "resample"], default="zero")
    ablate.add_argument(
        "--reference",
        metavar="FILE",
        help="reference prompts for mean/resample ablation, one per line (default: the "
        "study's own prompts)",
    )
    ablate.add_argument(
        "--metric",
        choices=sorted(METRICS),
        default=None,
        help="what to measure (default: logit_diff for a task or --diff, log_prob for --target)",
    )
    _add_result_options(ablate, top_k=10, plot="write heatmaps of the effects", csv=True, save=True)
    ablate.set_defaults(handler="ablate")

    reweight = sub.add_parser(
        "reweight",
        help="fit component weights on K labelled examples; compare with ICL and Calib+",
        description="Component reweighting (arXiv 2406.13131): draw K labelled examples of a "
        "task, use K' as demonstrations and the rest to learn one weight per head and MLP on "
        "its direct contribution to the label words; evaluate on a balanced test set beside "
        "K'-shot ICL, K-shot ICL, Calib+ and the oracle single components. Several demo sets "
        "and templates give mean ± std. --save writes the weights fitted on the first run.",
    )
    _add_model_options(reweight)
    reweight.add_argument("--task", required=True, help=_TASK_HELP)
    reweight.add_argument("--k", type=_count, nargs="+", default=[24], help="labelled examples K")
    reweight.add_argument(
        "--demos", type=_count, default=None, help="demonstrations K' (4, or 3 for 3 classes)"
    )
    reweight.add_argument("--demo-sets", type=_count, default=1, help="demonstration sets (1)")
    reweight.add_argument(
        "--templates", type=_index, nargs="+", default=[0], help="template indices (0)"
    )
    reweight.add_argument("--n-test", type=_count, default=None, help="balanced test examples")
    reweight.add_argument(
        "--l1", type=_non_negative_number, default=0.1, help="L1 penalty (0.1, the paper)"
    )
    reweight.add_argument("--lr", type=_positive_number, default=0.05, help="learning rate (0.05)")
    reweight.add_argument("--epochs", type=_count, default=2000, help="most epochs (2000)")
    reweight.add_argument("--clip", action="store_true", help="clip weights to [0, 1]")
    reweight.add_argument(
        "--skip-icl-all", action="store_true", help="skip K-shot ICL (the slowest baseline)"
    )
    reweight.add_argument("--seed", type=_index, default=0, help="seed of every draw (0)")
    reweight.add_argument("--text-column", default="text", help="text column of a file task")
    reweight.add_argument("--label-column", default="label", help="label column of a file task")
    reweight.add_argument("--label-words", nargs="+", default=None, help="label words")
    reweight.add_argument("--limit", type=_count, default=None, help=argparse.SUPPRESS)
    reweight.add_argument("--batch-size", type=_count, default=8, help="prompts per forward pass")
    reweight.add_argument(
        "--top-k", type=_count, default=5, help="top-weighted components to print"
    )
    reweight.add_argument("--save", metavar="FILE", help="write the fitted weights (safetensors)")
    reweight.add_argument("--csv", metavar="FILE", help="write the summary table as CSV")
    reweight.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="keep every finished run in FILE (JSON); rerun with it to resume an interrupted study",
    )
    reweight.set_defaults(handler="reweight")

    _add_layer_commands(sub)
    _add_consistency_commands(sub)
    _add_hallucination_commands(sub)
    _add_ila_commands(sub)
    _add_patching_commands(sub)
    _add_lens_commands(sub)
    _add_attention_commands(sub)
    add_study_command(sub)

    export = sub.add_parser(
        "export",
        help="bake interventions from a YAML/JSON spec into a Hugging Face checkpoint",
        description="Apply the interventions of a spec file to a model, write them into its "
        "weights as a plain save_pretrained checkpoint (safetensors, config, tokenizer), and "
        "check that plain transformers reloads it to the hooked model's logits.",
    )
    export.add_argument("spec", help="YAML or JSON spec of interventions (see the docs)")
    export.add_argument("output", help="checkpoint folder to create")
    _add_model_options(export)
    export.add_argument(
        "--overwrite", action="store_true", help="replace an existing non-empty folder"
    )
    export.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="skip reloading the checkpoint with plain transformers to compare logits",
    )
    export.add_argument(
        "--check-prompt",
        action="append",
        default=None,
        help="prompt for the logit check (repeatable; default two short prompts)",
    )
    export.add_argument(
        "--tolerance",
        type=_non_negative_number,
        default=1e-3,
        help="largest logit difference the check accepts (default 1e-3; float32)",
    )
    export.set_defaults(handler="export")

    models = sub.add_parser(
        "models",
        help="list or fetch the registry models",
        description="The models circuitlab can load offline.",
    )
    models_sub = models.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    listing = models_sub.add_parser(
        "list",
        help="known models and whether they are cached",
        description="List the registry models and their cache state.",
    )
    _add_output_options(listing)
    listing.set_defaults(handler="models_list")
    fetch = models_sub.add_parser(
        "fetch",
        help="fetch and cache a registry model",
        description="Fetch a registry model's GGUF, dequantize it and write the verified cache.",
    )
    fetch.add_argument("name", help="registry name (see `circuitlab models list`)")
    _add_output_options(fetch)
    fetch.set_defaults(handler="models_fetch")
    return parser


def _command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Any:
    """The sub-command parser that parsed ``args`` (its options name the CLI flags)."""
    current: Any = parser
    for dest in ("command", "models_command"):
        choices = next(
            (a.choices for a in current._actions if isinstance(a, argparse._SubParsersAction)),
            None,
        )
        if choices is None or getattr(args, dest, None) not in choices:
            break
        current = choices[getattr(args, dest)]
    return current


def cli_message(message: str, parser: argparse.ArgumentParser) -> str:
    """``message`` with API parameter hints (``overwrite=True``, ``cache_dir=``) rewritten as
    the command's own flags (``--overwrite``, ``--cache-dir``)."""
    for action in parser._actions:
        flags = [flag for flag in action.option_strings if flag.startswith("--")]
        if not flags or action.dest in ("help",):
            continue
        flag = flags[0]
        if action.nargs == 0:  # a switch: "overwrite=True" -> "--overwrite"
            message = re.sub(rf"\b{action.dest}=True\b", flag, message)
        message = re.sub(rf"\b{action.dest}=(?=[\s,.;)]|$)", flag, message)
        message = re.sub(rf"\b{action.dest}=", f"{flag} ", message)
    return message


def _debugging(args: argparse.Namespace) -> bool:
    flag = os.environ.get(DEBUG_ENV_VAR, "").strip().lower()
    return bool(getattr(args, "debug", False)) or flag in ("1", "true", "yes", "on")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input or failure, 130 on
    Ctrl-C). Errors are one line on standard error; ``--debug`` shows the traceback."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help (0) or a bad argument (2), already printed
        return done.code if isinstance(done.code, int) else 2
    command = _command_parser(parser, args)
    # The commands (and torch, transformers, the analyses) load only once a command runs:
    # --help and argument errors stay fast.
    try:
        from circuitlab.cli.paths import check_outputs

        check_outputs(args)  # every output path is checked before any work (and any import)
        from circuitlab import distributed

        if not distributed.is_writer():  # under torchrun, rank 0 alone prints
            sys.stdout = open(os.devnull, "w", encoding="utf-8")
        from circuitlab.cli import commands

        getattr(commands, args.handler)(args)
    except KeyboardInterrupt:
        print(f"{command.prog}: interrupted", file=sys.stderr)
        return 130
    except (CircuitlabError, OSError) as error:
        if _debugging(args):
            traceback.print_exc()
        text = str(error) if isinstance(error, CircuitlabError) else _os_error_text(error)
        print(f"{command.prog}: error: {cli_message(text, command)}", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: one line, the traceback on request
        if _debugging(args):
            traceback.print_exc()
        print(
            f"{command.prog}: internal error: {type(error).__name__}: {error}. This is a bug in "
            f"circuitlab; rerun with --debug for the traceback and please report it.",
            file=sys.stderr,
        )
        return 3
    return 0


def _os_error_text(error: OSError) -> str:
    where = f" ({error.filename})" if error.filename else ""
    return f"{error.strerror or error}{where}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
