"""Many videos in one `helix4d generate`: one output folder each, finished ones skipped on a rerun, a failing video
recorded while the rest go on, and the list sharded across torchrun's processes.

A batch is named by several inputs, by a folder that holds videos (a folder of images stays one video), or by a
list file (`.txt`, one path per line, relative to the file; `#` starts a comment). `OUT/<video name>/` receives
each asset, written all or nothing as a single run writes it, and `OUT/batch.json` what happened to every video.

Scaling out uses torchrun's own environment (RANK, WORLD_SIZE, LOCAL_RANK): process r takes videos r, r + N, ...,
each on its own GPU when there are GPUs, and rank 0 gathers the reports (torch.distributed, Gloo) into one table.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from helix4d.errors import Helix4DError, InputError
from helix4d.io.files import check_output_dir, write_json_atomic
from helix4d.io.video import IMAGE_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".gif")
BATCH_REPORT = "batch.json"
RESULT = "result.json"


@dataclass(frozen=True)
class BatchItem:
    video: Path
    out: Path


@dataclass
class ItemReport:
    video: str
    out: str
    status: str  # 'done', 'skipped' or 'failed'
    seconds: float = 0.0
    error: str = ""


def batch_videos(inputs: Sequence[Path]) -> list[Path] | None:
    """The videos a generate call names, or None when it names exactly one video (or one folder of frames)."""
    if not inputs:
        raise InputError("no input given: name a video, a folder of frames, a folder of videos or a list file")
    if len(inputs) == 1:
        single = inputs[0]
        if single.suffix.lower() == ".txt" and single.is_file():
            return _read_list(single)
        if single.is_dir() and not any(f.suffix.lower() in IMAGE_SUFFIXES for f in single.iterdir()):
            videos = sorted(f for f in single.iterdir() if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
            if not videos:
                raise InputError(
                    f"{single} holds neither frames ({', '.join(IMAGE_SUFFIXES)}) nor videos "
                    f"({', '.join(VIDEO_SUFFIXES)})"
                )
            return videos
        return None
    return list(inputs)


def _read_list(path: Path) -> list[Path]:
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the list file {path} ({exc})") from None
    videos = []
    for line in lines:
        entry = line.split("#", 1)[0].strip()
        if entry:
            p = Path(entry).expanduser()
            videos.append(p if p.is_absolute() else path.parent / p)
    if not videos:
        raise InputError(f"the list file {path} names no video (one path per line)")
    return videos


def plan_batch(videos: Sequence[Path], out: Path, inputs: Sequence[Path | None] = ()) -> list[BatchItem]:
    """One output folder per video, `OUT/<stem>` (`<stem>-2`, ... when names repeat); checks OUT up front."""
    check_output_dir(out, inputs=[*videos, *inputs], reuse=lambda p: (p / BATCH_REPORT).is_file() or _is_batch(p))
    items, taken = [], set()
    for video in videos:
        name, n = video.stem or "video", 1
        while (name if n == 1 else f"{name}-{n}") in taken:
            n += 1
        name = name if n == 1 else f"{name}-{n}"
        taken.add(name)
        items.append(BatchItem(video=video, out=out / name))
    return items


def _is_batch(folder: Path) -> bool:
    """A folder that an interrupted batch started: only asset folders (with result.json) and partials."""
    return all(p.name.startswith(".") or (p / RESULT).is_file() for p in folder.iterdir())


def run_batch(
    items: Sequence[BatchItem],
    generate_one: Callable[[BatchItem], None],
    overwrite: bool = False,
    on_item: Callable[[ItemReport], None] | None = None,
) -> list[ItemReport]:
    """This process's share of `items` (torchrun rank r of N takes r, r + N, ...), each through `generate_one`;
    finished outputs are skipped unless `overwrite`; any error of one video becomes its report."""
    rank, world = shard()
    reports = []
    for item in items[rank::world]:
        if (item.out / RESULT).is_file() and not overwrite:
            report = ItemReport(str(item.video), str(item.out), "skipped")
        else:
            started = time.perf_counter()
            try:
                generate_one(item)
                report = ItemReport(str(item.video), str(item.out), "done", time.perf_counter() - started)
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
        # rank r holds items r, r + N, ...: interleave back into input order
        reports = [per_rank[i] for i in range(max(map(len, gathered))) for per_rank in gathered if i < len(per_rank)]
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
