"""``circuitlab study FILE.yaml``: the parser entry (light) and the command (loads the runner)."""

from __future__ import annotations

import argparse

__all__ = ["add_study_command", "study_command"]


def add_study_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``study`` sub-command to the CLI's sub-parsers."""
    study = sub.add_parser(
        "study",
        help="run a study file: CLI steps with parameters and sweeps, resumable",
        description="Run the steps of a YAML study file (any analysis, sweep, intervention or "
        "export command, with parameters and sweeps) on one model, each into its own folder "
        "with a manifest (parameters, fingerprints, versions, seed). Rerun the same command "
        "after an interruption (even kill -9): finished steps are skipped.",
    )
    study.add_argument("file", metavar="FILE.yaml", help="the study file")
    study.add_argument(
        "--out",
        metavar="DIR",
        help="study folder (default: ./NAME, NAME the study's name); a folder of another "
        "study is refused",
    )
    study.add_argument(
        "--dry-run",
        action="store_true",
        help="check the file and list the steps that would run or be skipped; run nothing",
    )
    study.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback of an error",
    )
    study.set_defaults(handler="study")


def study_command(args: argparse.Namespace) -> None:
    """Check the study file, then run it (or, with ``--dry-run``, list its runs)."""
    from circuitlab.study import load_study, run_study

    run_study(load_study(args.file, out=args.out), dry_run=args.dry_run)
