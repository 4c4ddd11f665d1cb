"""Writing files safely: atomic writers, and the one policy every command that writes a folder follows.

Atomic writers: a file is written under a temporary name beside its destination and renamed into place
(`os.replace` is atomic on one file system), a folder is assembled in a hidden `.NAME.partial-XXXXXXXX` folder
beside it; a reader, or a user after a crash, sees the old result or the complete new one, never half of one.

Output folders (`check_output_dir`): a command must not be able to delete or change anything but the folder the
user named, whatever the flags, so the folder is checked before any compute. It may not be '.' or '..', the
current folder, the home folder or a folder above either, the input or a folder holding it, a file, a mount point
it would replace, or a symbolic link (refused, not followed: replacing the link's target behind the user's back is
a surprise, and replacing the link itself loses it); it must be writable (probed now, so a read-only mount fails
before minutes of compute); a non-empty folder is replaced only on request, or added to by a command that
continues its own dataset or run. Partial folders left by a killed run are removed on the next run for that folder:
only names of exactly our pattern, and never one that a running writer holds locked.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
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


# ------------------------------------------------------------------------------------------------ output folders


def check_output_dir(
    out: str | os.PathLike,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    overwrite: bool | None = None,
    reuse: Callable[[Path], bool] | None = None,
) -> Path:
    """Refuse an output folder that the run could not write, or must not replace (rules in the module docstring);
    call it before any compute. Also removes stale partial folders of earlier killed runs for `out`.

    inputs: paths the command reads; `out` may not be one of them or hold one.
    overwrite: whether a non-empty `out` may be replaced: True yes, False no (the message suggests --overwrite),
        None when the command offers no such option.
    reuse: accepts a non-empty `out` that the command continues (a dataset or a run to resume).
    """
    raw, out = str(out), Path(out)
    if not raw.strip() or out.name in ("", ".", ".."):
        raise InputError(f"output folder {raw!r} is not allowed ('.', '..' or a root); name a new folder, e.g. out/")
    if out.is_symlink():
        raise InputError(
            f"output folder {out} is a symbolic link (to {os.readlink(out)}); name the folder it points "
            "to, or a new one"
        )
    resolved = out.resolve()
    for what, place in _protected():
        if resolved == place or resolved in place.parents:
            raise InputError(
                f"output folder {out} is {what} or a folder above it, which a run would replace; "
                "name a new folder, e.g. out/"
            )
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and _holds(resolved, Path(source)):
            raise InputError(f"output folder {out} is or holds the input {source}; name a folder outside the input")
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is not a folder; name a folder path")
    writes_inside = out.is_dir() and reuse is not None  # the command adds to the folder instead of replacing it
    if out.is_dir() and not writes_inside and os.path.ismount(out):
        raise InputError(f"output folder {out} is a mount point, which cannot be replaced; name a folder inside it")
    if out.is_dir() and _non_empty(out) and not overwrite and not (writes_inside and reuse(out)):
        fix = "pass --overwrite to replace it, or choose another folder" if overwrite is False else "choose another one"
        raise InputError(f"output folder {out} is not empty; {fix}")
    remove_stale_partials(out)
    _probe_writable(out, inside=writes_inside)
    return out


def _protected() -> list[tuple[str, Path]]:
    """Folders no output may be or lie above, resolved: the current folder and the home folder."""
    places = []
    for what, where in (("the current folder", Path.cwd), ("your home folder", Path.home)):
        try:
            places.append((what, where().resolve()))
        except (OSError, KeyError, RuntimeError):  # a deleted current folder, no HOME and no passwd entry
            pass
    return places


def _holds(folder: Path, source: Path) -> bool:
    """Whether `source` (resolved) is `folder` or inside it."""
    target = source.resolve()
    return target == folder or folder in target.parents


def _non_empty(folder: Path) -> bool:
    try:
        return any(folder.iterdir())
    except OSError as exc:
        raise InputError(f"cannot read output folder {folder} ({exc.strerror}); choose another folder") from None


def _probe_writable(out: Path, inside: bool) -> None:
    """Create and remove a partial folder where the run will write: in `out` (`inside`), beside it, or in its
    nearest existing ancestor when its parents do not exist yet (they are created only when the run writes)."""
    child, parent = (out / "probe", out) if inside else (out, out.parent)
    while not parent.exists() and parent != parent.parent:
        child, parent = parent, parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot create output folder {out}: {parent} is not a folder; name another path")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=partial_prefix(child), dir=parent))
    except OSError as exc:
        raise InputError(
            f"cannot write output folder {out} ({exc.strerror or exc} in {parent}); name a folder on a writable disk"
        ) from None
