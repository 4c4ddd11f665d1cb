"""`helix4d data` and `helix4d convert`: build training datasets (synthetic or from animated assets), convert
TRELLIS.2's checkpoints into a helix4d model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from helix4d.cli.common import err_console
from helix4d.console import labelled

data_app = typer.Typer(
    help="Build 4D training datasets (O-Voxels + condition renders per frame).", no_args_is_help=True
)
convert_app = typer.Typer(help="Convert checkpoints of other projects into helix4d models.", no_args_is_help=True)


def _report_build(summary) -> None:
    """Print failures and the summary line; exit 2 only when every item failed."""
    for failure in summary.failures:
        err_console.print(
            labelled("failed:", "yellow", f"{failure['item']}: {failure['error']}"), highlight=False, soft_wrap=True
        )
    typer.echo(summary.line())
    if summary.all_failed:
        raise typer.Exit(2)


@data_app.command("synth")
def data_synth(
    out: Path = typer.Option(
        ..., "--out", "-o", help="Dataset folder (created; rerun with the same settings to resume)."
    ),
    count: int = typer.Option(..., "--count", "-n", min=1, help="Number of sequences to generate."),
    frames: int = typer.Option(16, "--frames", min=1, help="Frames per sequence."),
    resolution: int = typer.Option(64, "--resolution", min=2, help="O-Voxel grid resolution R."),
    image_size: int = typer.Option(128, "--image-size", min=8, help="Side of the square condition renders, pixels."),
    views: int = typer.Option(4, "--views", min=1, help="Rendered views per frame (view 0 = conditioning camera)."),
    seed: int = typer.Option(0, "--seed", help="Sequence i uses seed SEED + i."),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=0, help="Worker processes (default: all cores; 0: in-process)."
    ),
    kinds: str = typer.Option("", "--kinds", help="Comma-separated phenomena to cycle through (default: all kinds)."),
    look: str = typer.Option(
        "canonical",
        "--look",
        help="How each sequence is seen: 'canonical' (the fixed front "
        "camera, studio lights, the scene's colours, clean images) or 'random' (camera, lights, "
        "colours, textures, blur/noise/JPEG drawn per sequence from its seed; domain randomisation), "
        "'mixed' (canonical for half the seeds, random for the others) or 'unseen' (cameras and "
        "lights outside the random ranges: for held-out sets).",
    ),
    renderer: str = typer.Option(
        "raster",
        "--renderer",
        help="'raster' (the fast built-in OpenGL renderer) or "
        "'cycles' (Blender's path tracer: glass refracts; "
        "much slower; needs the 'blender' extra).",
    ),
) -> None:
    """Generate synthetic 4D sequences (every phenomenon in turn) into a dataset folder."""
    from helix4d.data.build import build_synthetic

    kind_list = [k.strip() for k in kinds.split(",") if k.strip()] or None
    _report_build(
        build_synthetic(
            out,
            count,
            frames=frames,
            resolution=resolution,
            image_size=image_size,
            views=views,
            seed=seed,
            workers=workers,
            kinds=kind_list,
            look=look,
            renderer=renderer,
        )
    )


@data_app.command("build")
def data_build(
    assets: list[Path] = typer.Argument(..., help="Animated asset files (.glb/.gltf/.fbx/.blend)."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Dataset folder (created; rerun with the same settings to resume)."
    ),
    frames: int = typer.Option(16, "--frames", min=1, help="Frames sampled evenly over each asset's animation."),
    resolution: int = typer.Option(64, "--resolution", min=2, help="O-Voxel grid resolution R."),
    image_size: int = typer.Option(128, "--image-size", min=8, help="Side of the square condition renders, pixels."),
    views: int = typer.Option(4, "--views", min=1, help="Rendered views per frame (view 0 = conditioning camera)."),
    workers: Optional[int] = typer.Option(
        None, "--workers", min=0, help="Worker processes (default: all cores; 0: in-process)."
    ),
    look: str = typer.Option(
        "canonical",
        "--look",
        help="How each sequence is seen: 'canonical' (the fixed front "
        "camera, studio lights, the scene's colours, clean images) or 'random' (camera, lights, "
        "colours, textures, blur/noise/JPEG drawn per asset; domain randomisation), 'mixed' (half "
        "canonical, half random) or 'unseen'.",
    ),
    renderer: str = typer.Option(
        "raster", "--renderer", help="'raster' (built-in OpenGL) or 'cycles' (Blender's path tracer)."
    ),
) -> None:
    """Build a dataset from animated assets imported through Blender (needs the optional 'blender' extra)."""
    from helix4d.data.build import build_assets

    _report_build(
        build_assets(
            assets,
            out,
            frames=frames,
            resolution=resolution,
            image_size=image_size,
            views=views,
            workers=workers,
            look=look,
            renderer=renderer,
        )
    )


@convert_app.command("trellis2")
def convert_trellis2_command(
    src: Path = typer.Argument(
        ...,
        help="TRELLIS.2 folder you downloaded (microsoft/TRELLIS.2-4B: pipeline.json + ckpts/, "
        "with ss_dec_conv3d_16l8_fp16.* from microsoft/TRELLIS-image-large copied into ckpts/).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="New helix4d model folder (must not exist or be empty)."),
    dino: Optional[Path] = typer.Option(
        None,
        "--dino",
        help="DINOv3 folder you downloaded (facebook/dinov3-vitl16-pretrain-"
        "lvd1689m); copied into OUT/image_encoder so OUT is self-contained.",
    ),
    resolution: int = typer.Option(
        512, "--resolution", help="Which TRELLIS.2 shape/texture flows to convert: 512 or 1024."
    ),
    cascade: bool = typer.Option(
        False,
        "--cascade",
        help="TRELLIS.2's default 1024 mode: a first geometry pass with the "
        "512 shape flow places the 1024 models' voxels (needs --resolution 1024).",
    ),
    dtype: str = typer.Option(
        "bfloat16", "--dtype", help="Stored flow weight type: bfloat16 (as released), float16 or float32."
    ),
) -> None:
    """Convert TRELLIS.2 (flows, stage-1 decoder, shape and texture decoders) strictly into a helix4d model folder.

    Every tensor is checked by name and shape before anything is written. The temporal self-attention copies
    start equal to the pretrained ones, so frame 0 is exactly TRELLIS.2's output; run it with
    `helix4d generate VIDEO --model OUT`, fine-tune it with `helix4d train`.
    """
    from helix4d.trellis2.convert import convert_trellis2

    convert_trellis2(src, out, resolution=resolution, dtype=dtype, dino=dino, cascade=cascade)
    components = sorted(p.name for p in out.iterdir() if p.is_dir())
    typer.echo(f"wrote {', '.join(components)}, pipeline.json and trellis2.json to {out}")
    if dino is None:
        typer.echo(f"no --dino given: copy the DINOv3 folder into {out / 'image_encoder'} before generating")
