"""Running a study: each run in its own folder with a manifest, resumable after ``kill -9``.

The study folder holds:

- ``study.json``: the study's identity (name, model and its fingerprint, seed, data
  fingerprints). Another study is refused here, not mixed in; steps may be added later.
- ``steps.json``: a `circuitlab.checkpoints.CheckpointStore` of the finished runs, keyed by
  each run's key (study, command, parameters, inputs, model, seed).
- one folder per run (``scores``, ``prune/k=25``): the command's outputs (results through the
  result protocol, tables, figures), ``stdout.txt`` and ``manifest.json`` (parameters, the
  command line, model and data fingerprints, package versions, seed, times, the files with
  their sha256).

A run writes into ``.work/<run>`` (the command's own checkpoints live there too, so a run
killed mid-training resumes within itself), then gets its manifest and is renamed into place
in one step. On a rerun, a run whose manifest carries the same key is skipped; the rest run.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import random
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from circuitlab import distributed
from circuitlab.checkpoints import CheckpointStore
from circuitlab.errors import CircuitlabError, InputError
from circuitlab.files import check_output_folder
from circuitlab.json_files import read_json, write_json_atomic
from circuitlab.study.schema import StepRun, Study, _parse_check, _where

__all__ = ["MANIFEST", "STEPS_FILE", "STUDY_FILE", "RunOutcome", "run_study"]

STUDY_FILE = "study.json"
"""The study's identity in its folder (name, model and fingerprint, seed, data fingerprints)."""
STEPS_FILE = "steps.json"
"""The checkpoint store of the finished runs, keyed by each run's key."""
MANIFEST = "manifest.json"
"""Each run's record in its folder: parameters, command line, fingerprints, times, files."""
_WORK = ".work"
_LOCK = ".study.lock"
_FORMAT = "circuitlab-study"
_STEP_FORMAT = "circuitlab-study-step"


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one run: ``ran``, ``skipped`` (or, dry, ``will run`` / ``will skip``).

    Attributes:
        folder: the run's folder inside the study folder (``"scores"``, ``"prune/k=25"``).
        command: the CLI sub-command it ran.
        status: ``"ran"``, ``"skipped"``, ``"will run"`` or ``"will skip"``.
        seconds: wall time of the run (0 for a skipped or dry run).
    """

    folder: str
    command: str
    status: str
    seconds: float


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Identity entries that differ (data files both name must match; new ones may be added)."""
    differ = [key for key in ("name", "model", "seed") if old.get(key) != new.get(key)]
    old_data, new_data = old.get("data", {}), new["data"]
    differ += [
        f"data {name!r}" for name in sorted(set(old_data) & set(new_data))
        if old_data[name] != new_data[name]
    ]  # fmt: skip
    return differ


def check_study_folder(study: Study, out: Path) -> dict[str, Any] | None:
    """Refuse a study folder that cannot be written or that holds something else.

    Returns:
        The folder's ``study.json`` content, or None for a new (or empty) folder.

    Raises:
        OutputPathError: the folder cannot be written (a file, a read-only place).
        InputError: it holds another study, or files that are no study's.
    """
    check_output_folder(out, "study folder")
    record_path = out / STUDY_FILE
    if not record_path.exists():
        if out.is_dir() and any(out.iterdir()):
            raise InputError(
                f"The study folder {out} is not empty and holds no {STUDY_FILE} (it is no "
                f"study's folder). Pass another --out, or empty it."
            )
        return None
    record = read_json(record_path, "study record")
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise InputError(f"{record_path} is not a circuitlab study record; pass another --out.")
    differ = _differences(record, study.identity())
    if differ:
        raise InputError(
            f"The study folder {out} holds study {record.get('name')!r} (from "
            f"{record.get('file')}); {study.source} is study {study.name!r} and differs in "
            f"{', '.join(differ)}. Pass another --out, or delete {out} to start over."
        )
    return record


