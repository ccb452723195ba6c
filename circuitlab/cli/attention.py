"""The ``circuitlab attention`` command: heads' attention patterns on one prompt, or the
per-head summary (previous token, first token, same token, induction)."""

from __future__ import annotations

import argparse
import time

from circuitlab.attention import AttentionPattern, HeadSummary, attention_pattern, head_summary
from circuitlab.cli.output import save_figure, write_result_json
from circuitlab.errors import InputError
from circuitlab.model import ModelHandle

__all__ = ["attention_command", "check_arguments", "pattern_text", "summary_text"]

_WIDTH = 16  # characters of a token shown in the text views


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse options that do not go together, before the model loads."""
    prompts = args.prompt or []
    if args.summary:
        extra = [
            flag
            for flag, given in (
                ("--head", bool(args.head)),
                ("--layer", args.layer is not None),
                ("--html", args.html is not None),
            )
            if given
        ]
        if extra:
            raise InputError(
                f"--summary scores every head over many sequences; {', '.join(extra)} belong to "
                f"the pattern view of one prompt. Drop {', '.join(extra)}, or drop --summary."
            )
        if not prompts and args.sequences == 0:
            raise InputError(
                "--sequences 0 leaves no data to summarise: give --prompt TEXT (repeatable) or "
                "keep the random repeated sequences."
            )
        return
    if len(prompts) != 1:
        raise InputError(
            f"The pattern view shows one prompt: give exactly one --prompt TEXT (got "
            f"{len(prompts)}). Several prompts go with --summary."
        )
    if not args.head and args.layer is None:
        raise InputError(
            "Name the heads to show: --head L3H1 (repeatable) and/or --layer N for every head "
            "of a layer; or pass --summary for every head's scores."
        )


def _token(position: int, token: str) -> str:
    text = repr(token)
    text = text if len(text) <= _WIDTH else text[: _WIDTH - 1] + "…"
    return f"{position:>3} {text:<{_WIDTH}}"


def pattern_text(view: AttentionPattern) -> str:
    """For each head and query token, the key it attends to most (and the weight)."""
    lines = [f"{view.model}: {len(view.tokens)} tokens, {len(view.heads)} head(s)"]
    for head, group in zip(view.heads, view.kv_groups, strict=True):
        shared = (
            f" (KV group {group} of {view.n_kv_heads})" if view.n_kv_heads < view.n_heads else ""
        )
        lines.append(f"{head}{shared}: query → the key it attends to most")
        for query, key, weight in view.strongest_keys(head):
            lines.append(
                f"  {_token(query, view.tokens[query])} → {_token(key, view.tokens[key])} "
                f"{weight:.2f}"
            )
    return "\n".join(lines)


def summary_text(summary: HeadSummary, top: int) -> str:
    """The ``top`` heads of each score, one line per score."""
    lines = [f"{summary.model}: where each head attends — {summary!r}"]
    for name in summary.score_names:
        ranked = ", ".join(f"{head} {value:.2f}" for head, value in summary.top(name, top))
        lines.append(f"  {name:<15} {ranked or '(no query defines it)'}")
    return "\n".join(lines)


def attention_command(args: argparse.Namespace, model: ModelHandle) -> None:
    """Run the pattern view or the summary, print it, write the requested files."""
    started = time.perf_counter()
    if args.summary:
        result: AttentionPattern | HeadSummary = head_summary(
            model,
            args.prompt or None,
            sequences=args.sequences,
            length=args.length,
            seed=args.seed,
            batch_size=args.batch_size,
            progress=True,
        )
        print(summary_text(result, args.top))
    else:
        result = attention_pattern(model, args.prompt[0], args.head or None, layer=args.layer)
        print(pattern_text(result))
        if args.html:
            print(f"wrote {result.save_html(args.html)}")
    seconds = time.perf_counter() - started
    if args.plot:
        save_figure(result.plot(), args.plot)
    if args.json:
        write_result_json(result, args.json, seconds=seconds)
