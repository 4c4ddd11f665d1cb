"""`helix4d generate`: load the model and the video, generate with progress bars, write the result folder."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from helix4d.console import labelled
from helix4d.errors import InputError
from helix4d.export import DEFAULT_FORMATS, FORMATS
from helix4d.export.alembic import require_alembic
from helix4d.io.video import read_video
from helix4d.pipeline.helix4d import DEMO_MODEL, Helix4DPipeline, resolve_device
from helix4d.pipeline.output import prepare_output, write_asset
from helix4d.settings import check_settings

console = Console(stderr=True)
# How `helix4d generate` spells each setting: messages name the flag the user typed.
FLAGS = {"max_frames": "--frames", "fps": "--fps", "start": "--start", "end": "--end", "steps": "--steps",
         "cfg": "--cfg", "window": "--window", "seed": "--seed", "mode": "--mode", "texture_size": "--texture-size",
         "max_faces": "--max-faces"}


def generate(
    video: Path, out: Path, model: Path | None = None, frames: int | None = None, fps: float | None = None,
    start: float | None = None, end: float | None = None, steps: int | None = None, cfg: float | None = None,
    window: int | None = None, seed: int = 0, device: str = "auto", mode: str = "temporal", overwrite: bool = False,
    formats: tuple[str, ...] = DEFAULT_FORMATS, texture_size: int | None = 512, max_faces: int | None = None,
    offload: bool = False, cleanup: bool = True,
) -> Path:
    """Run the whole job; every user mistake surfaces as a `Helix4DError` before any compute, and nothing is
    written but `out` (see `helix4d.io.files.check_output_dir`)."""
    check_settings({"max_frames": frames, "fps": fps, "start": start, "end": end, "steps": steps, "cfg": cfg,
                    "window": window, "seed": seed, "mode": mode, "texture_size": texture_size,
                    "max_faces": max_faces}, FLAGS)
    unknown = set(formats) - set(FORMATS)
    if unknown or not formats:
        raise InputError(f"--formats takes a comma-separated subset of {','.join(FORMATS)}, got {','.join(formats)}")
    if "abc" in formats:
        require_alembic()
    resolve_device(device)
    prepare_output(out, overwrite, inputs=(video, model or DEMO_MODEL))
    started = time.perf_counter()
    clip = read_video(video, fps=fps, max_frames=frames, start=start, end=end)
    pipe = Helix4DPipeline.from_pretrained(model, device=device, offload=offload)
    if not pipe.config.trained:
        console.print(labelled("warning:", "yellow", "this model folder is randomly initialised (not trained): "
                               "expect noise"))
    columns = (TextColumn("{task.description:<18}", markup=False), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def progress(description: str, done: int, total: int) -> None:
            if description not in tasks:
                tasks[description] = bar.add_task(description, total=total)
            bar.update(tasks[description], completed=done)

        asset = pipe(clip, seed=seed, steps=steps, cfg=cfg, window=window, mode=mode, progress=progress)
    for warning in asset.metadata["warnings"]:
        console.print(f"warning: {warning}", style="yellow", markup=False, highlight=False)
    settings = {
        "video": str(video), "model": str(model) if model else "demo (shipped)", "frames": frames, "fps": fps,
        "start": start, "end": end, "steps": steps, "cfg": cfg, "window": window, "seed": seed,
        "device": str(pipe.device), "mode": mode, "formats": list(formats), "texture_size": texture_size,
        "max_faces": max_faces, "offload": pipe.offload, "cleanup": cleanup,
    }
    asset.metadata["seconds"]["load_and_generate"] = time.perf_counter() - started
    with console.status(f"writing {', '.join(formats)}"):
        write_asset(asset, out, settings, overwrite, formats, texture_size, max_faces, cleanup)
    console.print(f"wrote {asset.num_frames} frames to {out} in {time.perf_counter() - started:.1f} s", markup=False,
                  highlight=False)
    return out
