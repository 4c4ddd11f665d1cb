"""One web-app generation, without any UI code: video in, a folder of export files out.

Kept apart from the gradio layer so it can be tested and reused without gradio installed. The model is loaded
once, on the first request (loading takes seconds and the app should start instantly), and shared afterwards.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import zipfile
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch

from helix4d.errors import ConfigError, InputError
from helix4d.io.matting import MattingOptions
from helix4d.pipeline.folder import read_pipeline_config
from helix4d.pipeline.helix4d import DEMO_MODEL, Helix4DPipeline, Progress, resolve_device
from helix4d.pipeline.job import run_job as generation_job
from helix4d.pipeline.options import GenerateOptions, SamplingOptions

T = TypeVar("T")
_PACKAGE = Path(__file__).resolve().parent.parent
EXAMPLE_DIRS = (_PACKAGE / "examples", _PACKAGE.parent / "examples")  # shipped in the package, or in a checkout
LABELS = {
    "max_frames": "Frames",
    "steps": "Sampling steps",
    "seed": "Seed",
    "mode": "Mode",
    "texture_size": "texture size",
}  # how the app's user sees each setting, for messages
MATTING_LABELS = {"method": "Background"}


@dataclass
class JobResult:
    """Files of one generation, all inside `folder`."""

    folder: Path
    frames: list[Path]  # one GLB per frame
    frames_zip: Path  # the per-frame GLBs in one zip
    animated: Path  # every frame in one GLB that plays the sequence
    rigged: Path  # the sequence as bones and skin weights (morph targets where a rig does not fit)
    usdz: Path  # time-sampled USD with its textures
    preview: Path  # input | result video
    fps: float
    trained: bool  # False for a randomly initialised model folder (its output is noise)

    @property
    def downloads(self) -> list[Path]:
        return [self.frames_zip, self.animated, self.rigged, self.usdz, self.preview]


class ModelHolder:
    """A model folder, checked now and loaded on first use (then kept) so the app starts in a second."""

    def __init__(self, folder: str | Path | None = None, device: str = "auto") -> None:
        if folder is None and not DEMO_MODEL.is_dir():
            raise ConfigError(
                f"the demo model is not installed ({DEMO_MODEL}); pass --model MODEL_DIR "
                "(a trained model folder, or a random one from `helix4d model init`)"
            )
        self.given = Path(folder) if folder is not None else None  # as result.json names it (None: the demo)
        self.folder = self.given or DEMO_MODEL
        self.config = read_pipeline_config(self.folder)  # a wrong --model fails at start-up, not at the first click
        self.device = resolve_device(device)
        self._pipe: Helix4DPipeline | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._pipe is not None

    def default_steps(self) -> str:
        """The model's sampling steps, for the UI: '25', or per stage when they differ."""
        steps = {stage: s.steps for stage, s in self.config.sampling.items()}
        if len(set(steps.values())) == 1:
            return str(next(iter(steps.values())))
        return ", ".join(f"{stage} {n}" for stage, n in steps.items())

    def get(self) -> Helix4DPipeline:
        with self._lock:
            if self._pipe is None:
                self._pipe = Helix4DPipeline.from_pretrained(self.folder, device=self.device)
            return self._pipe


class MainThreadJobs:
    """Jobs handed from server threads to the one thread that runs `serve` (the main thread, in `launch`).

    Why: the renderer's shared OpenGL context works only in the thread that created it, while a web server calls
    handlers from varying threads; the CLI and the tests render on the main thread, so the app does too.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Future, contextvars.Context, Callable[[], Any]]] = queue.Queue()

    def call(self, job: Callable[[], T]) -> T:
        """Run `job()` on the serving thread (with this thread's context variables, e.g. gradio's progress
        tracker) and return its result or raise its exception."""
        future: Future = Future()
        self._jobs.put((future, contextvars.copy_context(), job))
        return future.result()

    def serve(self, poll_s: float = 0.5) -> None:
        """Run jobs one at a time, forever (until KeyboardInterrupt)."""
        while True:
            try:
                future, context, job = self._jobs.get(timeout=poll_s)  # a timeout keeps Ctrl+C responsive
            except queue.Empty:
                continue
            try:
                future.set_result(context.run(job))
            except BaseException as exc:  # the caller gets every failure; Ctrl+C also stops serving
                future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise


def find_examples(dirs: tuple[Path, ...] = EXAMPLE_DIRS) -> list[Path]:
    """Example videos (`*.mp4`) in the first of `dirs` that has any; [] when there are none."""
    for folder in dirs:
        videos = sorted(folder.glob("*.mp4")) if folder.is_dir() else []
        if videos:
            return videos
    return []


def run_job(
    model: ModelHolder,
    video: str | Path | None,
    out_dir: Path,
    *,
    frames: float = 16,
    steps: float | None = None,
    seed: float = 0,
    mode: str = "temporal",
    texture_size: int | None = None,
    matting: str = "auto",
    stabilise: bool = True,
    progress: Progress | None = None,
) -> JobResult:
    """Generate from `video` (its first `frames` frames) and write every export format into `out_dir`: the CLI's
    job (`helix4d.pipeline.job.run_job`), so result.json records what the CLI's would.

    Settings arrive as the UI sends them (sliders give 16.0) and are checked as the CLI's are
    (`GenerateOptions.checked`), named by the app's labels. texture_size: side of the baked per-frame textures (from
    the O-Voxel's own attributes), 0 for vertex colours (fastest), None for the model's grid's own
    (`helix4d.settings.texture_size_for`). `matting`: a `--matting` method; `stabilise`: undo a hand-held camera's
    motion before the crop. `progress(description, done, total)` hears every step.
    """
    if video is None:
        raise InputError("no input video: upload one or pick an example first")
    options = GenerateOptions(
        frames=frames,
        sampling=SamplingOptions(seed=seed, steps=steps, mode=mode),
        formats=("glb", "animated", "rig", "usdz", "preview"),
        texture_size=texture_size,
        matting=MattingOptions(matting, stabilise=stabilise),
    ).checked(LABELS, MATTING_LABELS)
    asset, files = generation_job(
        Path(video),
        out_dir,
        options,
        model.get,
        model=model.given,
        device=str(model.device),
        threads=torch.get_num_threads(),
        progress=progress,
    )
    frames_zip = zip_files(files.frames, out_dir / "frames.zip")
    return JobResult(
        out_dir,
        files.frames,
        frames_zip,
        files.animated,
        files.rigged,
        files.usdz,
        files.preview,
        asset.fps,
        model.config.trained,
    )


def zip_files(paths: list[Path], out: Path) -> Path:
    """`paths` side by side (by name) in one zip, for a single download."""
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in paths:
            archive.write(path, arcname=path.name)
    return out
