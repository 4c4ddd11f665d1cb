"""Writing files crash-safely: a reader, or a user after a crash, sees the old result or the complete new one.

A file is written under a temporary name beside its destination and renamed into place (`os.replace` is atomic on
one file system); a folder is assembled in a hidden partial folder beside it (`helix4d.io.partial_folders`).

Replacing a folder is one atomic exchange of the old and the new folder (Linux `renameat2(RENAME_EXCHANGE)`), so a
run killed at any moment leaves either the old or the new result under the user's name, and the other one in a
hidden partial folder that the next run removes. Where the exchange is not available the old folder is moved aside
first; if the run dies in that window, the next run puts the old folder back instead of deleting it. Swaps in one
folder are serialised by a lock on that folder, so two `--overwrite` runs into one folder both finish (the later
result stays) instead of one failing. A disk that fills up while a folder is written ends in one message, and the
partial folder is removed, so nothing half-written is kept.

Which folders and reports may be written at all is checked before any compute by `helix4d.io.output_policy` and
`helix4d.io.disk_limits` (`write_report` checks its path itself); those checks are importable from here too, beside
the writers that follow them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helix4d.errors import InputError
from helix4d.io.disk_limits import check_free_space
from helix4d.io.output_policy import OUTPUT_MARKER, check_output_dir, check_report_path
from helix4d.io.partial_folders import partial_prefix, previous_prefix

__all__ = [
    "OUTPUT_MARKER",
    "atomic_dir",
    "atomic_path",
    "check_free_space",
    "check_output_dir",
    "check_report_path",
    "staging_dir",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_report",
]

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix, so writers that pick a format by suffix still work);
    it replaces `path` when the block ends without error and is deleted otherwise."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=final.suffix, dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes owner-only files; give the usual permissions
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary folder beside `path`; it replaces `path` (and whatever was there) when the block
    ends without error and is deleted otherwise, so a failed run never leaves a half-written folder.

    The temporary folder is locked while in use, so `remove_stale_partials` of another run never takes it; it
    receives the `OUTPUT_MARKER`; the swap is crash-safe and serialised (see the module docstring)."""
    final = Path(path)
    if final.is_symlink():
        raise InputError(f"output folder {final} is a symbolic link; name the folder it points to, or a new one")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=partial_prefix(final), dir=final.parent))
    lock = os.open(tmp, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield tmp
            (tmp / OUTPUT_MARKER).write_text('{"written_by": "helix4d"}\n')
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            raise InputError(
                f"the disk is full: writing {final} stopped ({exc.strerror}) and nothing of it was kept; free some "
                "space or name a folder on another disk"
            ) from None
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes owner-only folders; give the usual permissions
        with _swap_lock(final):
            _swap_into_place(tmp, final)
    finally:
        os.close(lock)
        shutil.rmtree(tmp, ignore_errors=True)  # after an exchange: the old result


@contextmanager
def _swap_lock(final: Path) -> Iterator[None]:
    """An exclusive lock on the folder holding `final` for the few milliseconds of a swap (a lock on the folder
    itself, so no lock file is left beside the user's output)."""
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _swap_into_place(tmp: Path, final: Path) -> None:
    """Put the finished folder `tmp` at `final`; the old `final`, if any, ends at `tmp` (exchange) or is deleted."""
    if not final.exists():
        os.rename(tmp, final)
        return
    if _exchange(tmp, final):
        return
    old = Path(tempfile.mkdtemp(prefix=previous_prefix(final), dir=final.parent))
    os.replace(final, old)  # a folder may replace an empty folder; killed from here on, the next run restores `old`
    os.rename(tmp, final)
    shutil.rmtree(old)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the system cannot."""
    renameat2 = getattr(_LIBC, "renameat2", None) if _LIBC is not None else None
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    done = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return done == 0  # EINVAL/ENOSYS (file system or kernel without it): fall back


_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True) if sys.platform == "linux" else None


@contextmanager
def staging_dir(parent: str | os.PathLike) -> Iterator[Path]:
    """A hidden scratch folder inside `parent` (same file system, so its files can be `os.replace`d out);
    removed with whatever is left in it when the block ends."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".staging.", dir=parent))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write `obj` as JSON to `path` atomically, so readers never see half a file."""
    return write_bytes_atomic(path, json.dumps(obj, indent=indent).encode())


def write_report(path: str | os.PathLike, obj: Any, *, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Check `path` (`check_report_path`) and write `obj` there as JSON atomically; a failing disk is one message."""
    check_report_path(path, inputs=inputs)
    try:
        return write_json_atomic(path, obj)
    except OSError as exc:
        raise InputError(f"cannot write report {path} ({exc.strerror or exc}); free some space or name another path")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
