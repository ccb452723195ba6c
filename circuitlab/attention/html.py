"""Self-contained HTML views of attention patterns (no scripts, fonts, images or links).

Each head is a table: one row per query token, one column per key token, each cell coloured by
its weight (white 0 → dark blue 1; grey: future keys, masked). Sizes and colours are inline
attributes, so the grid reads right even where a notebook strips ``<style>`` blocks; the small
scoped style block adds a hover outline and, on touch screens (no hover), shows a tapped cell's
text. Every token is escaped with `html.escape`.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from circuitlab.attention.patterns import AttentionPattern

__all__ = ["html_page", "pattern_html", "weight_colour"]

_LOW = (255, 255, 255)  # weight 0
_HIGH = (8, 48, 107)  # weight 1 (the dark end of matplotlib's Blues)
_MASKED = "#ececec"
_CELL = 14  # px

_STYLE = """<style>
.cl-attn td{position:relative;padding:0;border:1px solid #fff}
.cl-attn td[title]:hover{outline:2px solid #d62728;outline-offset:-2px;cursor:pointer}
.cl-attn tr:hover>th{color:#d62728}
@media (hover:none){.cl-attn td[title]:hover::after{content:attr(title);position:absolute;
left:0;bottom:100%;z-index:3;background:#222;color:#fff;padding:2px 6px;border-radius:3px;
white-space:pre;font-size:12px;pointer-events:none}}
</style>"""


def weight_colour(weight: float) -> str:
    """The cell colour of an attention weight in [0, 1] (``#rrggbb``)."""
    w = min(max(float(weight), 0.0), 1.0)
    red, green, blue = (
        round(low + (high - low) * w) for low, high in zip(_LOW, _HIGH, strict=True)
    )
    return f"#{red:02x}{green:02x}{blue:02x}"


def _label(position: int, token: str) -> str:
    from circuitlab.attention.patterns import shown_token

    return html.escape(f"{position} {shown_token(token)}")


def _attribute(text: str) -> str:
    """``text`` escaped for a double-quoted attribute (``&``, ``<``, ``>``, ``"``)."""
    return html.escape(text, quote=False).replace('"', "&quot;")


def _cell(q: int, k: int, weight: float, quoted: list[str]) -> str:
    colour = weight_colour(weight)
    style = f' style="background:{colour}"' if colour != "#ffffff" else ""  # white: the default
    return f'<td{style} title="{q} {quoted[q]} → {k} {quoted[k]}: {weight:.3f}"></td>'


def _head_table(view: AttentionPattern, index: int) -> str:
    tokens = view.tokens
    n = len(tokens)
    weights = view.pattern[index].detach().float().cpu().tolist()
    quoted = [_attribute(repr(token)) for token in tokens]
    columns = "".join(f'<col style="width:{_CELL}px">' for _ in tokens)
    header = "".join(
        f'<th title="key {k}: {quoted[k]}" style="writing-mode:vertical-rl;transform:'
        f"rotate(180deg);white-space:pre;font-weight:normal;font-size:11px;padding:2px 0;"
        f'text-align:left;vertical-align:bottom">{_label(k, token)}</th>'
        for k, token in enumerate(tokens)
    )
    rows = []
    for q, row in enumerate(weights):
        cells = "".join(_cell(q, k, row[k], quoted) for k in range(q + 1))
        if q < n - 1:  # the future keys, masked: one grey cell
            cells += f'<td colspan="{n - q - 1}" style="background:{_MASKED}"></td>'
        rows.append(
            f'<tr style="height:{_CELL}px"><th title="query {q}: {quoted[q]}" style="position:'
            f"sticky;left:0;z-index:1;background:#fff;white-space:pre;font-weight:normal;"
            f'font-size:11px;text-align:right;padding:0 6px 0 0">{_label(q, tokens[q])}</th>'
            f"{cells}</tr>"
        )
    return (
        f'<table style="border-collapse:collapse;margin:0">'
        f'<colgroup><col style="width:auto">{columns}</colgroup>'
        f"<thead><tr><th></th>{header}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _group_note(view: AttentionPattern, index: int) -> str:
    head, group = view.heads[index], view.kv_groups[index]
    if view.n_kv_heads == view.n_heads:
        return f"{head}"
    size = view.n_heads // view.n_kv_heads
    first, last = group * size, (group + 1) * size - 1
    return (
        f"{head} · KV group {group} of {view.n_kv_heads} "
        f"(key/value head {group}, shared by query heads {first}–{last})"
    )


def pattern_html(view: AttentionPattern) -> str:
    """The HTML fragment of an `AttentionPattern`: a note, then one grid per head."""
    model = f" of {html.escape(view.model)}" if view.model else ""
    gqa = (
        f" Grouped-query attention: {view.n_heads} query heads share {view.n_kv_heads} "
        f"key/value heads; each grid is one query head."
        if view.n_kv_heads < view.n_heads
        else ""
    )
    note = (
        f'<p style="margin:4px 0 8px 0;font-size:12px;color:#333">Attention patterns{model} on '
        f"{len(view.tokens)} tokens. Rows: query (the attending token); columns: key. Colour: "
        f"weight 0 (white) → 1 (dark blue); grey: future keys (masked). Hover a cell (tap on a "
        f"phone) for <i>query → key: weight</i>.{gqa}</p>"
    )
    sections = [
        f'<div style="margin:0 0 14px 0"><div style="font-weight:600;margin:0 0 4px 0">'
        f"{html.escape(_group_note(view, index))}</div>"
        f'<div style="overflow-x:auto;max-width:100%;-webkit-overflow-scrolling:touch;'
        f'padding-top:4px">{_head_table(view, index)}</div></div>'
        for index in range(len(view.heads))
    ]
    return (
        f'<div class="cl-attn" style="font-family:system-ui,-apple-system,\'Segoe UI\','
        f'Roboto,sans-serif;font-size:13px;color:#111;max-width:100%">{_STYLE}{note}'
        f"{''.join(sections)}</div>"
    )


def html_page(fragment: str, *, title: str) -> str:
    """A complete UTF-8 page around ``fragment`` (with a viewport for phones)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head>"
        f'<body style="margin:12px;background:#fff">{fragment}</body></html>\n'
    )
