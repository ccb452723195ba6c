"""Entry point of the ``circuitlab`` console script (argparse, one sub-command per job).

Commands:
    circuitlab report [--model NAME] [--prompt TEXT] [--top-k K] [--json OUT]
    circuitlab decompose --prompt TEXT --target TOKEN [--diff A B] [--plot PNG]
    circuitlab component-accuracy --task NAME [--k-shot K] [--plot PNG] [--csv FILE]
    circuitlab ablate (--task NAME | --prompt TEXT --target TOKEN) [--components ...]
    circuitlab export SPEC OUTPUT [--overwrite] [--no-check]
    circuitlab layer-scores [--data SPLIT|FILE] [--methods ...] [--site block] [--out DIR]
    circuitlab prune-study --out DIR [--k 10 25 40] [--methods ...] [--export DIR]
    circuitlab models list [--json OUT]
    circuitlab models fetch NAME
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from circuitlab.errors import CircuitlabError
from circuitlab.vocabulary import (
    COMPONENT_GROUPS,
    DEFAULT_EPSILON,
    DEFAULT_PERCENTS,
    EVALUATION_TASKS,
    METRICS,
    SCORE_METHODS,
    SCORE_SITES,
)

__all__ = ["build_parser", "main"]


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=None,
        help="registry name, local Hugging Face folder, or hub id (default: the embedded "
        "smollm2-135m-instruct)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, mps")
    parser.add_argument("--dtype", default="float32", help="float32 (default), bf16, fp16")
    _add_output_options(parser)


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="model cache root (default $CIRCUITLAB_CACHE_DIR or ~/.cache/circuitlab)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the result as JSON (- = stdout)")


def _add_result_options(
    parser: argparse.ArgumentParser, *, top_k: int, plot: str, csv: bool = False, save: bool = False
) -> None:
    """Printing, batching and the files a per-component command can write."""
    parser.add_argument("--top-k", type=int, default=top_k, help=f"components to print ({top_k})")
    parser.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    parser.add_argument("--plot", metavar="PNG", help=plot)
    if csv:
        parser.add_argument("--csv", metavar="FILE", help="write the per-component table as CSV")
    if save:
        parser.add_argument("--save", metavar="FILE", help="write the full result (safetensors)")


_TASK_HELP = "built-in task (sentiment, yesno, topic, nli) or a .jsonl/.csv file"


def _add_task_options(parser: argparse.ArgumentParser) -> None:
    """How a task's prompts are built and sampled (shared by the task commands)."""
    parser.add_argument("--template", type=int, default=0, help="prompt template index (0)")
    parser.add_argument("--k-shot", type=int, default=0, help="in-context demonstrations (0)")
    parser.add_argument("--seed", type=int, default=0, help="seed for sampling (0)")
    parser.add_argument("--limit", type=int, default=None, help="use a balanced sample of N")
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
        type=float,
        default=DEFAULT_EPSILON,
        help=f"sparsity threshold ε: |a| < ε counts as near zero (default {DEFAULT_EPSILON})",
    )
    parser.add_argument("--window", type=int, default=128, help="tokens per window (128)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per forward pass")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random ranking (0)")


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
    scores.add_argument("--k", type=float, default=25.0, help="percent of layers to mark (25)")
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
        type=float,
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
    study.add_argument("--qa-questions", type=int, default=None, help="questions (all 240)")
    study.add_argument(
        "--perplexity-tokens", type=int, default=None, help="prose tokens (all, ~26k)"
    )
    study.add_argument(
        "--sentiment-examples", type=int, default=None, help="sentiment examples (all 200)"
    )
    study.add_argument("--export", metavar="DIR", help="export the pruned model to DIR")
    study.add_argument(
        "--export-method", default="avss", help="ranking whose pruning is exported (avss)"
    )
    study.add_argument("--export-k", type=float, default=25.0, help="percent exported (25)")
    study.add_argument("--overwrite", action="store_true", help="replace an existing export")
    study.set_defaults(handler="prune_study")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="circuitlab",
        description="Mechanistic interpretability on real Hugging Face models, offline.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    report = sub.add_parser(
        "report",
        help="model card and top next-token predictions for a prompt",
        description="Load a model and print its card plus the top next-token predictions.",
    )
    _add_model_options(report)
    report.add_argument("--prompt", default="The capital of France is", help="prompt text")
    report.add_argument("--top-k", type=int, default=5, help="how many predictions (default 5)")
    report.set_defaults(handler="report")

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
        help="what to measure (default: logit_diff for a task, log_prob for prompts)",
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
    reweight.add_argument("--k", type=int, nargs="+", default=[24], help="labelled examples K")
    reweight.add_argument(
        "--demos", type=int, default=None, help="demonstrations K' (4, or 3 for 3 classes)"
    )
    reweight.add_argument("--demo-sets", type=int, default=1, help="demonstration sets (1)")
    reweight.add_argument(
        "--templates", type=int, nargs="+", default=[0], help="template indices (0)"
    )
    reweight.add_argument("--n-test", type=int, default=None, help="balanced test examples")
    reweight.add_argument("--l1", type=float, default=0.1, help="L1 penalty (0.1, the paper)")
    reweight.add_argument("--lr", type=float, default=0.05, help="learning rate (0.05)")
    reweight.add_argument("--epochs", type=int, default=2000, help="most epochs (2000)")
    reweight.add_argument("--clip", action="store_true", help="clip weights to [0, 1]")
    reweight.add_argument(
        "--skip-icl-all", action="store_true", help="skip K-shot ICL (the slowest baseline)"
    )
    reweight.add_argument("--seed", type=int, default=0, help="seed of every draw (0)")
    reweight.add_argument("--text-column", default="text", help="text column of a file task")
    reweight.add_argument("--label-column", default="label", help="label column of a file task")
    reweight.add_argument("--label-words", nargs="+", default=None, help="label words")
    reweight.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    reweight.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    reweight.add_argument("--top-k", type=int, default=5, help="top-weighted components to print")
    reweight.add_argument("--save", metavar="FILE", help="write the fitted weights (safetensors)")
    reweight.add_argument("--csv", metavar="FILE", help="write the summary table as CSV")
    reweight.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="keep every finished run in FILE (JSON); rerun with it to resume an interrupted study",
    )
    reweight.set_defaults(handler="reweight")

    _add_layer_commands(sub)

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
        type=float,
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input or failure)."""
    args = build_parser().parse_args(argv)
    # The commands (and torch, transformers, the analyses) load only once a command runs:
    # --help and argument errors stay fast.
    from circuitlab.cli import commands

    try:
        getattr(commands, args.handler)(args)
    except CircuitlabError as error:
        print(f"circuitlab: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
