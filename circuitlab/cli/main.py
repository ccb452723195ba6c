"""Entry point of the ``circuitlab`` console script (argparse, one sub-command per job).

Commands:
    circuitlab report [--model NAME] [--prompt TEXT] [--top-k K] [--json OUT]
    circuitlab models list [--json OUT]
    circuitlab models fetch NAME
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from circuitlab.cli import commands
from circuitlab.errors import CircuitlabError

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
    report.set_defaults(handler=commands.report)

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
    decompose.add_argument("--top-k", type=int, default=10, help="components to print (10)")
    decompose.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    decompose.add_argument("--plot", metavar="PNG", help="write a layer x head heatmap")
    decompose.add_argument("--save", metavar="FILE", help="write the full result (safetensors)")
    decompose.set_defaults(handler=commands.decompose)

    accuracy = sub.add_parser(
        "component-accuracy",
        help="accuracy of every head and MLP on a labelled task; good/bad/label-biased",
        description="Classify each example of a task with each component's direct logit "
        "attribution to the label words, and report component accuracies and types.",
    )
    _add_model_options(accuracy)
    accuracy.add_argument(
        "--task", required=True, help="built-in task (sentiment, yesno) or a .jsonl/.csv file"
    )
    accuracy.add_argument("--template", type=int, default=0, help="prompt template index (0)")
    accuracy.add_argument("--k-shot", type=int, default=0, help="in-context demonstrations (0)")
    accuracy.add_argument("--seed", type=int, default=0, help="seed for the demonstrations (0)")
    accuracy.add_argument("--limit", type=int, default=None, help="use a balanced sample of N")
    accuracy.add_argument("--text-column", default="text", help="text column of a file task")
    accuracy.add_argument("--label-column", default="label", help="label column of a file task")
    accuracy.add_argument(
        "--label-words", nargs="+", default=None, help="label words, in label order"
    )
    accuracy.add_argument("--top-k", type=int, default=5, help="components to print (5)")
    accuracy.add_argument("--batch-size", type=int, default=8, help="prompts per forward pass")
    accuracy.add_argument("--plot", metavar="PNG", help="write a layer x head accuracy heatmap")
    accuracy.add_argument("--csv", metavar="FILE", help="write the per-component table as CSV")
    accuracy.set_defaults(handler=commands.component_accuracy)

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
    listing.set_defaults(handler=commands.models_list)
    fetch = models_sub.add_parser(
        "fetch",
        help="fetch and cache a registry model",
        description="Fetch a registry model's GGUF, dequantize it and write the verified cache.",
    )
    fetch.add_argument("name", help="registry name (see `circuitlab models list`)")
    _add_output_options(fetch)
    fetch.set_defaults(handler=commands.models_fetch)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 2 bad input or failure)."""
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except CircuitlabError as error:
        print(f"circuitlab: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
