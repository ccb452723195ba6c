"""The report as one self-contained HTML page: inline CSS, figures embedded as PNG data.

No script, no web font, no external URL: the page reads the same offline, from an e-mail
attachment, on a laptop or a phone (the layout is one column that narrows; wide tables
scroll sideways inside their box).
"""

from __future__ import annotations

import base64
import html
import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy

if TYPE_CHECKING:
    from circuitlab.report.sections import Section

__all__ = ["render_page"]

_STYLE = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6475; --line: #d9dde5;
  --accent: #3949ab; --panel: #f6f7fb; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica,
  Arial, sans-serif; color: var(--ink); background: #fff; }
main { max-width: 62rem; margin: 0 auto; padding: 1.25rem 1rem 3rem; }
h1 { font-size: 1.7rem; margin: 0.2rem 0 0.4rem; line-height: 1.25; }
h2 { font-size: 1.3rem; margin: 2.4rem 0 0.6rem; padding-top: 0.6rem;
  border-top: 2px solid var(--line); line-height: 1.3; }
p, li { overflow-wrap: anywhere; }
.muted { color: var(--muted); font-size: 0.92rem; }
nav ol { padding-left: 1.3rem; margin: 0.4rem 0; }
nav a, a { color: var(--accent); }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
  padding: 0.8rem 1rem; margin: 0.8rem 0; }
.facts li { margin: 0.25rem 0; }
figure { margin: 1rem 0; }
figure img { display: block; width: 100%; max-width: 50rem; height: auto;
  border: 1px solid var(--line); border-radius: 6px; background: #fff; }
figcaption { color: var(--muted); font-size: 0.88rem; margin-top: 0.3rem; }
.table-wrap { overflow-x: auto; margin: 0.8rem 0; border: 1px solid var(--line);
  border-radius: 6px; }
table { border-collapse: collapse; width: 100%; font-size: 0.88rem;
  font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; padding: 0.5rem 0.6rem; color: var(--muted); }
th, td { padding: 0.3rem 0.6rem; border-bottom: 1px solid var(--line); text-align: left;
  white-space: nowrap; }
th { background: var(--panel); }
.skipped { border-left: 4px solid #c77700; }
code { font-size: 0.92em; }
@media (max-width: 40rem) {
  body { font-size: 15px; }
  main { padding: 0.8rem 0.7rem 2rem; }
  h1 { font-size: 1.35rem; }
  h2 { font-size: 1.12rem; }
}
"""


def _text(value: Any) -> str:
    return html.escape(str(value))


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str], caption: str = "") -> str:
    head = "".join(f"<th scope='col'>{_text(cell)}</th>" for cell in header)
    head = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{_text(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    title = f"<caption>{_text(caption)}</caption>" if caption else ""
    return f"<div class='table-wrap'><table>{title}{head}<tbody>{body}</tbody></table></div>"


def _cell(value: Any) -> Any:
    """Numbers as people read them: floats to 4 significant digits (no float32 noise)."""
    if isinstance(value, (bool, numpy.bool_)) or not isinstance(value, numbers.Real):
        return "" if value is None else value
    if isinstance(value, numbers.Integral):
        return int(value)
    return "" if value != value else f"{float(value):.4g}"


def _frame(caption: str, frame: Any) -> str:
    rows = [[_cell(value) for value in row] for row in frame.astype(object).values.tolist()]
    return _table(rows, [str(column) for column in frame.columns], caption)


def _figure(stem: str, png: bytes, caption: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return (
        f"<figure><img src='data:image/png;base64,{data}' alt='{_text(caption)}'>"
        f"<figcaption>{_text(caption)} — also as "
        f"<a href='figures/{_text(stem)}.svg'>SVG</a> and "
        f"<a href='figures/{_text(stem)}.png'>PNG</a> next to this page.</figcaption></figure>"
    )


def _section(section: Section, pngs: Mapping[str, bytes]) -> str:
    parts = [f"<section id='{_text(section.key)}'><h2>{_text(section.title)}</h2>"]
    if section.skipped is not None:
        parts.append(f"<p class='card skipped'>Not run: {_text(section.skipped)}</p></section>")
        return "".join(parts)
    parts.append(f"<p>{_text(section.summary)}</p>")
    if section.facts:
        items = "".join(f"<li>{_text(fact)}</li>" for fact in section.facts)
        parts.append(f"<div class='card'><ul class='facts'>{items}</ul></div>")
    for stem in section.figures:
        parts.append(_figure(stem, pngs[stem], stem.replace("_", " ")))
    for caption, frame in section.tables:
        parts.append(_frame(caption, frame))
    parts.append(f"<p class='muted'>{section.seconds:.1f} s.</p></section>")
    return "".join(parts)


def render_page(
    *,
    model_card: Mapping[str, Any],
    architecture: str,
    sections: Sequence[Section],
    pngs: Mapping[str, bytes],
    versions: Mapping[str, str],
    total_seconds: float,
    created: str,
) -> str:
    """The whole report page.

    Args:
        model_card: the model handle's `model_card()`.
        architecture: one line describing the architecture.
        sections: the sections, in page order (skipped ones say why).
        pngs: figure stem → PNG bytes (embedded as data URLs).
        versions: package → version, printed at the foot.
        total_seconds: wall time of the whole report.
        created: when the report was made (ISO 8601).

    Returns:
        The HTML text (UTF-8, one file, no external resources).
    """
    name = model_card.get("name", "model")
    contents = "".join(
        f"<li><a href='#{_text(s.key)}'>{_text(s.title)}</a>"
        + (" <span class='muted'>(not run)</span>" if s.skipped else "")
        + "</li>"
        for s in sections
    )
    card_rows = [
        ("model", name),
        ("architecture", architecture),
        ("parameters", f"{model_card.get('parameters', 0):,}"),
        ("dtype, device", f"{model_card.get('dtype')}, {model_card.get('device')}"),
        ("BOS policy", model_card.get("bos_policy")),
    ]
    timing = [(s.title, "not run" if s.skipped else f"{s.seconds:.1f} s") for s in sections]
    timing.append(("total (with loading and writing)", f"{total_seconds:.1f} s"))
    foot = ", ".join(f"{package} {version}" for package, version in versions.items())
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>circuitlab report: {_text(name)}</title><style>{_STYLE}</style></head><body>"
        f"<main><p class='muted'>circuitlab report · {_text(created)}</p>"
        f"<h1>{_text(name)}</h1>"
        + _table(card_rows, ["", ""], "The model")
        + f"<nav aria-label='Sections'><ol>{contents}</ol></nav>"
        + "".join(_section(section, pngs) for section in sections)
        + "<h2 id='timing'>Time per stage</h2>"
        + _table(timing, ["stage", "wall time"])
        + "<p class='muted'>Every number on this page is in <code>results.json</code> next to "
        "it (each result through circuitlab's result protocol: "
        "<code>circuitlab.report.read_results</code> reads them back); the figures are in "
        f"<code>figures/</code>. Made with {_text(foot)}.</p></main></body></html>\n"
    )
