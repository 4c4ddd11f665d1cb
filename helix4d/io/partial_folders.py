"""The hidden folders a folder write passes through, and what the next run does with those a killed run left.

`atomic_dir` assembles a folder in `.NAME.partial-XXXXXXXX` beside its destination and, where the file system cannot
exchange two folders atomically, keeps the old result as `.NAME.previous-XXXXXXXX` until the new one is in place.
A run killed at any moment can leave either behind. The next run for that folder (`remove_stale_partials`, which
`check_output_dir` calls) removes partial folders: only names of exactly our pattern, never one that a running
writer holds locked; and it puts a moved-aside previous result back when nothing replaced it, instead of deleting
the user's last complete result.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from pathlib import Path

_TEMP_CHARS = "[a-z0-9_]{8}"  # what tempfile puts after the prefix
PARTIAL_EXTRA = len(".") + len(".partial-") + 8  # what a partial or moved-aside folder's name adds to the name


def partial_prefix(final: Path) -> str:
    """Name prefix of the temporary folders `atomic_dir` makes for `final` (mkdtemp appends 8 characters)."""
    return f".{final.name}.partial-"


def previous_prefix(final: Path) -> str:
    """Name prefix under which a swap without atomic exchange keeps the old `final` until the new one is in place."""
    return f".{final.name}.previous-"


def remove_stale_partials(final: str | os.PathLike) -> list[Path]:
    """Delete the partial folders that killed runs left beside `final` (exactly `.NAME.partial-XXXXXXXX`, real
    folders, not locked by a running `atomic_dir`); returns what was removed."""
    final = Path(final)
    _restore_previous(final)
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


def _restore_previous(final: Path) -> None:
    """A run killed between moving the old `final` aside and moving the new one in left no `final`: put the old one
    back (it is the user's last complete result); with `final` in place, moved-aside folders are stale."""
    pattern = re.compile(re.escape(previous_prefix(final)) + _TEMP_CHARS)
    try:
        previous = sorted(e for e in final.parent.iterdir() if pattern.fullmatch(e.name) and e.is_dir())
    except OSError:
        return
    for entry in previous:
        if not final.exists():
            os.rename(entry, final)
        else:
            shutil.rmtree(entry, ignore_errors=True)
