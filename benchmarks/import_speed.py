"""Benchmark: the front door (``import circuitlab``, ``circuitlab --help``) next to torch.

Usage:
    python benchmarks/import_speed.py [--repeats 7] [--json OUT]

Each case runs in a fresh Python process (so nothing is imported yet), round robin, and the
median wall time of ``--repeats`` runs is reported:
  * import torch:          ``python -c "import torch"``, the yardstick;
  * import circuitlab:     ``python -c "import circuitlab"``;
  * circuitlab --help:     the console script's help (``python -m circuitlab --help``);
  * argument error:        ``python -m circuitlab decompose`` (a required option missing);
  * first use of load:     ``python -c "import circuitlab; circuitlab.load"``, which imports
                           the model layer (torch, transformers, transformer-lens).
Targets (issue 14): the help and an argument error under 1 s; ``import circuitlab`` at most
1.5x ``import torch``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES: dict[str, list[str]] = {
    "import torch": [sys.executable, "-c", "import torch"],
    "import circuitlab": [sys.executable, "-c", "import circuitlab"],
    "circuitlab --help": [sys.executable, "-m", "circuitlab", "--help"],
    "argument error": [sys.executable, "-m", "circuitlab", "decompose"],
    "first use of circuitlab.load": [sys.executable, "-c", "import circuitlab; circuitlab.load"],
}
EXPECTED_EXIT = {"argument error": 2}


def _time(command: list[str], expected_exit: int) -> float:
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, check=False)
    seconds = time.perf_counter() - started
    if finished.returncode != expected_exit:
        raise SystemExit(
            f"{' '.join(command)} exited {finished.returncode}, expected {expected_exit}:\n"
            f"{finished.stderr.decode()}"
        )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="runs per case (median)")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    for command in CASES.values():  # warm the file cache once; not timed
        subprocess.run(command, capture_output=True, check=False)
    runs: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):
        for name, command in CASES.items():
            runs[name].append(_time(command, EXPECTED_EXIT.get(name, 0)))
    medians = {name: statistics.median(values) for name, values in runs.items()}
    torch_seconds = medians["import torch"]
    print(f"{'case':<30} {'median s':>9} {'x import torch':>15}")
    for name, seconds in medians.items():
        print(f"{name:<30} {seconds:>9.3f} {seconds / torch_seconds:>15.2f}")
    result = {
        "repeats": args.repeats,
        "median_seconds": medians,
        "runs_seconds": runs,
        "import_circuitlab_over_import_torch": medians["import circuitlab"] / torch_seconds,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
