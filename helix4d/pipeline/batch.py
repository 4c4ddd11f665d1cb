"""Many videos in one `helix4d generate`: one output folder each, keyed by the video it was made from, a failing
video recorded while the rest go on, and the list sharded across torchrun's processes.

Inputs. A batch is named by several inputs, by a folder that holds videos, or by a list file (`.txt`, one path per
line, relative to the file; `#` starts a comment; UTF-8 with or without a byte-order mark, LF or CRLF). Every input
is expanded the same way wherever it stands: a list file gives its entries, a folder of videos its videos (name
order), a folder of images stays one video (its frames), anything else is one video. A folder holding both videos
and images is refused (it is neither one clip nor a set of clips); a video named twice is generated once.

Output names. `OUT/<stem>/` receives each video's asset (`clip.mp4` -> `OUT/clip/`), written all or nothing as a
single run writes it, and `OUT/batch.json` what happened to every video. When several videos of the batch share a
stem (`clip.mp4`, `clip.avi`; case ignored), each of them gets its suffix: `OUT/clip-mp4/`, `OUT/clip-avi/`; when
they share the suffix too (`a/clip.mp4`, `b/clip.mp4`), each gets the first 8 hex digits of the SHA-1 of its full
path as well: `OUT/clip-mp4-1a2b3c4d/`. A stem that would name the batch's own report (`batch.json.mp4`) is treated
as a collision. So a name depends on the set of videos, never on their order. Leading dots are dropped (no hidden
folders).

Reruns. Each asset's result.json records its source (path, size, modification time) and the settings. A rerun
skips a folder only when both match this run's; otherwise it generates the video again and replaces the folder
(only a folder helix4d wrote: `helix4d.io.files.OUTPUT_MARKER`), and batch.json says why. `--overwrite` regenerates
every video.

One batch at a time. A batch holds a lock (`OUT/.helix4d-batch.lock`, `fcntl.flock`) from its checks to its
report; a second batch into the same OUT is refused with a message instead of racing the first.

Scaling out uses torchrun's own environment (RANK, WORLD_SIZE, LOCAL_RANK): process r takes videos r, r + N, ...,
each on its own GPU when there are GPUs, and rank 0 gathers the reports (torch.distributed, Gloo) into one table.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from helix4d.errors import Helix4DError, InputError
from helix4d.io.files import check_output_dir, write_json_atomic
from helix4d.io.video import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".gif")
LIST_SUFFIX = ".txt"
BATCH_REPORT = "batch.json"
BATCH_LOCK = ".helix4d-batch.lock"
RESULT = "result.json"


@dataclass(frozen=True)
class BatchItem:
    """One video of a batch, its output folder, and what that folder's result.json must record (`record`: the
    source and the settings, as `generate` writes them under "settings") for a rerun to skip it."""

    video: Path
    out: Path
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class ItemReport:
    video: str
    out: str
    status: str  # 'done', 'skipped' or 'failed'
    seconds: float = 0.0
    error: str = ""
    note: str = ""  # why a finished folder was generated again (another video, a changed video, other settings)


def batch_videos(inputs: Sequence[Path]) -> list[Path] | None:
    """The videos a generate call names (module docstring), or None when it names exactly one video (or one
    folder of frames)."""
    if not inputs:
        raise InputError("no input given: name a video, a folder of frames, a folder of videos or a list file")
    videos = [video for given in inputs for video in _expand(Path(given))]
    if len(inputs) == 1 and videos == [Path(inputs[0])]:
        return None
    unique: dict[Path, Path] = {}
    for video in videos:
        unique.setdefault(_absolute(video), video)
    return list(unique.values())


def _expand(given: Path) -> list[Path]:
    """The videos one input names: a list file's entries, a folder's videos, or itself."""
    if given.suffix.lower() == LIST_SUFFIX and given.is_file():
        return _read_list(given)
    if not given.is_dir():
        return [given]
    try:
        entries = sorted(f for f in given.iterdir() if f.is_file())
    except OSError as exc:
        raise InputError(f"cannot read the folder {given} ({exc.strerror}); check its permissions") from None
    images = [f.name for f in entries if f.suffix.lower() in IMAGE_SUFFIXES]
    videos = [f for f in entries if f.suffix.lower() in VIDEO_SUFFIXES]
    if images and videos:
        raise InputError(
            f"{given} holds both videos ({_some(f.name for f in videos)}) and images ({_some(images)}); a folder is "
            "either one clip's frames or a set of videos: move the images into a folder of their own"
        )
    if images:
        return [given]
    if not videos:
        raise InputError(
            f"{given} holds neither frames ({', '.join(IMAGE_SUFFIXES)}) nor videos ({', '.join(VIDEO_SUFFIXES)})"
        )
    return videos


def _some(names: Iterator[str] | list[str], shown: int = 2) -> str:
    names = list(names)
    return ", ".join(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()  # -sig: a byte-order mark is not a path
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the list file {path} ({exc}); save it as UTF-8 text, one path a line") from None
    videos = []
    for line in lines:
        entry = line.split("#", 1)[0].strip()
        if entry:
            p = Path(entry).expanduser()
            videos.append(p if p.is_absolute() else path.parent / p)
    if not videos:
        raise InputError(f"the list file {path} names no video (one path per line)")
    return videos


def _absolute(path: Path) -> Path:
    """`path` made absolute and free of '..' and links where it exists: two spellings of one video compare equal."""
    try:
        return path.resolve()
    except OSError:
        return Path(os.path.abspath(path))


def output_names(videos: Sequence[Path]) -> list[str]:
    """The folder name of each video in OUT (module docstring: stem, then -suffix, then -hash on collisions)."""

    def plain(video: Path) -> str:
        return video.stem.lstrip(".") or "video"

    def with_suffix(video: Path) -> str:
        return f"{plain(video)}-{video.suffix.lstrip('.').lower() or 'frames'}"

    def with_hash(video: Path) -> str:
        return f"{with_suffix(video)}-{hashlib.sha1(os.fsencode(_absolute(video))).hexdigest()[:8]}"

    names = [plain(v) for v in videos]
    for longer in (with_suffix, with_hash):
        count = Counter(n.casefold() for n in names)
        names = [
            longer(v) if count[n.casefold()] > 1 or n.casefold() in _RESERVED else n for v, n in zip(videos, names)
        ]
    return names


_RESERVED = {BATCH_REPORT.casefold(), BATCH_LOCK.casefold()}


def plan_batch(
    videos: Sequence[Path],
    out: Path,
    inputs: Sequence[Path | None] = (),
    record: Callable[[Path], dict[str, Any]] | None = None,
) -> list[BatchItem]:
    """One output folder per video (`output_names`), with what its result.json must record (`record(video)`);
    checks OUT up front."""
    check_output_dir(out, inputs=[*videos, *inputs], reuse=lambda p: (p / BATCH_REPORT).is_file() or _is_batch(p))
    return [
        BatchItem(video=video, out=out / name, record=record(video) if record else {})
        for video, name in zip(videos, output_names(videos))
    ]


def _is_batch(folder: Path) -> bool:
    """A folder that an interrupted batch started: only asset folders (with result.json) and partials."""
    return all(p.name.startswith(".") or (p / RESULT).is_file() for p in folder.iterdir())


def source_record(video: Path) -> dict[str, Any] | None:
    """What identifies the video a result was made from: its absolute path, size in bytes and modification time
    (ns); for a folder of frames, its images' total size and the latest of their and the folder's times (adding,
    removing or renaming a frame changes the folder's). None when it cannot be read (the run will say why)."""
    try:
        st = video.stat()
        if video.is_dir():
            frames = [f.stat() for f in video.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
            size = sum(f.st_size for f in frames)
            mtime = max([st.st_mtime_ns, *(f.st_mtime_ns for f in frames)])
        else:
            size, mtime = st.st_size, st.st_mtime_ns
    except OSError:
        return None
    return {"path": str(_absolute(video)), "size": size, "mtime_ns": mtime}


@contextmanager
def batch_lock(out: Path) -> Iterator[None]:
    """Hold `OUT/.helix4d-batch.lock` for the block, or refuse: another batch is writing into OUT. The file stays
    behind (removing a lock file races whoever opens it next); the lock itself ends with the process."""
    try:
        fd = os.open(out / BATCH_LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        raise InputError(f"cannot lock the batch folder {out} ({exc.strerror}); name another output folder") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InputError(
                f"another batch is writing into {out} now; wait for it to finish, or name another output folder"
            ) from None
        yield
    finally:
        os.close(fd)


def previous_result(item: BatchItem) -> str | None:
    """What stands in the way of skipping `item`: None when its folder holds no result (nothing to skip), "" when
    the result was made from this video with these settings (skip it), else why it must be made again."""
    try:
        settings = json.loads((item.out / RESULT).read_text())["settings"]
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return "its result.json is unreadable"
    if not isinstance(settings, dict):
        return "its result.json is unreadable"
    want = json.loads(json.dumps(item.record))  # as JSON holds it: tuples are lists
    if not want:
        return ""  # nothing to compare: a finished result is kept
    source, made_from = want.get("source"), settings.get("source")
    if source is not None and (not isinstance(made_from, dict) or made_from.get("path") != source["path"]):
        return "it was made from another video" if isinstance(made_from, dict) else "it records no source video"
    if source != made_from:
        return "the video changed since"
    changed = sorted(k for k, v in want.items() if k != "source" and settings.get(k) != v)
    return f"it was made with other settings ({', '.join(changed)})" if changed else ""


def run_batch(
    items: Sequence[BatchItem],
    generate_one: Callable[[BatchItem, bool], None],
    overwrite: bool = False,
    on_item: Callable[[ItemReport], None] | None = None,
) -> list[ItemReport]:
    """This process's share of `items` (torchrun rank r of N takes r, r + N, ...), each through
    `generate_one(item, replace)`; a folder whose result matches the item's record is skipped unless `overwrite`,
    one that does not is generated again with `replace` set; any error of one video becomes its report."""
    rank, world = shard()
    reports = []
    for item in items[rank::world]:
        previous = previous_result(item)
        if previous == "" and not overwrite:
            report = ItemReport(str(item.video), str(item.out), "skipped")
        else:
            note = f"replaced: {previous}" if previous and not overwrite else ""
            started = time.perf_counter()
            try:
                generate_one(item, overwrite or previous is not None)
                report = ItemReport(str(item.video), str(item.out), "done", time.perf_counter() - started, note=note)
            except Helix4DError as exc:
                report = ItemReport(str(item.video), str(item.out), "failed", time.perf_counter() - started, str(exc))
            except Exception as exc:  # noqa: BLE001 - one broken video must not end the batch; its trace is kept
                trace = traceback.format_exception_only(type(exc), exc)[-1].strip()
                report = ItemReport(str(item.video), str(item.out), "failed", time.perf_counter() - started, trace)
        reports.append(report)
        if on_item:
            on_item(report)
    return reports


def shard() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) in a plain process."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def gather_reports(reports: list[ItemReport], out: Path) -> list[ItemReport] | None:
    """Every process's reports on rank 0 (None elsewhere), in input order, written to OUT/batch.json."""
    rank, world = shard()
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        gathered: list[list[ItemReport] | None] = [None] * world
        dist.all_gather_object(gathered, reports)
        dist.destroy_process_group()
        if rank:
            return None
        ranks = cast(list[list[ItemReport]], gathered)  # all_gather_object filled every rank's slot
        # rank r holds items r, r + N, ...: interleave back into input order
        reports = [per_rank[i] for i in range(max(map(len, ranks))) for per_rank in ranks if i < len(per_rank)]
    write_json_atomic(
        out / BATCH_REPORT,
        {
            "videos": [asdict(r) for r in reports],
            "done": sum(r.status == "done" for r in reports),
            "skipped": sum(r.status == "skipped" for r in reports),
            "failed": sum(r.status == "failed" for r in reports),
        },
    )
    return reports
