"""Which folders and report files a command may write: the one policy every command that writes follows.

Output folders (`check_output_dir`): a command must not be able to delete or change anything but the folder the
user named, whatever the flags and whoever runs it (root included), so the folder is checked before any compute. It
may not be '.' or '..', the current folder, the home folder, the file system's root or one of its direct children
(/etc, /usr, /home, ...), the Python installation running us (its prefix, a virtual environment, site-packages), or
a folder above any of these; nor the input or a folder holding it, a file, a mount point it would replace, or a
symbolic link (refused, not followed: replacing the link's target behind the user's back is a surprise, and
replacing the link itself loses it); it must be writable (probed now, so a read-only mount fails before minutes of
compute), and its path short enough for the file system (`helix4d.io.disk_limits`). A non-empty folder is replaced
only on request (`--overwrite`) and only when helix4d wrote it: every folder `atomic_dir` writes carries the marker
file `OUTPUT_MARKER`, so a typo such as `-o ~/Documents --overwrite` is refused; or it is added to by a command that
continues its own dataset or run.

Reports (`check_report_path`): a JSON file a command writes besides its folder (`--json`) follows the same rules for
what it may not be or lie in (an input, a file inside an input folder, a system folder), is never a folder or a
symbolic link, and replaces only a file that is already JSON.
"""

from __future__ import annotations

import json
import os
import site
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from helix4d.errors import InputError
from helix4d.io.disk_limits import check_path_length
from helix4d.io.partial_folders import PARTIAL_EXTRA, partial_prefix, remove_stale_partials

OUTPUT_MARKER = ".helix4d-output"  # in every folder atomic_dir writes: --overwrite replaces only such folders
INSIDE_ROOM = 64  # bytes of path kept free for what a command writes inside its folder (frames/frame_0000.glb, ...)


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
    check_path_length(out, "output folder", extra_name=PARTIAL_EXTRA, extra_path=PARTIAL_EXTRA + INSIDE_ROOM)
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
    check_path_length(report, "report path", extra_name=10, extra_path=10)  # atomic_path's .NAME.XXXXXXXX
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
