"""The analysis report: a compact run of every method on one model, as a folder to keep.

`write_report` runs the sections (decomposition, component accuracy, layer importance with
the single-layer ground truth, activation patching, consistency heads, hallucination-prone
layers, and ILA when a stage-1 adapter is given) and writes ``index.html`` (self-contained),
``results.json`` (every result through the result protocol) and ``figures/`` (PNG and SVG).
``circuitlab report`` on the command line does the same.

Example:
    >>> from circuitlab.report import ReportSettings, write_report
    >>> files = write_report(model, "report", ReportSettings(sections=("decomposition",)))
    >>> files.index, files.seconds
"""

from circuitlab.report.build import REPORT_FORMAT, ReportFiles, read_results, write_report
from circuitlab.report.sections import Section
from circuitlab.report.settings import (
    DEFAULT_PAIR,
    DEFAULT_PROMPTS,
    REPORT_SECTIONS,
    ReportSettings,
)

__all__ = [
    "DEFAULT_PAIR",
    "DEFAULT_PROMPTS",
    "REPORT_FORMAT",
    "REPORT_SECTIONS",
    "ReportFiles",
    "ReportSettings",
    "Section",
    "read_results",
    "write_report",
]
