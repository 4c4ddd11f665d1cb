"""`helix4d generate` as the CLI shows it: the one generation job (`helix4d.pipeline.job`) with progress bars and the
flags' names, for one video or a batch (sharded under torchrun); and
`helix4d matte`: the per-frame masks generate would cut the object with, written for a user to inspect or fix."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.status import Status
from rich.table import Table
from rich.text import Text

from helix4d.console import labelled
from helix4d.errors import InputError
from helix4d.io.files import atomic_dir, check_output_dir, write_json_atomic
from helix4d.io.masks import write_masks
from helix4d.io.matting import Matte, MattingOptions, check_matting, compute_matte
from helix4d.io.preprocess import find_object
from helix4d.io.video import read_video
from helix4d.pipeline.batch import (
    BatchItem,
    ItemReport,
    batch_lock,
    gather_reports,
    plan_batch,
    run_batch,
    shard,
)
from helix4d.pipeline.helix4d import DEMO_MODEL, Helix4DPipeline, resolve_device
from helix4d.pipeline.job import result_record, run_job
from helix4d.pipeline.options import GenerateOptions
from helix4d.pipeline.threads import share_threads
from helix4d.settings import check_settings

console = Console(stderr=True)
# How `helix4d generate` spells each setting: messages name the flag the user typed.
FLAGS = {
    "max_frames": "--frames",
    "fps": "--fps",
    "start": "--start",
    "end": "--end",
    "steps": "--steps",
    "cfg": "--cfg",
    "window": "--window",
    "seed": "--seed",
    "mode": "--mode",
    "chunk": "--chunk",
    "texture_size": "--texture-size",
    "max_faces": "--max-faces",
    "formats": "--formats",
}
MATTING_FLAGS = {"method": "--matting", "mask": "--mask", "model": "--matting-model"}


def generate(
    video: Path,
    out: Path,
    options: GenerateOptions = GenerateOptions(),
    model: Path | None = None,
    device: str = "auto",
    overwrite: bool = False,
    offload: bool = False,
    pipe: Helix4DPipeline | None = None,
) -> Path:
    """`helix4d generate` for one video: the one generation job (`helix4d.pipeline.job.run_job`) with progress bars;
    every user mistake surfaces as a `Helix4DError` before any compute, named by its flag, and nothing is written
    but `out` (see `helix4d.io.files.check_output_dir`). `pipe`: an already loaded model (a batch)."""
    options = options.checked(FLAGS, MATTING_FLAGS)
    matte_device = str(resolve_device(device))
    threads = torch.get_num_threads() if pipe else share_threads()  # a batch chose once for all its videos
    started = time.perf_counter()
    with _Steps() as steps:
        asset, _ = run_job(
            video,
            out,
            options,
            lambda: pipe or load_model(model, device, offload),
            model=model,
            device=matte_device,
            threads=threads,
            overwrite=overwrite,
            progress=steps,
        )
    _warn(asset.metadata["warnings"])
    console.print(
        f"wrote {asset.num_frames} frames to {out} in {time.perf_counter() - started:.1f} s",
        markup=False,
        highlight=False,
    )
    return out


class _Steps:
    """How `helix4d generate` shows a job's steps: a bar for each sampling stage (kept on screen) and a transient
    spinner for the short ones (reading, matting, loading, writing), so a refused input still prints one line."""

    def __init__(self) -> None:
        columns = (
            TextColumn("{task.description:<18}", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        self.bars = Progress(*columns, console=console, transient=False)
        self.tasks: dict[str, TaskID] = {}
        self.spinner: Status | None = None

    def __call__(self, description: str, done: int, total: int) -> None:
        if description.startswith("stage "):
            if not self.tasks:
                self.bars.start()
            if description not in self.tasks:
                self.tasks[description] = self.bars.add_task(description, total=total)
            self.bars.update(self.tasks[description], completed=done)
            return
        self.bars.stop()  # the bars stay printed; a spinner needs the screen to itself
        if done < total and self.spinner is None:
            self.spinner = console.status(description)
            self.spinner.start()
        elif done >= total and self.spinner is not None:
            self.spinner.stop()
            self.spinner = None

    def __enter__(self) -> _Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()
        if self.spinner is not None:
            self.spinner.stop()


def load_model(model: Path | None, device: str, offload: bool) -> Helix4DPipeline:
    pipe = Helix4DPipeline.from_pretrained(model, device=device, offload=offload)
    if not pipe.config.trained:
        console.print(
            labelled("warning:", "yellow", "this model folder is randomly initialised (not trained): expect noise")
        )
    return pipe


def generate_batch(
    videos: list[Path],
    out: Path,
    options: GenerateOptions = GenerateOptions(),
    model: Path | None = None,
    device: str = "auto",
    offload: bool = False,
    overwrite: bool = False,
) -> list[ItemReport] | None:
    """`generate` for every video into OUT/<name>/ with one loaded model (naming and rerun rules:
    helix4d.pipeline.batch); under torchrun, this process's share on its own GPU. Returns every video's report on
    rank 0, None elsewhere."""
    options = options.checked(FLAGS, MATTING_FLAGS)
    rank, world = shard()
    if world > 1 and device == "auto" and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    resolve_device(device)
    items = plan_batch(videos, out, inputs=(model or DEMO_MODEL,), record=lambda v: result_record(v, model, options))
    out.mkdir(parents=True, exist_ok=True)
    with _one_batch_at_a_time(out, rank, world):
        share_threads()  # under torchrun, OMP_NUM_THREADS (1 unless set) is each process's share
        pipe = load_model(model, device, offload)

        def one(item: BatchItem, replace: bool) -> None:
            console.print(f"[{item.video}]", markup=False, highlight=False)
            generate(
                item.video, item.out, options, model=model, device=device, offload=offload, overwrite=replace, pipe=pipe
            )

        def note(report: ItemReport) -> None:
            if report.status == "failed":
                console.print(labelled("failed:", "yellow", f"{report.video}: {report.error}"), highlight=False)

        reports = gather_reports(run_batch(items, one, overwrite, note), out)
    if reports is not None:
        table = Table(
            "video",
            "status",
            "seconds",
            "output",
            title=f"{len(reports)} videos" + (f" on {world} processes" if world > 1 else ""),
        )
        for r in reports:  # paths and messages as Text: `[...]` in them is not markup
            status = {"failed": f"failed: {r.error}", "done": f"done ({r.note})" if r.note else "done"}
            table.add_row(
                Text(r.video),
                Text(status.get(r.status, r.status)),
                f"{r.seconds:.1f}" if r.status != "skipped" else "",
                Text(r.out),
            )
        console.print(table)
    return reports


@contextmanager
def _one_batch_at_a_time(out: Path, rank: int, world: int) -> Iterator[None]:
    """The batch lock (`helix4d.pipeline.batch.batch_lock`), held by rank 0 for all of torchrun's processes: it
    tells the others whether it got it, so a refused batch stops on every rank before any work."""
    if world == 1:
        with batch_lock(out):
            yield
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    with ExitStack() as held:
        refusal = [""]
        if rank == 0:
            try:
                held.enter_context(batch_lock(out))
            except InputError as exc:
                refusal = [str(exc)]
        dist.broadcast_object_list(refusal, src=0)
        if refusal[0]:
            dist.destroy_process_group()
            raise InputError(refusal[0])
        yield


def matte(
    video: Path,
    out: Path,
    matting: MattingOptions = MattingOptions(),
    frames: int | None = None,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    overwrite: bool = False,
) -> Matte:
    """Write the masks `generate` would use for `video` with the same options into `out`: one 8-bit PNG per frame
    (`helix4d.io.masks`) and `matte.json` (method, confidence, warnings, frame times); `generate --mask out` reads
    them back. Checked before any compute and written all at once, as `generate`."""
    check_settings({"max_frames": frames, "fps": fps, "start": start, "end": end}, FLAGS)
    check_matting(matting, MATTING_FLAGS)
    check_output_dir(out, inputs=(video, matting.mask, matting.model), overwrite=overwrite)
    clip = read_video(video, fps=fps, max_frames=frames, start=start, end=end)
    with console.status(f"matting {clip.num_frames} frames"):
        result = compute_matte(clip, dataclasses.replace(matting, stabilise=False))  # masks per decoded frame
    find_object(result.alpha, result.method, clip.source)  # refused as `generate` refuses it, not all-black masks
    with atomic_dir(out) as tmp:
        write_masks(result.alpha, tmp)
        write_json_atomic(
            tmp / "matte.json",
            {
                **result.summary(),
                "video": str(video),
                "frames": clip.num_frames,
                "times": [float(t) for t in clip.times],
                "warnings": result.warnings,
            },
        )
    _warn(result.warnings)
    confidence = "" if result.confidence is None else f", confidence {result.confidence:.2f}"
    console.print(
        f"wrote {clip.num_frames} masks ({result.method} matte{confidence}) to {out}", markup=False, highlight=False
    )
    return result


def _warn(warnings: list[str]) -> None:
    for warning in warnings:
        console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)
