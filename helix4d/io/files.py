"""Writing files safely: every writer of the project goes through these.

A file is written under a temporary name beside its destination and renamed into place (`os.replace` is atomic on
one file system); a folder is assembled in a hidden `.NAME.partial-XXXXXXXX` folder beside it. A reader, or a user
after a crash, sees the old result or the complete new one, never half of one, and `remove_stale_partials` takes
away what a killed run left (only names of exactly our pattern, never one that a running writer holds locked).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helix4d.errors import InputError

_TEMP_CHARS = "[a-z0-9_]{8}"  # what tempfile puts after the prefix


def partial_prefix(final: Path) -> str:
    """Name prefix of the temporary folders `atomic_dir` makes for `final` (mkdtemp appends 8 characters)."""
    return f".{final.name}.partial-"


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

    The temporary folder is locked while in use, so `remove_stale_partials` of another run never takes it. An old
    `path` is first moved aside under a partial name, so a crash at any moment leaves either folder in place and
    nothing that the next run would not clean up."""
    final = Path(path)
    if final.is_symlink():
        raise InputError(f"output folder {final} is a symbolic link; name the folder it points to, or a new one")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=partial_prefix(final), dir=final.parent))
    lock = os.open(tmp, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes owner-only folders; give the usual permissions
        old = None
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=partial_prefix(final), dir=final.parent))
            os.replace(final, old)  # a folder may replace an empty folder
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old)
    finally:
        os.close(lock)
        shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_partials(final: str | os.PathLike) -> list[Path]:
    """Delete the partial folders that killed runs left beside `final` (exactly `.NAME.partial-XXXXXXXX`, real
    folders, not locked by a running `atomic_dir`); returns what was removed."""
    final = Path(final)
    pattern = re.compile(re.escape(partial_prefix(final)) + _TEMP_CHARS)
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return []
    removed = []
    for entry in entries:
        if not pattern.fullmatch(entry.name) or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            lock = os.open(entry, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # a running writer holds it
            continue
        else:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        finally:
            os.close(lock)
    return removed


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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
