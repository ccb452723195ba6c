"""`write_report`: run the sections, then write the report folder in one atomic step.

The folder holds ``index.html`` (self-contained), ``results.json`` (every result's document,
through the result protocol, with the settings, versions and time per stage) and
``figures/`` (each figure as PNG and SVG). It is staged next to its target and moved into
place when complete, so an interrupted report leaves the previous one (or nothing) behind.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from circuitlab import distributed
from circuitlab.errors import InputError
from circuitlab.files import check_output_folder
from circuitlab.output_folder import staged_folder
from circuitlab.progress import progress_bar
from circuitlab.report.page import render_page
from circuitlab.report.sections import (
    SECTION_STEPS,
    SECTION_TITLES,
    SECTIONS,
    Section,
    SectionSkipped,
    check_inputs,
)
from circuitlab.report.settings import ReportSettings
from circuitlab.versions import installed_versions

if TYPE_CHECKING:
    from circuitlab.model import ModelHandle
    from circuitlab.results import Result

__all__ = ["REPORT_FORMAT", "ReportFiles", "read_results", "write_report"]

REPORT_FORMAT = "circuitlab-report"
"""The ``format`` field of a report's ``results.json`` (`read_results` checks it)."""
_VERSION = 1


@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written and how long each stage took.

    Attributes:
        folder: the report folder.
        index: its ``index.html``.
        results: its ``results.json``.
        figures: the figure files (PNG and SVG).
        seconds: stage → wall time in seconds (sections, ``writing`` and ``total``).
        skipped: section → why it did not run.
    """

    folder: Path
    index: Path
    results: Path
    figures: tuple[Path, ...]
    seconds: dict[str, float]
    skipped: dict[str, str]


def _is_report(folder: Path) -> bool:
    try:
        with open(folder / "results.json", encoding="utf-8") as file:
            return json.load(file).get("format") == REPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_report_folder(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """The report folder, if it can be written: new, empty, a previous report (replaced), or
    anything with ``overwrite``; other non-empty folders are refused, never mixed."""
    target = check_output_folder(path, "report folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite and not _is_report(target):
        raise InputError(
            f"The report folder {target} already holds other files (it is not a circuitlab "
            f"report). Choose a new folder (--out), or pass --overwrite to replace it."
        )
    return target


def _figure_bytes(figure: Any) -> tuple[bytes, bytes]:
    png, svg = io.BytesIO(), io.BytesIO()
    figure.savefig(png, format="png", dpi=110)
    figure.savefig(svg, format="svg")
    return png.getvalue(), svg.getvalue()


def write_report(
    model: ModelHandle,
    out: str | os.PathLike[str] = "circuitlab-report",
    settings: ReportSettings | None = None,
    *,
    overwrite: bool = False,
    progress: bool | None = None,
    load_seconds: float | None = None,
) -> ReportFiles:
    """Run the report's sections on ``model`` and write the report folder.

    Args:
        model: the model handle (left as it was).
        out: the report folder (created; a previous report there is replaced).
        settings: what to run (default `ReportSettings()`: every section, compact sizes).
        overwrite: replace ``out`` even if it holds something other than a report.
        progress: one progress bar per stage (None: shown once a stage runs past 2 s).
        load_seconds: how long loading the model took, to show beside the stages.

    Returns:
        A `ReportFiles` (paths and the time per stage, in seconds).

    Raises:
        InputError: bad settings or inputs (checked before any section runs), or an output
            folder that cannot be written or belongs to something else.
    """
    from matplotlib import pyplot

    started = time.perf_counter()
    settings = settings or ReportSettings()
    target = check_report_folder(out, overwrite=overwrite)
    check_inputs(model, settings)
    runs = settings.runs
    sections: list[Section] = []
    for number, key in enumerate(runs, start=1):
        with progress_bar(
            total=SECTION_STEPS[key],
            desc=f"report {number}/{len(runs)}: {key}",
            unit="step",
            progress=progress,
        ) as bar:
            section_started = time.perf_counter()
            try:
                section = SECTIONS[key](model, settings, lambda bar=bar: bar.update(1))
            except SectionSkipped as reason:
                section = Section(key, SECTION_TITLES[key], skipped=str(reason))
            section.seconds = time.perf_counter() - section_started
        sections.append(section)
    writing_started = time.perf_counter()
    pngs: dict[str, bytes] = {}
    svgs: dict[str, bytes] = {}
    for section in sections:
        for stem, figure in section.figures.items():
            pngs[stem], svgs[stem] = _figure_bytes(figure)
            pyplot.close(figure)
    seconds = {section.key: section.seconds for section in sections}
    if load_seconds is not None:
        seconds = {"loading the model": load_seconds, **seconds}
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    versions = installed_versions()
    figure_paths: list[Path] = []
    if not distributed.is_writer():  # under torchrun every rank computes, rank 0 writes
        return ReportFiles(
            folder=target,
            index=target / "index.html",
            results=target / "results.json",
            figures=(),
            seconds=seconds,
            skipped={s.key: s.skipped for s in sections if s.skipped is not None},
        )
    with staged_folder(target) as staging:
        (staging / "figures").mkdir()
        for stem in pngs:
            for suffix, data in (("png", pngs[stem]), ("svg", svgs[stem])):
                (staging / "figures" / f"{stem}.{suffix}").write_bytes(data)
                figure_paths.append(target / "figures" / f"{stem}.{suffix}")
        seconds["writing"] = time.perf_counter() - writing_started
        seconds["total"] = time.perf_counter() - started + (load_seconds or 0.0)
        document = {
            "format": REPORT_FORMAT,
            "version": _VERSION,
            "created": created,
            "model": model.model_card(),
            "settings": settings.to_dict(),
            "seconds": seconds,
            "versions": versions,
            "sections": {section.key: _section_document(section) for section in sections},
        }
        (staging / "results.json").write_text(
            json.dumps(document, indent=1) + "\n", encoding="utf-8"
        )
        page = render_page(
            model_card=model.model_card(),
            architecture=model.arch.describe().replace("\n", "; "),
            sections=sections,
            pngs=pngs,
            versions=versions,
            total_seconds=seconds["total"],
            created=created,
        )
        (staging / "index.html").write_text(page, encoding="utf-8")
    return ReportFiles(
        folder=target,
        index=target / "index.html",
        results=target / "results.json",
        figures=tuple(figure_paths),
        seconds=seconds,
        skipped={s.key: s.skipped for s in sections if s.skipped is not None},
    )


def _section_document(section: Section) -> dict[str, Any]:
    return {
        "title": section.title,
        "skipped": section.skipped,
        "seconds": section.seconds,
        "summary": section.summary,
        "facts": section.facts,
        "figures": list(section.figures),
        "results": {name: result.to_document() for name, result in section.results.items()},
    }


def _result_classes() -> dict[str, type[Result]]:
    from circuitlab.consistency import ConsistencyHeads
    from circuitlab.decomposition import Attribution, ComponentAccuracy
    from circuitlab.hallucination.result import HallucinationScores
    from circuitlab.layers import LayerScores
    from circuitlab.patching import PatchingMap

    classes = (Attribution, ComponentAccuracy, LayerScores, PatchingMap, ConsistencyHeads)
    return {cls.kind: cls for cls in (*classes, HallucinationScores)}


def read_results(folder: str | os.PathLike[str]) -> dict[str, dict[str, Result]]:
    """Read a report's results back: section → name → result object.

    Args:
        folder: a report folder (or its ``results.json``).

    Raises:
        InputError: no report there, or a file that is not a circuitlab report.
    """
    path = Path(folder)
    path = path / "results.json" if path.is_dir() else path
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"Cannot read the report results {path}: {error}.") from None
    if not isinstance(document, dict) or document.get("format") != REPORT_FORMAT:
        raise InputError(f"{path} is not a circuitlab report's results.json.")
    classes = _result_classes()
    results: dict[str, dict[str, Result]] = {}
    for key, section in document["sections"].items():
        results[key] = {}
        for name, entry in section["results"].items():
            kind = entry["header"]["kind"]
            if kind not in classes:
                raise InputError(f"{path}: unknown result kind {kind!r} in section {key!r}.")
            results[key][name] = classes[kind].from_document(entry)
    return results
