"""Files written safely: whole or not at all (atomic saves), folders checked before any work, names never
written over (`first_free`), and a failed write (full disk, read-only) told as CannotWrite naming the path."""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import torch

from .errors import UserError


class CannotWrite(UserError, RuntimeError):
    """A file the run must write could not be written (disk full, read-only, not a folder, ...)."""


WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR}


@contextlib.contextmanager
def writing_errors():
    """An OSError of writing (full disk, read-only folder, ...) becomes CannotWrite naming the path."""
    try:
        yield
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        raise CannotWrite(f"cannot write {e.filename or 'a file'}: {e.strerror}") from None


def nearest_existing(path: Path) -> Path:
    """`path`, or its closest ancestor that exists (where a folder to be made would live)."""
    path = Path(path)
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_mib(path: Path) -> float:
    """Free space, in MiB, on the disk that holds (or will hold) `path`."""
    return shutil.disk_usage(nearest_existing(path)).free / 2**20


def writable_folder(folder: Path, what: str) -> Path:
    """Can `folder` be written (or made, where it does not exist yet)? Asked before any work that would
    end by writing there, and without making anything; CannotWrite names the folder and why."""
    folder = Path(folder)
    probe = nearest_existing(folder)
    if not probe.is_dir():
        raise CannotWrite(f"{what} {folder}: cannot write there ({probe} is not a folder)")
    if not os.access(probe, os.W_OK | os.X_OK):  # a read-only mount says so even to root
        raise CannotWrite(f"{what} {folder}: cannot write there ({probe} is read-only or not ours)")
    return folder


def first_free(folder: Path, stem: str, suffix: str = "") -> Path:
    """folder/stem+suffix, or the first of folder/stem-2+suffix, -3, ... that does not exist."""
    candidate, n = folder / f"{stem}{suffix}", 1
    while candidate.exists():
        n += 1
        candidate = folder / f"{stem}-{n}{suffix}"
    return candidate


def atomic_save(obj, path: Path) -> None:
    """torch.save via a temp file + rename, so a kill never leaves a half-written checkpoint."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        try:
            torch.save(obj, tmp)
        except RuntimeError as e:  # torch's zip writer reports a failed write as "unexpected pos ..."
            free = shutil.disk_usage(path.parent).free
            raise OSError(errno.ENOSPC, f"{e} ({free / 2**20:.0f} MiB free there)", str(path)) from None
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(text: str, path: Path) -> None:
    """The file whole or not at all; its temp name is its own, so two writers of the same file at once (workers
    sharing a cache) each move a whole file into place."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
