"""Writing files safely: atomic writers, and the one policy every command that writes a folder follows.

Atomic writers: a file is written under a temporary name beside its destination and renamed into place
(`os.replace` is atomic on one file system), a folder is assembled in a hidden `.NAME.partial-XXXXXXXX` folder
beside it; a reader, or a user after a crash, sees the old result or the complete new one, never half of one.

Output folders (`check_output_dir`): a command must not be able to delete or change anything but the folder the
user named, whatever the flags and whoever runs it (root included), so the folder is checked before any compute. It
may not be '.' or '..', the current folder, the home folder, the file system's root or one of its direct children
(/etc, /usr, /home, ...), the Python installation running us (its prefix, a virtual environment, site-packages), or
a folder above any of these; nor the input or a folder holding it, a file, a mount point it would replace, or a
symbolic link (refused, not followed: replacing the link's target behind the user's back is a surprise, and
replacing the link itself loses it); it must be writable (probed now, so a read-only mount fails before minutes of
compute). A non-empty folder is replaced only on request (`--overwrite`) and only when helix4d wrote it: every
folder `atomic_dir` writes carries the marker file `OUTPUT_MARKER`, so a typo such as `-o ~/Documents --overwrite`
is refused; or it is added to by a command that continues its own dataset or run.

Replacing a folder is one atomic exchange of the old and the new folder (Linux `renameat2(RENAME_EXCHANGE)`), so a
run killed at any moment leaves either the old or the new result under the user's name, and the other one in a
hidden partial folder that the next run removes. Where the exchange is not available the old folder is moved aside
first; if the run dies in that window, the next run puts the old folder back instead of deleting it. Swaps in one
folder are serialised by a lock on that folder, so two `--overwrite` runs into one folder both finish (the later
result stays) instead of one failing. Partial folders left by a killed run are removed on the next run for that
folder: only names of exactly our pattern, never one that a running writer holds locked, never a moved-aside
previous result that has not been replaced.

Paths longer than the file system takes (a name over NAME_MAX, usually 255 bytes, counting the partial folder's
18 extra characters; a whole path over PATH_MAX, usually 4096, counting room for the files inside) are refused up
front, as is a disk with clearly too little free space for what the command will write (`check_free_space`, given
a low estimate); a disk that still fills up while a folder is written ends in one message, and the partial folder
is removed, so nothing half-written is kept.

Reports (`check_report_path`, `write_report`): a JSON file a command writes besides its folder (`--json`) follows
the same rules for what it may not be or lie in (an input, a file inside an input folder, a system folder), is never
a folder or a symbolic link, replaces only a file that is already JSON, and is written atomically.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import re
import shutil
import site
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helix4d.errors import InputError

_TEMP_CHARS = "[a-z0-9_]{8}"  # what tempfile puts after the prefix
OUTPUT_MARKER = ".helix4d-output"  # in every folder atomic_dir writes: --overwrite replaces only such folders
PARTIAL_EXTRA = len(".") + len(".partial-") + 8  # what a partial or moved-aside folder's name adds to the name
INSIDE_ROOM = 64  # bytes of path kept free for what a command writes inside its folder (frames/frame_0000.glb, ...)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def partial_prefix(final: Path) -> str:
    """Name prefix of the temporary folders `atomic_dir` makes for `final` (mkdtemp appends 8 characters)."""
    return f".{final.name}.partial-"


def previous_prefix(final: Path) -> str:
    """Name prefix under which a swap without atomic exchange keeps the old `final` until the new one is in place."""
    return f".{final.name}.previous-"


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
    _check_length(out, "output folder", extra_name=PARTIAL_EXTRA, extra_path=PARTIAL_EXTRA + INSIDE_ROOM)
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
    if out.is_dir() and _non_empty(out) and not (writes_inside and reuse(out)):
        if not overwrite:
            fix = (
                "pass --overwrite to replace it, or choose another folder"
                if overwrite is False
                else "choose another one"
            )
            raise InputError(f"output folder {out} is not empty; {fix}")
        if not (out / OUTPUT_MARKER).is_file():
            raise InputError(
                f"output folder {out} was not written by helix4d (it has no {OUTPUT_MARKER}), so --overwrite will "
                "not replace it; choose another folder, or delete it yourself"
            )
    remove_stale_partials(out)
    _probe_writable(out, inside=writes_inside)
    return out


def _protected() -> list[tuple[str, Path]]:
    """Folders no output may be or lie above, resolved: the current folder, the home folder, the file system's root
    and its direct children, and the running Python installation (prefixes, site-packages)."""
    places = []
    for what, where in (("the current folder", Path.cwd), ("your home folder", Path.home)):
        try:
            places.append((what, where().resolve()))
        except (OSError, KeyError, RuntimeError):  # a deleted current folder, no HOME and no passwd entry
            pass
    return places + _system_places()


def _system_places() -> list[tuple[str, Path]]:
    """The file system's root and its direct children, and the running Python installation, resolved: where no
    output may go, whoever the user is."""
    places = [("a system folder", child) for child in _top_level_folders()]
    python = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages()}
    places += [("the Python installation running helix4d", Path(p).resolve()) for p in sorted(python) if p]
    return places


def _top_level_folders() -> list[Path]:
    """The root and every direct child of it (/etc, /usr, /home, /tmp, ...), whether or not it exists now."""
    root = Path(Path.cwd().anchor or "/")
    try:
        children = [c for c in root.iterdir() if c.is_dir()]
    except OSError:
        children = []
    return [root, *(c.resolve() for c in children)]


def check_report_path(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Refuse a report file (`--json`) that must not be written (rules in the module docstring); call it before any
    compute. Its folder is created when the report is written."""
    raw, report = str(path), Path(path)
    if not raw.strip() or report.name in ("", ".", ".."):
        raise InputError(f"report path {raw!r} is not a file name; name a file such as report.json")
    _check_length(report, "report path", extra_name=10, extra_path=10)  # atomic_path's .NAME.XXXXXXXX
    if report.is_symlink():
        raise InputError(f"report path {report} is a symbolic link; name the file itself, or a new one")
    if report.is_dir():
        raise InputError(f"report path {report} is a folder; name a file inside it, e.g. {report / 'report.json'}")
    resolved = report.resolve()
    for source in inputs:
        if isinstance(source, (str, os.PathLike)) and (_holds(Path(source).resolve(), resolved)):
            raise InputError(f"report path {report} is or lies inside the input {source}; write it elsewhere")
    for what, place in _system_places():
        if resolved.parent == place:
            raise InputError(f"report path {report} lies in {what} ({place}); write it elsewhere")
    if report.exists() and not _is_json(report):
        raise InputError(f"report path {report} exists and is not a JSON file; name a new file or a JSON report")
    return report


def write_report(path: str | os.PathLike, obj: Any, *, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """Check `path` (`check_report_path`) and write `obj` there as JSON atomically; a failing disk is one message."""
    check_report_path(path, inputs=inputs)
    try:
        return write_json_atomic(path, obj)
    except OSError as exc:
        raise InputError(f"cannot write report {path} ({exc.strerror or exc}); free some space or name another path")


def _check_length(path: Path, what: str, extra_name: int, extra_path: int) -> None:
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


def _is_json(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            json.load(fh)
        return True
    except (OSError, ValueError):
        return False


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
