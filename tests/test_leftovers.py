"""Temporary folders a killed process left are removed; a live process's are not (issue 15.12).

Each staging folder is owned by its process through an OS lock that dies with it, so these
tests kill real processes with SIGKILL mid-staging.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import circuitlab
from circuitlab.models import cache
from circuitlab.output_folder import staged_folder
from circuitlab.testing import tiny_model

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")

_STAGER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    if sys.argv[2] == "staged_folder":
        from circuitlab.output_folder import staged_folder as stage
    else:
        from circuitlab.models.cache import atomic_directory as stage

    with stage(Path(sys.argv[1])) as staging:
        (staging / "model.safetensors").write_bytes(b"x" * 4096)
        print(staging, flush=True)
        time.sleep(120)
    """
)


def _start_staging(target: Path, how: str = "staged_folder") -> tuple[subprocess.Popen[str], Path]:
    """A process staging ``target`` and sleeping mid-way; returns it and its staging folder."""
    process = subprocess.Popen(
        [sys.executable, "-c", _STAGER, str(target), how],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line:
        process.kill()
        pytest.fail(f"the staging process failed: {process.communicate()[1]}")
    return process, Path(line)


def _kill(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def _hidden(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


@pytest.mark.parametrize("how", ["staged_folder", "atomic_directory"])
def test_folder_of_a_killed_process_is_removed_by_the_next_staging(
    tmp_path: Path, how: str
) -> None:
    target = tmp_path / "out"
    process, leftover = _start_staging(target, how)
    _kill(process)
    assert leftover.is_dir() and leftover.name.startswith(".out.")
    assert leftover.name.endswith(".partial")
    stage = staged_folder if how == "staged_folder" else cache.atomic_directory
    with stage(target) as staging:
        assert not leftover.exists()  # removed before the new folder was staged
        (staging / "weights").write_text("new")
    assert (target / "weights").read_text() == "new"
    assert _hidden(tmp_path) == []  # no folder and no lock file left


def test_killed_export_is_cleaned_by_the_next_export_to_the_same_target(tmp_path: Path) -> None:
    target = tmp_path / "pruned"
    first, leftover_a = _start_staging(target)
    second, leftover_b = _start_staging(target)
    _kill(first)
    _kill(second)
    assert leftover_a.is_dir() and leftover_b.is_dir()
    circuitlab.export_hf(tiny_model(), [], target)
    assert not leftover_a.exists() and not leftover_b.exists()
    assert (target / "model.safetensors").is_file()
    assert _hidden(tmp_path) == []


def test_folder_of_a_live_process_is_not_removed(tmp_path: Path) -> None:
    target = tmp_path / "out"
    process, live = _start_staging(target)
    try:
        with staged_folder(target) as staging:
            (staging / "weights").write_text("mine")
        with staged_folder(target) as staging:  # replacing the target: same rule
            (staging / "weights").write_text("mine again")
        assert (live / "model.safetensors").is_file()  # still being written by its owner
        assert (target / "weights").read_text() == "mine again"
        assert [name for name in _hidden(tmp_path) if not name.endswith(".lock")] == [live.name]
    finally:
        _kill(process)
    with staged_folder(target):
        pass
    assert not live.exists()
    assert _hidden(tmp_path) == []


def test_abandoned_replaced_folders_and_stray_locks_are_removed(tmp_path: Path) -> None:
    target = tmp_path / "out"
    old = tmp_path / ".out.k3j2.old"  # a replaced target a killed process was deleting
    (old / "out").mkdir(parents=True)
    legacy = tmp_path / ".out.abcd.partial"  # left by a version without locks
    legacy.mkdir()
    stray_lock = tmp_path / ".out.zz9.partial.lock"  # killed between the lock and its folder
    stray_lock.touch()
    temp_file = tmp_path / ".out.json.x1.partial"  # another writer's temporary file: not ours
    temp_file.write_text("{}")
    other = tmp_path / ".outer.q.partial"  # another target's folder
    other.mkdir()
    with staged_folder(target) as staging:
        (staging / "f").write_text("x")
    assert not old.exists() and not legacy.exists() and not stray_lock.exists()
    assert temp_file.is_file() and other.is_dir()


def test_failed_staging_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with pytest.raises(RuntimeError), staged_folder(target) as staging:
        (staging / "f").write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_without_os_locks_nothing_is_removed_and_staging_still_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file system that cannot lock: no owner can be told apart, so no folder is removed."""
    from circuitlab import output_folder

    monkeypatch.setattr(output_folder, "_try_lock", lambda fd: None)
    leftover = tmp_path / ".out.abcd.partial"
    leftover.mkdir()
    with staged_folder(tmp_path / "out") as staging:
        (staging / "f").write_text("x")
    assert leftover.is_dir() and (tmp_path / "out" / "f").read_text() == "x"
