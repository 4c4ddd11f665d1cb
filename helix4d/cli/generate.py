"""`helix4d generate`, `matte` and `app`: a video (or a batch of them) to a 4D asset, its masks, the web app."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from helix4d.errors import InputError
from helix4d.settings import CHUNK

MATTING_HELP = (
    "How the object is cut out: auto (the video's alpha, else --mask, else --matting-model, else the bundled "
    "U²-Net-p, else the border colour), alpha, mask, model, u2net, border or none (the whole frame)."
)
MASK_HELP = "Masks to use: a folder of one PNG per frame (as `helix4d matte` writes), or a mask video."
MATTING_MODEL_HELP = (
    "Local segmentation model: a transformers folder (BiRefNet, RMBG-2.0) or an .onnx file with U²-Net's interface."
)


def generate_command(
    videos: list[Path] = typer.Argument(
        ...,
        help="Input video (mp4/mov/webm/gif) or a folder of frames; or a batch: "
        "several videos, a folder of videos or a list file (.txt, one path a line).",
    ),
    out: Path = typer.Option(
        ...,
        "--out",
        "-o",
        help="Output folder (written all at once when generation succeeds); "
        "for a batch, the folder that receives OUT/<video name>/ per video and OUT/batch.json.",
    ),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder; default: the shipped demo model."),
    frames: Optional[int] = typer.Option(None, "--frames", help="Use at most this many frames (after --fps sampling)."),
    fps: Optional[float] = typer.Option(
        None, "--fps", help="Sample the video at this frame rate (default: every frame)."
    ),
    start: Optional[float] = typer.Option(None, "--start", help="Start time in seconds."),
    end: Optional[float] = typer.Option(None, "--end", help="End time in seconds."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps per stage (default: the model's)."),
    cfg: Optional[float] = typer.Option(
        None, "--cfg", help="Classifier-free guidance strength (default: the model's)."
    ),
    window: Optional[int] = typer.Option(
        None, "--window", help="Temporal window radius r; >= frames = full attention."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same result."),
    device: str = typer.Option("auto", "--device", help="'auto', 'cpu' or 'cuda'."),
    mode: str = typer.Option(
        "temporal", "--mode", help="'temporal' (Helix4D) or 'per-frame' (static model on each frame)."
    ),
    chunk: int = typer.Option(
        CHUNK,
        "--chunk",
        help="Frames per chunk, the anchor included: a longer clip is generated chunk by chunk, each anchored on "
        "the previous chunk's last frame (memory stays bounded); 0 = one anchor, frame 0, for the whole clip.",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
    formats: str = typer.Option(
        "glb,animated,usdc,usdz,preview",
        "--formats",
        help="What to write: any of glb (per-frame), animated (one GLB), rig (rigged.glb: bones and skin weights), "
        "usdc, usdz, abc (Alembic; needs pip install 'helix4d\\[alembic]'), fbx (the rig as asset.fbx; needs "
        "pip install 'helix4d\\[blender]'), preview (mp4).",  # \\[: rich would read [alembic] as markup
    ),
    texture_size: Optional[int] = typer.Option(
        None,
        "--texture-size",
        help="Baked texture side per frame; 0 = vertex colours (fast). Default: 8 texels per O-Voxel cell, "
        "256-2048 (256 for the demo model's 32³ grid).",
    ),
    max_faces: Optional[int] = typer.Option(
        None, "--max-faces", help="Simplify each frame's mesh to at most this many faces."
    ),
    offload: bool = typer.Option(
        False,
        "--offload",
        help="Keep weights in CPU memory and move each stage's models to "
        "the GPU only while it runs (large models on small GPUs, e.g. TRELLIS.2).",
    ),
    cleanup: bool = typer.Option(
        True,
        "--cleanup/--no-cleanup",
        help="Clean the surfaces before writing: remove "
        "floaters, cap small holes of closed surfaces, Taubin-smooth (default on).",
    ),
    matting: str = typer.Option("auto", "--matting", help=MATTING_HELP),
    mask: Optional[Path] = typer.Option(None, "--mask", help=MASK_HELP),
    matting_model: Optional[Path] = typer.Option(None, "--matting-model", help=MATTING_MODEL_HELP),
    stabilise: bool = typer.Option(
        True,
        "--stabilise/--no-stabilise",
        help="Undo a hand-held camera's motion (measured on the background) before the crop, so the result moves "
        "as the object did, not as the camera shook (default on; a camera that follows the object keeps its "
        "framing).",
    ),
) -> None:
    """Turn a video into a 4D asset: textured per-frame GLB, an animated GLB, USD and a preview, in OUT.

    A batch (several inputs, folders of videos or list files) writes one folder per video (OUT/<name>; videos
    that share a name get their suffix: OUT/clip-mp4, OUT/clip-avi), skips a video when rerun only if its folder
    was made from the same file with the same settings (unless --overwrite), records a failing video in
    OUT/batch.json and goes on, and prints a summary; it exits with 2 only when every video failed. Shard a batch
    over processes or GPUs with
    `torchrun --nproc_per_node N -m helix4d.generate VIDEOS... -o OUT`.
    """
    from helix4d.cli.run import generate, generate_batch
    from helix4d.io.matting import MattingOptions
    from helix4d.pipeline.batch import batch_videos
    from helix4d.pipeline.options import GenerateOptions, SamplingOptions

    options = GenerateOptions(
        frames=frames,
        fps=fps,
        start=start,
        end=end,
        sampling=SamplingOptions(seed=seed, steps=steps, cfg=cfg, window=window, mode=mode, chunk=chunk),
        matting=MattingOptions(matting, mask, matting_model, stabilise=stabilise),
        formats=tuple(f.strip() for f in formats.split(",") if f.strip()),
        texture_size=texture_size,
        max_faces=max_faces,
        cleanup=cleanup,
    )
    batch = batch_videos(videos)
    if batch is not None and mask is not None:
        raise InputError(
            "--mask holds one video's masks, but this is a batch of videos; matte a batch with "
            "--matting (auto by default) or run each video with its own --mask"
        )
    if batch is None:
        generate(videos[0], out, options, model=model, device=device, overwrite=overwrite, offload=offload)
        return
    reports = generate_batch(batch, out, options, model=model, device=device, offload=offload, overwrite=overwrite)
    if reports is not None and all(r.status == "failed" for r in reports):
        raise typer.Exit(2)


def matte_command(
    video: Path = typer.Argument(..., help="Input video (mp4/mov/webm/gif) or a folder of frames."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Folder for the masks (written all at once when matting succeeds)."
    ),
    frames: Optional[int] = typer.Option(None, "--frames", help="Use at most this many frames (after --fps sampling)."),
    fps: Optional[float] = typer.Option(
        None, "--fps", help="Sample the video at this frame rate (default: every frame)."
    ),
    start: Optional[float] = typer.Option(None, "--start", help="Start time in seconds."),
    end: Optional[float] = typer.Option(None, "--end", help="End time in seconds."),
    matting: str = typer.Option("auto", "--matting", help=MATTING_HELP),
    mask: Optional[Path] = typer.Option(None, "--mask", help=MASK_HELP),
    matting_model: Optional[Path] = typer.Option(None, "--matting-model", help=MATTING_MODEL_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a non-empty output folder."),
) -> None:
    """Write the per-frame masks `generate` would use (OUT/0000.png ..., 255 = object, plus matte.json); inspect or
    fix them and pass the folder back with `generate --mask OUT` (same --frames/--fps/--start/--end)."""
    from helix4d.cli.run import matte
    from helix4d.io.matting import MattingOptions

    matte(
        video,
        out,
        MattingOptions(matting, mask, matting_model),
        frames=frames,
        fps=fps,
        start=start,
        end=end,
        overwrite=overwrite,
    )


def app_command(
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder; default: the shipped demo model."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to serve on (0.0.0.0: reachable from other machines)."
    ),
    port: int = typer.Option(7860, "--port", help="Port to serve on."),
    share: bool = typer.Option(False, "--share/--no-share", help="Also open a temporary public gradio.live link."),
    device: str = typer.Option("auto", "--device", help="'auto', 'cpu' or 'cuda'."),
) -> None:
    """Start the web app: upload a video, generate, scrub the frames in 3D, download the files."""
    if not 1 <= port <= 65535:
        raise InputError(f"--port must be a TCP port, 1 to 65535, got {port}")
    from helix4d.app import launch

    launch(model=model, host=host, port=port, share=share, device=device)
