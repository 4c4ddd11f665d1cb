"""The one generation job every front end runs: a video and checked options in, a written result folder out.

The CLI (`helix4d.cli.run`, progress bars and flag names), the web app (`helix4d.app.job`, its progress tracker
and labels) and a batch all call `run_job`; each checks the options first with its own names for the settings
(`GenerateOptions.checked`) and shows the job's steps its own way (`progress(description, done, total)`). So what
a job reads, checks, generates and records in `result.json` is written once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from helix4d.export import ExportedFiles
from helix4d.io.files import check_free_space
from helix4d.io.matting import compute_matte
from helix4d.io.preprocess import find_object
from helix4d.io.video import read_video
from helix4d.pipeline.batch import source_record
from helix4d.pipeline.generation import Progress
from helix4d.pipeline.helix4d import DEMO_MODEL, Asset4D, Helix4DPipeline
from helix4d.pipeline.options import GenerateOptions
from helix4d.pipeline.output import export_estimate, prepare_output, write_asset


def job_inputs(video: Path, model: Path | None, options: GenerateOptions) -> tuple[Path | None, ...]:
    """The paths a job reads, which its output folder may not be or hold."""
    return (video, model or DEMO_MODEL, options.matting.mask, options.matting.model)


def result_record(video: Path, model: Path | None, options: GenerateOptions) -> dict[str, Any]:
    """What made a result, as result.json records it under "settings": the video (its path, and its size and
    modification time as `source`), the model (None: the shipped demo model) and the options. A batch rerun skips an
    output only when all of it matches."""
    return {
        "video": str(video),
        "source": source_record(video),
        "model": str(model) if model else "demo (shipped)",
        **options.settings(),
    }


def run_job(
    video: Path,
    out: Path,
    options: GenerateOptions,
    load: Callable[[], Helix4DPipeline],
    *,
    model: Path | None = None,
    device: str = "cpu",
    threads: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> tuple[Asset4D, ExportedFiles]:
    """Read `video`, cut the object out, generate with the model `load()` returns (called once the matte is known,
    so a mask that does not fit fails in seconds, before the model loads) and write `out` all at once.

    `options` are checked by the caller. `model` is the folder `load` reads (None: the demo model), `device` where
    a segmentation model runs, `threads` the thread share. result.json records what was asked under "settings"
    (`result_record`, the same from every front end) and how it ran (device, offload, threads) under "run". Every
    step is told to `progress(description, done, total)`; every user mistake raises a `Helix4DError` before any
    compute."""
    report = progress or (lambda description, done, total: None)
    matting = dataclasses.replace(options.matting, device=options.matting.device or device)
    prepare_output(out, overwrite, inputs=job_inputs(video, model, options))
    started = time.perf_counter()
    report("reading video", 0, 1)
    clip = read_video(video, fps=options.fps, max_frames=options.frames, start=options.start, end=options.end)
    check_free_space(out, export_estimate(clip.num_frames, options))
    report("reading video", 1, 1)
    report(f"matting {clip.num_frames} frames", 0, 1)
    cut = compute_matte(clip, matting)
    find_object(cut.alpha, cut.method, clip.source)  # a clip without an object fails before the model loads too
    report(f"matting {clip.num_frames} frames", 1, 1)
    report("loading model", 0, 1)
    pipe = load()
    report("loading model", 1, 1)
    asset = pipe(clip, options.sampling, matting=cut, progress=progress)
    asset.metadata["seconds"]["load_and_generate"] = time.perf_counter() - started
    asset.metadata["run"] = {"device": str(pipe.device), "offload": pipe.offload, "threads": threads}  # not asked
    writing = f"writing {', '.join(options.formats)}"
    report(writing, 0, 1)
    files = write_asset(asset, out, result_record(video, model, options), options, overwrite)
    report(writing, 1, 1)
    return asset, files
