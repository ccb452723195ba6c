"""Benchmark: the default `circuitlab report` on an embedded model, time per stage.

Usage:
    python benchmarks/report_time.py [--model smollm2-135m-instruct] [--json OUT] [--table MD]

Runs the real console script with no options but ``--model`` and ``--out`` (a fresh process, as
a user runs it; progress bars off), reads the time per stage from its ``results.json`` and
writes them as JSON and as the markdown table the report guide includes
(``benchmarks/results/report_time.md``). Run it on an otherwise idle machine: under CPU contention
torch's threads slow each other down several times over.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from circuitlab.json_files import write_json_atomic
from circuitlab.versions import installed_versions

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--json", default=None, help="results file (default benchmarks/results)")
    parser.add_argument("--table", default=str(ROOT / "benchmarks" / "results" / "report_time.md"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "report"
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "circuitlab",
                "report",
                "--model",
                args.model,
                "--out",
                str(folder),
            ],
            check=True,
            env={**os.environ, "CIRCUITLAB_PROGRESS": "0"},
        )
        wall = time.perf_counter() - started
        document = json.loads((folder / "results.json").read_text())
    seconds = document["seconds"]
    result = {
        "model": args.model,
        "wall_seconds_with_startup": wall,
        "seconds": seconds,
        "cpu_count": os.cpu_count(),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "machine": platform.machine(),
        "versions": installed_versions(),
    }
    target = args.json or ROOT / "benchmarks" / "results" / f"report_time_{args.model}.json"
    write_json_atomic(result, target)
    rows = ["| stage | seconds |", "|---|---|"]
    rows += [f"| {stage} | {value:.1f} |" for stage, value in seconds.items()]
    rows.append(f"| whole command (with Python and torch start-up) | {wall:.1f} |")
    note = (
        f"\nMeasured by `benchmarks/report_time.py` on {args.model}, {os.cpu_count()} CPU cores "
        f"(torch {result['versions'].get('torch')}).\n"
    )
    Path(args.table).write_text("\n".join(rows) + "\n" + note, encoding="utf-8")
    print("\n".join(rows))
    print(f"wrote {target} and {args.table}")


if __name__ == "__main__":
    main()
