"""The gradio UI of `helix4d app`: a video in; per-frame, animated and rigged 3D viewers, a preview and downloads out.

Layout: input video (+ shipped examples) and settings on the left; on the right a frame viewer scrubbed by a
slider, viewers playing the animated GLB and the rigged GLB, the preview video and the files to download. Each run
writes into its own sub-folder of a scratch folder that is removed when the app closes.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from functools import partial
from pathlib import Path

import gradio as gr

from helix4d.app.job import MainThreadJobs, ModelHolder, find_examples, run_job
from helix4d.errors import Helix4DError, InputError
from helix4d.settings import MODES

TEXTURES = {"textures at the model's detail": None, "vertex colours (fastest)": 0, "1024² textures": 1024}
DEFAULT_TEXTURE = next(iter(TEXTURES))
BACKGROUNDS = {  # how the object is cut out of its background (`--matting`)
    "auto (the video's alpha, else the salient-object model)": "auto",
    "salient-object model (U²-Net)": "u2net",
    "uniform background colour": "border",
    "none (the whole frame is the object)": "none",
}
DEFAULT_BACKGROUND = next(iter(BACKGROUNDS))
MAX_FRAMES = 64
MAX_STEPS = 100
VIEWER_HEIGHT = 420


class Helix4DApp:
    """One running app: the model (loaded on the first Generate), the example videos and the scratch folder.

    `jobs`: where Generate runs its job; None runs it in the calling thread (direct calls, tests); `launch` passes
    a `MainThreadJobs` so that jobs run on the main thread whichever server thread received the click.
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "auto",
        examples: list[Path] | None = None,
        workdir: str | Path | None = None,
        jobs: MainThreadJobs | None = None,
    ) -> None:
        self.model = ModelHolder(model, device)
        self.examples = find_examples() if examples is None else [Path(p) for p in examples]
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="helix4d-app-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.jobs = jobs

    # ------------------------------------------------------------------ event handlers
    def generate(
        self,
        video: str | None,
        frames: float,
        steps: float,
        seed: float | None,
        mode: str,
        texture: str,
        background: str = DEFAULT_BACKGROUND,
        stabilise: bool = True,
        progress: gr.Progress = gr.Progress(),
    ) -> tuple:
        """The Generate button. Returns, in order: per-frame GLB paths (state), the frame slider, the first
        frame's GLB, the animated GLB, the rigged GLB, the preview video, the download files and a status line.
        `steps` 0 means the model's default. A `Helix4DError` (bad video, bad setting, broken model folder)
        becomes a `gr.Error` message (no traceback)."""
        out = Path(tempfile.mkdtemp(prefix="run-", dir=self.workdir))
        started = time.perf_counter()
        try:
            job = partial(  # run_job checks the numbers (a NaN must become a message, not a ValueError here)
                run_job,
                self.model,
                video,
                out,
                frames=frames,
                steps=steps or None,
                seed=seed or 0,
                mode=mode,
                texture_size=TEXTURES[texture],
                matting=BACKGROUNDS[background],
                stabilise=stabilise,
                progress=lambda description, done, total: progress((done, total), desc=description),
            )
            result = self.jobs.call(job) if self.jobs else job()
        except BaseException as exc:
            shutil.rmtree(out, ignore_errors=True)
            if isinstance(exc, Helix4DError):
                raise gr.Error(str(exc)) from None
            raise
        paths = [str(p) for p in result.frames]
        last = len(paths) - 1
        status = f"{len(paths)} frames at {result.fps:g} fps in {time.perf_counter() - started:.1f} s."
        if not result.trained:
            status += " This model is randomly initialised (not trained): expect noise."
        return (
            paths,
            gr.Slider(value=0, maximum=max(last, 1), interactive=last > 0),
            paths[0],
            str(result.animated),
            str(result.rigged),
            str(result.preview),
            [str(p) for p in result.downloads],
            status,
        )

    @staticmethod
    def show_frame(index: float, frames: list[str]) -> str | None:
        """The frame slider: the GLB of frame `index` (clamped), or nothing before the first run."""
        if not frames:
            return None
        return frames[min(max(int(index), 0), len(frames) - 1)]

    # ------------------------------------------------------------------ layout
    def build(self) -> gr.Blocks:
        with gr.Blocks(title="Helix4D", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
            gr.Markdown("# Helix4D\nA video of an object in, a 4D asset out: one textured mesh per frame.")
            frame_paths = gr.State([])
            with gr.Row():
                with gr.Column(scale=1):
                    video = gr.Video(label="Input video", sources=["upload"], elem_id="input-video")
                    if self.examples:
                        gr.Examples(
                            [[str(p)] for p in self.examples], inputs=[video], label="Examples", cache_examples=False
                        )
                    with gr.Accordion("Settings", open=True):
                        frames = gr.Slider(
                            1,
                            MAX_FRAMES,
                            value=16,
                            step=1,
                            label="Frames",
                            elem_id="frames",
                            info="Use the first N frames of the video.",
                        )
                        steps = gr.Slider(
                            0,
                            MAX_STEPS,
                            value=0,
                            step=1,
                            label="Sampling steps",
                            elem_id="steps",
                            info=f"Per stage; 0: the model's default ({self.model.default_steps()}).",
                        )
                        seed = gr.Number(
                            0, precision=0, label="Seed", elem_id="seed", info="The same seed gives the same result."
                        )
                        mode = gr.Radio(
                            list(MODES),
                            value="temporal",
                            label="Mode",
                            elem_id="mode",
                            info="temporal: Helix4D; per-frame: the static model on each frame.",
                        )
                        texture = gr.Dropdown(
                            list(TEXTURES),
                            value=DEFAULT_TEXTURE,
                            label="Materials",
                            elem_id="texture",
                            info="Baked textures look better; colours are faster.",
                        )
                        background = gr.Dropdown(
                            list(BACKGROUNDS),
                            value=DEFAULT_BACKGROUND,
                            label="Background",
                            elem_id="background",
                            info="How the object is cut out of the frames.",
                        )
                        stabilise = gr.Checkbox(
                            value=True,
                            label="Undo camera shake",
                            elem_id="stabilise",
                            info="Map each frame into the first frame's camera before the crop (hand-held videos).",
                        )
                    button = gr.Button("Generate", variant="primary", elem_id="generate")
                    status = gr.Markdown(elem_id="status")
                with gr.Column(scale=2):
                    with gr.Row():
                        with gr.Column():
                            frame_view = gr.Model3D(label="Frame", height=VIEWER_HEIGHT, elem_id="frame-viewer")
                            slider = gr.Slider(
                                0, 1, value=0, step=1, label="Frame index", interactive=False, elem_id="frame-slider"
                            )
                        animated_view = gr.Model3D(
                            label="Animated (plays the sequence)", height=VIEWER_HEIGHT, elem_id="animated-viewer"
                        )
                        rigged_view = gr.Model3D(
                            label="Rigged (bones and skin weights)", height=VIEWER_HEIGHT, elem_id="rigged-viewer"
                        )
                    with gr.Row():
                        preview = gr.Video(
                            label="Preview: input | result",
                            interactive=False,
                            autoplay=True,
                            loop=True,
                            elem_id="preview",
                        )
                        downloads = gr.File(
                            label="Downloads", file_count="multiple", interactive=False, elem_id="downloads"
                        )
            button.click(
                self.generate,
                [video, frames, steps, seed, mode, texture, background, stabilise],
                [frame_paths, slider, frame_view, animated_view, rigged_view, preview, downloads, status],
            )
            slider.input(
                self.show_frame, [slider, frame_paths], frame_view, trigger_mode="always_last", show_progress="hidden"
            )
        return demo

    def close(self) -> None:
        """Remove every run's files."""
        shutil.rmtree(self.workdir, ignore_errors=True)


def launch(
    model: str | Path | None = None,
    host: str = "127.0.0.1",
    port: int = 7860,
    share: bool = False,
    device: str = "auto",
) -> None:
    """Serve the app until interrupted (Ctrl+C), then delete its files. The server runs in background threads
    while this (main) thread runs the generation jobs."""
    jobs = MainThreadJobs()
    app = Helix4DApp(model, device, jobs=jobs)
    demo = app.build()
    try:
        try:
            demo.launch(
                server_name=host,
                server_port=port,
                share=share,
                prevent_thread_lock=True,
                allowed_paths=[str(app.workdir), *(str(p.parent) for p in app.examples)],
            )
        except OSError:
            raise InputError(
                f"cannot serve on {host}:{port} (port in use or address not available); pass another --port or --host"
            ) from None
        jobs.serve()
    except KeyboardInterrupt:
        pass
    finally:
        demo.close()
        app.close()