def _manifest(folder: Path, run: StepRun) -> dict[str, Any] | None:
    """The manifest in ``folder`` if it records ``run``'s key (a finished run), else None."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = read_json(path, "step manifest")
    except InputError:
        return None
    if isinstance(manifest, dict) and manifest.get("key_digest") == run.digest:
        return manifest
    return None


def _slug(folder: str) -> str:
    return folder.replace("/", "__")


def _files(folder: Path) -> list[dict[str, Any]]:
    """Every file under ``folder`` with its size and sha256 (the manifest's list)."""
    rows = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != MANIFEST:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            relative = path.relative_to(folder).as_posix()
            rows.append({"path": relative, "bytes": path.stat().st_size, "sha256": digest})
    return rows


def _seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch before a step."""
    import numpy
    import torch

    random.seed(seed)
    numpy.random.seed(seed)
    torch.manual_seed(seed)


class _Tee(io.TextIOBase):
    """Standard output that is also written to a file (each step's ``stdout.txt``)."""

    def __init__(self, first: TextIO, second: TextIO) -> None:
        self.first, self.second = first, second

    def write(self, text: str) -> int:
        self.first.write(text)
        self.second.write(text)
        return len(text)

    def flush(self) -> None:
        self.first.flush()
        self.second.flush()


@contextlib.contextmanager
def _captured(path: Path) -> Iterator[None]:
    with (
        open(path, "w", encoding="utf-8") as log,
        contextlib.redirect_stdout(_Tee(sys.stdout, log)),
    ):
        yield


def _commit(work: Path, target: Path, trash: Path) -> None:
    """Move the finished ``work`` folder to ``target`` (a stale ``target`` is replaced)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        os.replace(target, trash)
        os.replace(work, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(work, target)


class _Runner:
    """Runs the runs of one study in one folder (see the module docstring)."""

    def __init__(self, study: Study, record: dict[str, Any] | None, out: Path) -> None:
        self.study, self.out = study, out
        self.model: Any = None
        self.fingerprint = ""
        self.store = self._start(record)

    def _load_model(self) -> str:
        """Load the study's model; returns its fingerprint."""
        from circuitlab.fingerprint import model_fingerprint
        from circuitlab.loading import load

        spec = self.study.model
        self.model = load(spec["name"], device=spec["device"], dtype=spec["dtype"], progress=True)
        return model_fingerprint(self.model)

    def _model_ready(self) -> None:
        """Load the model before the first run that executes; refuse other weights."""
        if self.model is not None:
            return
        fingerprint = self._load_model()
        if fingerprint != self.fingerprint:
            raise InputError(
                f"The study folder {self.out} was run on other weights of "
                f"{self.study.model['name']} (model fingerprint {self.fingerprint}, now "
                f"{fingerprint}). Pass another --out, or delete {self.out}."
            )

    def _start(self, record: dict[str, Any] | None) -> CheckpointStore:
        """Write the study record (a new folder loads the model first, for its fingerprint)
        and open the record of finished runs."""
        if record is None:
            self.fingerprint = self._load_model()
        else:
            self.fingerprint = str(record.get("model_fingerprint"))
        identity = self.study.identity()
        data = {**(record or {}).get("data", {}), **identity["data"]}
        document = {
            "format": _FORMAT,
            "version": 1,
            **identity,
            "data": dict(sorted(data.items())),
            "model_fingerprint": self.fingerprint,
            "file": str(self.study.source),
            "description": self.study.description,
        }
        write_json_atomic(document, self.out / STUDY_FILE)
        scope = {
            "study": self.study.name,
            "model": self.study.model,
            "model_fingerprint": self.fingerprint,
            "seed": self.study.seed,
        }
        for leftover in (self.out / _WORK).glob(".trash-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        return CheckpointStore(self.out / STEPS_FILE, kind="study", scope=scope)

    def skip(self, run: StepRun, manifest: dict[str, Any]) -> None:
        """Record a finished run in the store (if a kill came between its move and record)."""
        if run.key not in self.store:
            self.store.put(run.key, {"folder": run.folder, "files": manifest["files"]})

    def execute(self, run: StepRun) -> dict[str, Any]:
        """Run one step into its working folder, write its manifest, move it into place.

        Args:
            run: the run to execute.

        Returns:
            Its manifest.
        """
        from circuitlab.cli import commands
        from circuitlab.cli.paths import check_outputs
        from circuitlab.fingerprint import model_fingerprint
        from circuitlab.versions import installed_versions

        where = _where(self.study.source, run.step, run.command)
        work = self.out / _WORK / _slug(run.folder)
        marker = work.with_name(work.name + ".key.json")
        if work.exists() and _manifest(work, run) is None:
            kept = read_json(marker, "run key") if marker.is_file() else None
            if kept != run.key:  # another key's (or an unknown) attempt: start afresh
                shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run.key, marker)
        target = self.out / run.folder
        manifest = _manifest(work, run)
        if manifest is None:  # else: finished, killed before its move
            self._model_ready()
            line = run.arguments(work, self.study.model)
            args = _parse_check(line, where)
            check_outputs(args)
            _seed_everything(self.study.seed)
            started, clock = _now(), time.perf_counter()
            try:
                with commands.preloaded(self.model), _captured(work / "stdout.txt"):
                    getattr(commands, args.handler)(args)
            except CircuitlabError as error:
                raise type(error)(f"{where}: {error}") from error
            seconds = time.perf_counter() - clock
            reloaded = model_fingerprint(self.model) != self.fingerprint
            if reloaded:  # the step left the model changed: later steps get it fresh
                self.model = None
            record_line = run.arguments(target, self.study.model)
            manifest = {
                "format": _STEP_FORMAT,
                "version": 1,
                "study": self.study.name,
                "study_file": str(self.study.source),
                "step": run.step,
                "command": run.command,
                "folder": run.folder,
                "sweep": run.point,
                "parameters": run.parameters,
                "command_line": shlex.join(["circuitlab", *record_line]),
                "model": {**self.study.model, "fingerprint": self.fingerprint},
                "inputs": run.inputs,
                "seed": self.study.seed,
                "key": run.key,
                "key_digest": run.digest,
                "versions": installed_versions(),
                "started": started,
                "finished": _now(),
                "seconds": seconds,
                "model_reloaded_after": reloaded,
                "files": _files(work),
            }
            write_json_atomic(manifest, work / MANIFEST)
            manifest = json.loads(json.dumps(manifest))  # as it reads back
        _commit(work, target, self.out / _WORK / f".trash-{_slug(run.folder)}")
        marker.unlink(missing_ok=True)
        self.store.put(
            run.key,
            {"folder": run.folder, "files": manifest["files"]},
            seconds=manifest["seconds"],
        )
        return manifest

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            (self.out / _WORK).rmdir()  # only when empty


def _print_summary(
    study: Study, out: Path, outcomes: list[RunOutcome], echo: Callable[[str], None]
) -> None:
    width = max(len(outcome.folder) for outcome in outcomes)
    command_width = max(len(outcome.command) for outcome in outcomes)
    counts = {
        status: sum(outcome.status == status for outcome in outcomes)
        for status in dict.fromkeys(outcome.status for outcome in outcomes)
    }
    total = sum(outcome.seconds for outcome in outcomes)
    echo(
        f"\nstudy {study.name!r}: {len(outcomes)} run(s): "
        + ", ".join(f"{count} {status}" for status, count in counts.items())
        + f"; {total:.1f} s"
    )
    echo(f"  {'folder':<{width}}  {'command':<{command_width}}  {'status':<9}  seconds")
    for outcome in outcomes:
        seconds = f"{outcome.seconds:7.1f}" if outcome.status == "ran" else "      -"
        echo(
            f"  {outcome.folder:<{width}}  {outcome.command:<{command_width}}  "
            f"{outcome.status:<9}  {seconds}"
        )
    echo(f"results in {out} (one folder per run, each with {MANIFEST})")


def run_study(
    study: Study, *, dry_run: bool = False, echo: Callable[[str], None] = print
) -> list[RunOutcome]:
    """Run every unfinished run of ``study`` into its study folder (``study.out``).

    Args:
        study: a checked study (`circuitlab.study.load_study`).
        dry_run: only check the folder and list what would run and what would be skipped.
        echo: where the per-run lines and the summary go.

    Returns:
        One `RunOutcome` per run, in order.

    Raises:
        InputError: the folder holds another study, or a step's command refused its input.
        OutputPathError: the folder cannot be written.

    Examples:
        >>> study = load_study("studies/quick-tour.yaml", out="results/quick-tour")
        >>> [o.status for o in run_study(study)]
        ['ran', 'ran', 'ran', 'ran']
    """
    from circuitlab.output_folder import exclusive_lock

    folder = study.out
    record = check_study_folder(study, folder)
    outcomes: list[RunOutcome] = []
    total = len(study.runs)
    if dry_run:
        for index, run in enumerate(study.runs, start=1):
            done = _manifest(folder / run.folder, run) is not None
            status = "will skip" if done else "will run"
            outcomes.append(RunOutcome(run.folder, run.command, status, 0.0))
            line = shlex.join(["circuitlab", *run.arguments(folder / run.folder, study.model)])
            echo(f"[{index}/{total}] {status:<9} {run.folder}: {line}")
        return outcomes
    # Under torchrun every process runs every step (each dataset pass takes its share of the
    # batches); rank 0 writes the study folder, the others a scratch copy of their own. All
    # decide what is finished before any of them writes.
    finished = {run.folder: _manifest(folder / run.folder, run) for run in study.runs}
    workspace = folder
    if distributed.initialize():
        import torch.distributed as dist

        dist.barrier()
        if not distributed.is_writer():
            workspace = Path(tempfile.mkdtemp(prefix=f"circuitlab-study-rank{distributed.rank()}-"))
    workspace.mkdir(parents=True, exist_ok=True)
    try:
        with exclusive_lock(
            workspace / _LOCK,
            waiting_message=f"waiting for another run of the study in {folder}",
        ):
            _run_all(study, record, workspace, finished, outcomes, echo)
    finally:
        if workspace != folder:
            shutil.rmtree(workspace, ignore_errors=True)
    _print_summary(study, folder, outcomes, echo)
    return outcomes


def _run_all(
    study: Study,
    record: dict[str, Any] | None,
    workspace: Path,
    finished: dict[str, dict[str, Any] | None],
    outcomes: list[RunOutcome],
    echo: Callable[[str], None],
) -> None:
    """Skip the finished runs and execute the others, writing into ``workspace``."""
    total = len(study.runs)
    runner = _Runner(study, record, workspace)
    for index, run in enumerate(study.runs, start=1):
        manifest = finished[run.folder]
        if manifest is not None:
            runner.skip(run, manifest)
            outcomes.append(RunOutcome(run.folder, run.command, "skipped", 0.0))
            echo(f"[{index}/{total}] skipped  {run.folder} (finished before)")
            continue
        echo(f"[{index}/{total}] running  {run.folder} ({run.command})")
        manifest = runner.execute(run)
        seconds = float(manifest["seconds"])
        outcomes.append(RunOutcome(run.folder, run.command, "ran", seconds))
        echo(f"[{index}/{total}] ran      {run.folder} in {seconds:.1f} s -> {run.folder}/")
    runner.finish()
