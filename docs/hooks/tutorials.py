"""MkDocs hook: one page per tutorial, showing its code with the outputs and figures of a real run.

For every script in ``tutorials/`` the hook generates ``tutorials/<script stem>.md``: the
script's docstring as the introduction, then each ``# %%`` cell — its leading comment as prose,
its code, what it printed, and the figures it wrote. The outputs come from a record made by
``docs/hooks/run_tutorial.py`` when the test suite ran the tutorial. A record made from other
sources (or missing) is reported in the build log and the tutorial is executed then and there,
so a fresh clone still builds pages with real outputs, just more slowly.

The pages are appended to the "Tutorials" section of the nav, after the overview
(``tutorials/index.md``), titled by the overview's ``## N. Title`` headings.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import time
from pathlib import Path

import run_tutorial
from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.utils import get_relative_url
from run_tutorial import Cell, Record

log = logging.getLogger("mkdocs.hooks.tutorials")

NAV_SECTION = "Tutorials"
OVERVIEW = "tutorials/index.md"


def _scripts() -> list[Path]:
    return sorted(run_tutorial.TUTORIALS.glob("*.py"))


def _number(script: Path) -> int | None:
    match = re.match(r"(\d+)", script.stem)
    return int(match.group(1)) if match else None


def _titles(config: MkDocsConfig) -> dict[int, str]:
    """``{number: "N. Title"}`` from the overview's ``## N. Title`` headings."""
    overview = Path(config.docs_dir) / OVERVIEW
    if not overview.is_file():
        return {}
    text = overview.read_text(encoding="utf-8")
    return {
        int(n): f"{n}. {title.strip()}" for n, title in re.findall(r"^## (\d+)\. (.+)$", text, re.M)
    }


def _summary(docstring: str, fallback: str) -> str:
    first = docstring.strip().splitlines()[0] if docstring.strip() else fallback
    return first.rstrip(".")


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """Append one nav entry per tutorial to the "Tutorials" section."""
    titles = _titles(config)
    pages = []
    for script in _scripts():
        number = _number(script)
        title = titles.get(number) if number is not None else None
        pages.append({title or script.stem: f"tutorials/{script.stem}.md"})
    for index, item in enumerate(config.nav or []):
        if isinstance(item, dict) and NAV_SECTION in item:
            section = item[NAV_SECTION]
            if isinstance(section, str):
                section = [{"Overview": section}]
            config.nav[index] = {NAV_SECTION: [*section, *pages]}
            break
    else:
        raise PluginError(f"docs/hooks/tutorials.py: mkdocs.yml's nav has no {NAV_SECTION!r}")
    return config


def _record(script: Path) -> tuple[Record, str]:
    record, status = run_tutorial.load_record(script)
    if record is not None:
        return record, "from its record"
    reason = {
        "missing": "has no record (the test suite writes one: tests/test_tutorials.py)",
        "stale": "has a stale record (its sources or library versions changed since)",
    }[status]
    name = script.relative_to(run_tutorial.REPO).as_posix()
    log.info(f"Tutorial {name} {reason}; executing it now for its page ...")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(Path(run_tutorial.__file__)), str(script)],
        cwd=run_tutorial.REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-25:])
        raise PluginError(f"Tutorial {name} failed while building its page:\n{tail}")
    record, status = run_tutorial.load_record(script, current_only=False)
    if record is None:
        raise PluginError(f"Tutorial {name} ran, but its record is {status}")
    return record, f"executed now in {time.perf_counter() - started:.0f} s"


def _fence(text: str, language: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{language}\n{text.rstrip()}\n{ticks}"


def _prose_and_code(cell: Cell) -> tuple[str, str]:
    """Split a cell into its leading comment (as prose) and the code after it."""
    lines = cell.source.splitlines()
    comment = []
    while lines and lines[0].startswith("#"):
        comment.append(lines.pop(0)[1:].strip())
    prose = " ".join(comment)
    prose = re.sub(r"^(\d+)\. ", r"\1\\. ", prose)  # "3. Text" is a heading here, not a list
    return prose, "\n".join(lines).strip("\n")


def _page(script: Path, record: Record, page: File, figures: dict[str, File], how: str) -> str:
    summary = _summary(record.docstring, script.stem)
    body = record.docstring.strip().split("\n", 1)[1].strip() if "\n" in record.docstring else ""
    versions = ", ".join(f"{name} {version}" for name, version in record.versions.items())
    parts = [
        f"# {summary}",
        body,
        '!!! info "Executed"',
        f"    The outputs and figures below were produced by running `{record.tutorial}` "
        f"({len(record.cells)} cells, {record.seconds:.0f} s on a CPU; {versions}); this "
        f"build took them {how}. Run it yourself with "
        f"`python {record.tutorial} out/` from the repository root.",
    ]
    for cell in record.cells:
        prose, code = _prose_and_code(cell)
        if prose:
            parts.append(prose)
        if code:
            parts.append(_fence(code, "python"))
        if cell.output.strip():
            parts.append(_fence(cell.output, "text"))
        for name in cell.files:
            figure = figures[name]
            if name.lower().endswith(".html"):
                url = get_relative_url(figure.url, page.url)
                parts.append(
                    f'<iframe src="{url}" title="{name}" style="width:100%;height:520px;'
                    f'border:1px solid #ccc"></iframe>'
                )
                parts.append(f"Open [`{name}`]({script.stem}/{name}) on its own.")
            else:
                parts.append(f"![{name}]({script.stem}/{name})")
        if cell.other_files:
            written = ", ".join(f"`out/{name}`" for name in cell.other_files)
            parts.append(f"*Also wrote {written}.*")
    return "\n\n".join(part for part in parts if part) + "\n"


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Generate every tutorial's page (and copy its figures) from its record."""
    started = time.perf_counter()
    executed = 0
    for script in _scripts():
        record, how = _record(script)
        executed += how.startswith("executed")
        folder = run_tutorial.record_folder(script)
        page = File.generated(config, f"tutorials/{script.stem}.md", content="")
        figures = {}
        for cell in record.cells:
            for name in cell.files:
                figure = File.generated(
                    config, f"tutorials/{script.stem}/{name}", abs_src_path=str(folder / name)
                )
                figures[name] = figure
                files.append(figure)
        page.content_string = _page(script, record, page, figures, how)
        files.append(page)
    log.info(
        f"Tutorial pages: {len(_scripts())} generated, {executed} of them executed during this "
        f"build ({time.perf_counter() - started:.1f} s)"
    )
    return files
