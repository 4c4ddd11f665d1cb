"""What the file system can hold, checked before any compute: path lengths and free space.

A path longer than the file system takes (a name over NAME_MAX, usually 255 bytes, counting the temporary name it
is first written under; a whole path over PATH_MAX, usually 4096, counting room for the files inside) would fail
only when the result is written, after minutes of compute, so it is refused up front (`check_path_length`), as is a
disk with clearly too little free space for what the command will write (`check_free_space`, given a low estimate).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from helix4d.errors import InputError


def check_path_length(path: Path, what: str, extra_name: int, extra_path: int) -> None:
    """Refuse a path the file system cannot hold: a name longer than NAME_MAX (the last one with `extra_name`
    bytes more, for the temporary name it is written under), or a whole path longer than PATH_MAX (with
    `extra_path` bytes more, for that and the files inside); checked on the text, since the system calls that
    would tell fail with the same error."""
    try:
        absolute = Path(os.path.abspath(path))
    except OSError:  # the current folder was deleted: a relative path cannot be measured (nor written)
        absolute = Path("/", path)
    name_max, path_max = _limits(absolute)
    shown = str(path) if len(str(path)) <= 80 else f"{str(path)[:60]}...{str(path)[-16:]}"
    parts = absolute.parts[1:]
    for i, part in enumerate(parts):
        longest = name_max - (extra_name if i == len(parts) - 1 else 0)
        if len(os.fsencode(part)) > longest:
            raise InputError(
                f"{what} {shown} has a name of {len(os.fsencode(part))} bytes, longer than this file system allows "
                f"({longest} here); name a shorter path"
            )
    length = len(os.fsencode(absolute)) + extra_path
    if length >= path_max:
        raise InputError(
            f"{what} {shown} is {len(os.fsencode(absolute))} bytes long, too long for this file system (it takes "
            f"{path_max - extra_path - 1} here); name a shorter path"
        )


def _limits(path: Path) -> tuple[int, int]:
    """(NAME_MAX, PATH_MAX) of the file system holding `path` (its nearest existing folder), else Linux's."""
    existing = path
    while existing != existing.parent:
        try:
            if existing.is_dir():
                break
        except OSError:
            pass
        existing = existing.parent
    try:
        return os.pathconf(existing, "PC_NAME_MAX"), os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        return 255, 4096


def check_free_space(out: str | os.PathLike, need: int) -> None:
    """Refuse before the compute when the disk that will hold `out` has less than `need` bytes free (`need`: a low
    estimate of what will be written, so only a run that clearly cannot fit is refused)."""
    out = Path(os.path.abspath(out))
    folder = out.parent
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # the write itself will tell
    if free < need:
        raise InputError(
            f"not enough free disk space for {out}: it needs about {_megabytes(need)}, {folder} has "
            f"{_megabytes(free)} free; free some space or name a folder on another disk"
        )


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
