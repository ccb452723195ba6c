"""The ``circuitlab logit-lens`` command: per layer, the top token and the targets' probability
and rank, read from the residual stream through the final norm recomputed at that layer."""

from __future__ import annotations

import argparse
import time

from circuitlab.cli.output import save_figure, write_result_json
from circuitlab.lens import LogitLens, logit_lens
from circuitlab.model import ModelHandle

__all__ = ["lens_text", "logit_lens_command"]

_WIDTH = 14  # characters of a token shown in the table


def _token(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= _WIDTH else shown[: _WIDTH - 1] + "…"


def _probability(value: float) -> str:
    """A probability readable at any size: 0.7725, or 3.3e-04 below 0.001."""
    return f"{value:.4f}" if value >= 1e-3 or value == 0 else f"{value:.1e}"


def lens_text(lens: LogitLens) -> str:
    """One table per prompt at its last read position: layer, top-1 token and probability,
    and each target's probability and rank (0 = top)."""
    lines = []
    targets = "".join(f"  {_token(label[1:-1]):>{_WIDTH}} p   rank" for label in lens.targets)
    for prompt in range(lens.n_prompts):
        count = int(lens.lengths[prompt])
        position = int(lens.positions[prompt, count - 1])
        text = repr(lens.prompts[prompt]) if lens.prompts else f"prompt {prompt}"
        token = _token(lens.tokens[prompt][count - 1])
        lines.append(f"{text}, read after token {position} {token}:")
        lines.append(f"  {'layer':>5}  {'top-1':<{_WIDTH}} {'p':>6}{targets}")
        table = lens.layer_table(prompt, count - 1)
        for row in table.itertuples(index=False):
            cells = f"  {row.layer:>5}  {_token(row.top_token):<{_WIDTH}} {row.top_prob:6.3f}"
            for index in range(len(lens.targets)):
                prob, rank = row[3 + 2 * index], row[4 + 2 * index]
                cells += f"  {_probability(prob):>{_WIDTH + 2}} {rank:>6}"
            lines.append(cells)
    return "\n".join(lines)


def logit_lens_command(args: argparse.Namespace, model: ModelHandle) -> None:
    """Run the logit lens on ``--prompt`` texts, print the tables, write ``--plot``/``--json``."""
    started = time.perf_counter()
    lens = logit_lens(
        model,
        args.prompt,
        args.target or None,
        positions=args.position,
        k=args.k,
        batch_size=args.batch_size,
        progress=len(args.prompt) > args.batch_size,
    )
    seconds = time.perf_counter() - started
    print(
        f"{model.name}: logit lens of {lens.n_prompts} prompt(s) over {lens.n_layers} layers "
        f"(embed = the embedding output; final norm recomputed at each layer) in {seconds:.1f} s"
    )
    print(lens_text(lens))
    if args.plot:
        save_figure(lens.plot(), args.plot)
    if args.json:
        write_result_json(lens, args.json, seconds=seconds)
