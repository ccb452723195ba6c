"""Writing a result folder atomically: staged next to the target, moved into place when done.

Every temporary folder next to a target (``.NAME.XXXX.partial`` being written,
``.NAME.XXXX.old`` being deleted) is owned by its process through an OS lock on a sibling
``.lock`` file. The lock dies with the process, however it dies, so before staging a new
folder the ones a killed process left are recognised and removed, and a folder another live
process is still writing is not. `exclusive_lock` makes writers of one target take turns.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from circuitlab.files import apply_umask, check_output_folder, output_errors

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

__all__ = ["check_writable_folder", "exclusive_lock", "staged_folder"]

logger = logging.getLogger(__name__)


def check_writable_folder(target: Path, *, overwrite: bool) -> None:
    """Refuse an existing file, an unwritable place, or a non-empty folder unless ``overwrite``."""
    check_output_folder(target, must_be_empty=not overwrite)


_TEMP_SUFFIXES = (".partial", ".old")
"""Temporary sibling folders of a target: the result being staged, and a replaced one being
deleted."""
_LOCK_SUFFIX = ".lock"
_POLL_SECONDS = 0.1


def _try_lock(fd: int) -> bool | None:
    """Take the exclusive OS lock of the open file ``fd`` without waiting.

    The lock belongs to this open file: it is released when ``fd`` is closed or the process
    ends, however it ends (``kill -9`` too).

    Returns:
        True if taken; False if another open file (another process) holds it; None if this file
        system cannot lock.
    """
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:  # pragma: no cover - Windows
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError as error:
        busy = (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES, errno.EDEADLK)
        return False if error.errno in busy else None
    return True


def _lock_if_free(fd: int, path: Path) -> bool | None:
    """Take the lock of ``fd`` (opened from ``path``) if no live process holds it.

    Returns `_try_lock`'s answer, except False also when ``path`` no longer names that file: a
    holder deleted it before letting go (lock files are deleted only by a holder of their lock).
    """
    locked = _try_lock(fd)
    if not locked:
        return locked
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _release(fd: int, lock: Path) -> None:
    """Delete the lock file while still holding it, then let go."""
    with contextlib.suppress(OSError):  # Windows keeps an open file: the empty file stays
        lock.unlink()
    os.close(fd)


@contextlib.contextmanager
def _owned_sibling(target: Path, suffix: str) -> Iterator[Path]:
    """Yield a new hidden folder ``.NAME.XXXX<suffix>`` next to ``target``, owned by this process.

    Ownership is the OS lock of ``.NAME.XXXX<suffix>.lock``, taken before the folder exists and
    let go after it is gone (renamed into place or deleted), or when the process dies.
    `_remove_abandoned` deletes only folders whose lock it can take.
    """
    while True:
        fd, lock_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=suffix + _LOCK_SUFFIX, dir=target.parent
        )
        lock = Path(lock_name)
        if _lock_if_free(fd, lock) is not False:  # None: no locks here, so no cleaner either
            break
        os.close(fd)  # a cleaner took this brand-new lock file in passing: use another name
    folder = lock.with_name(lock.name.removesuffix(_LOCK_SUFFIX))
    created = False
    try:
        folder.mkdir()
        created = True
        yield folder
    finally:
        try:
            if created and folder.is_dir():
                shutil.rmtree(folder, ignore_errors=True)
        finally:
            _release(fd, lock)


def _remove_abandoned(target: Path) -> None:
    """Delete the temporary folders next to ``target`` that no live process owns.

    A killed export or cache build leaves its ``.NAME.XXXX.partial`` folder (hundreds of MB)
    behind; its lock died with it, so the folder is recognised and removed here. Folders whose
    owner is alive, and files (other tools' temporary files), are left alone.
    """
    pattern = re.compile(
        rf"(\.{re.escape(target.name)}\..+(?:{'|'.join(map(re.escape, _TEMP_SUFFIXES))}))"
        rf"(?:{re.escape(_LOCK_SUFFIX)})?"
    )
    try:
        names = os.listdir(target.parent)
    except OSError:
        return
    folders = {match[1] for name in names if (match := pattern.fullmatch(name))}
    for name in sorted(folders):
        folder = target.parent / name
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            continue
        lock = folder.with_name(name + _LOCK_SUFFIX)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            continue
        if not _lock_if_free(fd, lock):
            os.close(fd)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
        finally:
            _release(fd, lock)


@contextlib.contextmanager
def staged_folder(
    target: Path, *, keep_existing: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """Yield a temporary folder next to ``target``; on success it replaces ``target``.

    On an exception (or an interrupt) the temporary folder is removed and ``target`` is left as
    it was; an existing ``target`` is removed only after the new one is in place. Temporary
    folders that killed processes left next to ``target`` are removed first (only those no
    live process owns).

    Args:
        target: the folder to write.
        keep_existing: called on an existing ``target`` once the new folder is complete; True
            keeps it and discards the new one (a cache entry another process finished first).
    """
    with contextlib.ExitStack() as stack:
        with output_errors(target, "folder"):
            target.parent.mkdir(parents=True, exist_ok=True)
            _remove_abandoned(target)
            staging = stack.enter_context(_owned_sibling(target, ".partial"))
        yield staging
        apply_umask(staging, recursive=True)  # mkdtemp's 0700, writers' 0600: the user's umask
        if not target.exists():
            os.replace(staging, target)
        elif keep_existing is None or not keep_existing(target):
            with _owned_sibling(target, ".old") as trash:
                os.replace(target, trash / target.name)
                os.replace(staging, target)


@contextlib.contextmanager
def exclusive_lock(path: Path, *, waiting_message: str) -> Iterator[None]:
    """Hold the OS lock of the lock file ``path``, waiting while another process holds it.

    The lock dies with its process, so a killed holder never blocks the next one. The lock file
    stays in place (deleting it could let two processes lock two different files). Where the
    file system cannot lock, this does not wait.

    Args:
        path: the lock file (created if missing).
        waiting_message: logged once as a warning if this has to wait.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        locked = _try_lock(fd)
        if locked is False:
            logger.warning(waiting_message)
        while locked is False:
            time.sleep(_POLL_SECONDS)
            locked = _try_lock(fd)
        yield
    finally:
        os.close(fd)
