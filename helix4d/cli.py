"""The `helix4d` command line: one typer app, sub-commands imported lazily so `--help` stays fast."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from helix4d import __version__
from helix4d.console import labelled
from helix4d.errors import Helix4DError, InputError
from helix4d.io.files import check_output_dir, check_report_path, write_report
from helix4d.settings import CHUNK, TEXTURE_SIZE, WINDOW

app = typer.Typer(
    name="helix4d",
    help="Helix4D: turn a video of an object into a 4D asset (one textured mesh per frame).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Speed and memory benchmarks (print a table, or JSON with --json).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")

err_console = Console(stderr=True)

MATTING_HELP = (
    "How the object is cut out: auto (the video's alpha, else --mask, else --matting-model, else the bundled "
    "U²-Net-p, else the border colour), alpha, mask, model, u2net, border or none (the whole frame)."
)
MASK_HELP = "Masks to use: a folder of one PNG per frame (as `helix4d matte` writes), or a mask video."
MATTING_MODEL_HELP = (
    "Local segmentation model: a transformers folder (BiRefNet, RMBG-2.0) or an .onnx file with U²-Net's interface."
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"helix4d {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Helix4D: video in, 4D asset out."""


def _int_list(text: str, name: str) -> list[int]:
    """Parse '8,16' into [8, 16] (positive ints) or raise an InputError naming the option."""
    from helix4d.errors import InputError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise InputError(f"{name} must be comma-separated positive integers such as 8,16 (got {text!r})")
    return values


@bench_app.command("attention")
def bench_attention(
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    frames: str = typer.Option("", "--frames", help="Comma-separated frame counts (default 16)."),
    tokens: str = typer.Option(
        "", "--tokens", help="Comma-separated tokens per frame (default cpu 256,512; cuda 1024,4096)."
    ),
    window: int = typer.Option(WINDOW, "--window", min=0, help="Window radius r in frames."),
    heads: int = typer.Option(16, "--heads", min=1, help="Attention heads."),
    head_dim: int = typer.Option(64, "--head-dim", min=1, help="Dimension per head."),
    repeats: int = typer.Option(0, "--repeats", min=0, help="Timed repeats per backend (0: cpu 3, cuda 10)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of rows instead of a table."),
) -> None:
    """Windowed anchored attention: ms, useful TFLOP/s, peak memory and error of each backend vs dense."""
    import json

    import torch

    from helix4d.bench.attention import print_attention_table, rows_as_dicts, run_attention_benchmark
    from helix4d.errors import BackendUnavailableError, InputError

    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda (got {device!r})")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("CUDA is not available here; run with --device cpu")
    rows = run_attention_benchmark(
        device,
        _int_list(frames, "--frames") if frames else None,
        _int_list(tokens, "--tokens") if tokens else None,
        window,
        heads,
        head_dim,
        repeats or None,
    )
    if as_json:
        typer.echo(json.dumps(rows_as_dicts(rows), indent=1))
    else:
        print_attention_table(rows)


def _print_bench_row(row) -> None:
    err_console.print(f"measured F={row.frames} on {row.device}: {row.total:.2f} s", highlight=False)


@bench_app.command("pipeline")
def bench_pipeline(
    frames: str = typer.Option("4,8,16,32", "--frames", help="Comma-separated frame counts F."),
    steps: int = typer.Option(1, "--steps", min=1, help="Sampling steps per stage (models default to 25)."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, or auto (CPU, plus CUDA when available)."),
    preset: str = typer.Option(
        "tiny", "--preset", help="Size of the random model timed without --model: tiny or demo."
    ),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder to time instead of a random preset."),
    threads: Optional[int] = typer.Option(
        None, "--threads", min=1, help="torch CPU threads (default: torch's; 1 on a CPU shared with busy processes)."
    ),
    repeat: int = typer.Option(
        1, "--repeat", min=1, help="Measured runs per size after the warm-up; the fastest is kept."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Pipeline per-stage seconds, frames/s and peak memory for each F, each in a fresh process; frame scaling."""
    import json

    from helix4d.bench.report import BenchReport, machine_info, pipeline_table, resolve_devices, run_pipeline_benchmark

    devices, counts = resolve_devices(device), _int_list(frames, "--frames")
    rows = run_pipeline_benchmark(counts, steps, devices, model, preset, 0, threads, repeat, _print_bench_row)
    settings = {
        "devices": ",".join(devices),
        "model": str(model) if model else f"random '{preset}' preset",
        "steps": steps,
        "repeat": repeat,
    }
    report = BenchReport(machine_info(), settings, rows)
    typer.echo(json.dumps(report.to_json(), indent=1) if as_json else pipeline_table(rows))


@bench_app.command("all")
def bench_all(
    frames: str = typer.Option("4,8,16,32", "--frames", help="Comma-separated frame counts F for the pipeline."),
    steps: int = typer.Option(1, "--steps", min=1, help="Sampling steps per stage (models default to 25)."),
    device: str = typer.Option("auto", "--device", help="auto (CPU, plus CUDA when available), cpu or cuda."),
    preset: str = typer.Option(
        "tiny", "--preset", help="Size of the random model timed without --model: tiny or demo."
    ),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder to time instead of a random preset."),
    resolutions: str = typer.Option("32,64", "--resolutions", help="Comma-separated O-Voxel resolutions R."),
    attention_frames: str = typer.Option("8", "--attention-frames", help="Comma-separated frame counts for attention."),
    attention_tokens: str = typer.Option(
        "",
        "--attention-tokens",
        help="Comma-separated tokens per frame for attention (default cpu 256,512; cuda 1024,4096).",
    ),
    threads: Optional[int] = typer.Option(
        None,
        "--threads",
        min=1,
        help="torch CPU threads for attention and pipeline rows (1 on a CPU shared with busy processes).",
    ),
    repeat: int = typer.Option(
        1, "--repeat", min=1, help="Measured runs per pipeline size / O-Voxel job; fastest kept."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """The full speed report: attention backends, pipeline stages and memory, frame and resolution scaling."""
    import json

    from helix4d.bench.report import print_report, run_report

    report = run_report(
        _int_list(frames, "--frames"),
        steps,
        device,
        model,
        preset,
        _int_list(resolutions, "--resolutions"),
        _int_list(attention_frames, "--attention-frames"),
        _int_list(attention_tokens, "--attention-tokens") if attention_tokens else None,
        threads,
        repeat,
        _print_bench_row,
    )
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=1))
    else:
        print_report(report)


@bench_app.command("gpu")
def bench_gpu(
    device: str = typer.Option("cuda", "--device", help="cuda, or cpu (with --size tiny)."),
    size: str = typer.Option("full", "--size", help="full (TRELLIS.2's 512 models) or tiny (the same code, seconds)."),
    frames: str = typer.Option("1,16", "--frames", help="Comma-separated frame counts."),
    steps: int = typer.Option(0, "--steps", min=0, help="Sampling steps per flow stage (0: TRELLIS.2's 12)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """TRELLIS.2's full-size architecture with random weights, bf16: seconds and peak memory per stage, every
    attention backend and both sparse convolutions (agreement and time); designed to finish within 8 minutes on one
    H100."""
    import json

    from helix4d.bench.gpu import gpu_tables, run_gpu_bench

    log = lambda line: err_console.print(line, highlight=False)  # noqa: E731
    report = run_gpu_bench(device, size, _int_list(frames, "--frames"), steps or None, log)
    typer.echo(json.dumps(report.to_json(), indent=1) if as_json else gpu_tables(report))


@app.command("train")
def train_command(
    config: str = typer.Argument(..., help="JSON training config (see the README's Training section)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the newest checkpoint in the output folder (starts fresh if none)."
    ),
    out: str | None = typer.Option(None, "--out", help="Output folder; overrides the config's 'out'."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda; overrides the config's 'device'."),
) -> None:
    """Train a model from a config; run under torchrun for many GPUs or nodes."""
    from helix4d.train import load_config, train

    train(load_config(config, {"out": out, "device": device}), resume=resume)


model_app = typer.Typer(help="Create and inspect model folders.", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("init")
def model_init(
    out: Path = typer.Option(..., "--out", "-o", help="New model folder to write (must not exist or be empty)."),
    preset: str = typer.Option("tiny", "--preset", help="Model size: 'tiny' (tests) or 'demo' (the shipped size)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random initialisation."),
) -> None:
    """Write a randomly initialised model folder: the starting point for training from scratch."""
    from helix4d.pipeline.config import preset as get_preset
    from helix4d.pipeline.folder import init_model_folder

    init_model_folder(get_preset(preset), out, seed=seed)
    typer.echo(f"wrote a random '{preset}' model to {out}")


@model_app.command("encode-latents")
def model_encode_latents(
    model: Path = typer.Option(..., "--model", help="Model folder whose trained VAEs encode the data."),
    data: Path = typer.Option(..., "--data", help="Dataset folder (from `helix4d data synth` or `data build`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the per-sequence latents."),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
    only: str = typer.Option(
        "ss,geometry,material",
        "--only",
        help="Stages to (re-)encode, e.g. 'material' after retraining that VAE; 'ss' into a new folder: stage-1-only "
        "latents (a ninth of the time).",
    ),
    stats: str = typer.Option(
        "auto",
        "--stats",
        help="Latent statistics: 'measure' them into the model's pipeline.json, 'keep' the model's, or 'auto': "
        "keep them once a flow was trained on them (continuing a trained model on new data), else measure.",
    ),
) -> None:
    """Pre-encode a dataset with the model's VAEs (flow training reads these) and store latent statistics."""
    from helix4d.pipeline.folder import read_pipeline_config
    from helix4d.train.latents import encode_dataset, measures_stats

    stages = tuple(s.strip() for s in only.split(",") if s.strip())
    encoded = encode_dataset(model, data, out, device, only=stages, stats=stats)
    measured = measures_stats(read_pipeline_config(model), stages, stats)
    said = f"stats written to {model / 'pipeline.json'}" if measured else "the model's latent statistics kept"
    typer.echo(f"encoded latents to {out}; {said} ({', '.join(encoded)})")


@app.command("generate")
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
    texture_size: int = typer.Option(
        TEXTURE_SIZE, "--texture-size", help="Baked texture side per frame; 0 = vertex colours (fast)."
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
    from helix4d.io.matting import MattingOptions
    from helix4d.pipeline.batch import batch_videos
    from helix4d.pipeline.options import GenerateOptions, SamplingOptions
    from helix4d.pipeline.run import generate, generate_batch

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


@app.command("matte")
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
    from helix4d.io.matting import MattingOptions
    from helix4d.pipeline.run import matte

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


@app.command("app")
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


convert_app = typer.Typer(help="Convert checkpoints of other projects into helix4d models.", no_args_is_help=True)
app.add_typer(convert_app, name="convert")


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


data_app = typer.Typer(
    help="Build 4D training datasets (O-Voxels + condition renders per frame).", no_args_is_help=True
)
app.add_typer(data_app, name="data")


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


@app.command("evaluate")
def evaluate_command(
    pred: Path = typer.Argument(
        ...,
        help="Predictions: a `helix4d generate` output, a folder of per-frame meshes, "
        "or a folder of such folders named after the ground-truth sequences.",
    ),
    gt: Path = typer.Argument(
        ..., help="Ground truth: a dataset sequence folder or dataset root, or per-frame meshes."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    protocol: str = typer.Option(
        "ours",
        "--protocol",
        help="'ours' (one alignment fitted on all frames) or 'actionbench' (the published ActionBench protocol).",
    ),
    no_align: bool = typer.Option(
        False, "--no-align", help="Compare the meshes as they are: no normalisation, no ICP."
    ),
    points: Optional[int] = typer.Option(
        None, "--points", help="Surface samples per frame (ours: 20000, actionbench: 100000)."
    ),
    images: bool = typer.Option(
        False,
        "--images",
        help="Also render the prediction from the input camera: "
        "silhouette IoU, PSNR, SSIM (dataset ground truth only).",
    ),
    clip: Optional[Path] = typer.Option(None, "--clip", help="Local transformers CLIP folder: adds CLIP similarity."),
    i3d: Optional[Path] = typer.Option(
        None, "--i3d", help="Local I3D TorchScript file (i3d_torchscript.pt): adds FVD."
    ),
    device: str = typer.Option("cpu", "--device", help="Device for ActionBench ICP and feature extractors."),
) -> None:
    """Score predicted 4D sequences against ground truth (CD-3D, CD-4D, F-score, normals, jitter, images)."""
    import json

    from helix4d.eval.evaluate import run_evaluation
    from helix4d.eval.protocols import make_protocol

    report = run_evaluation(
        pred,
        gt,
        make_protocol(protocol, not no_align, points, device),
        images=images,
        clip=clip,
        i3d=i3d,
        device=device,
    )
    typer.echo(json.dumps(report.to_json(), indent=1) if json_out else report.table())


def _evaluation_progress():
    """The transient progress bar of `eval budget` and `ablate`; its descriptions name sequences and variants,
    printed literally (never as markup)."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}", markup=False), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    return Progress(*columns, console=err_console, transient=True)


eval_app = typer.Typer(
    help="Measure model quality on held-out data (see also `helix4d evaluate`).", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")


@eval_app.command("budget")
def eval_budget_command(
    dataset: Path = typer.Argument(
        ..., help="Held-out dataset folder with ground truth (`helix4d data synth --seed ...`)."
    ),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder; default: the shipped demo model."),
    sequences: Optional[int] = typer.Option(None, "--sequences", help="Use the first N sequences (default: all)."),
    frames: Optional[int] = typer.Option(
        None,
        "--frames",
        help="Use the first F frames of each sequence (default: all); their images are framed over the whole "
        "sequence, as its ground truth is.",
    ),
    steps: int = typer.Option(12, "--steps", help="Sampling steps per stage."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (the same noise for every row)."),
    rows: str = typer.Option(
        "ceiling,vae,stages_2_3,temporal,cleaned,per_frame,video",
        "--rows",
        help="Comma-separated rows to compute (all by default).",
    ),
    points: Optional[int] = typer.Option(None, "--points", help="Surface samples per frame (default: the protocol's)."),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Also write the full report (per sequence, per kind) as JSON to this file."
    ),
    device: str = typer.Option("auto", "--device", help="'auto', 'cpu' or 'cuda'."),
) -> None:
    """The error budget: the format's ceiling, the VAEs' round trip, stages 2-3 on the true coarse structure and the
    full pipeline (temporal and per-frame), per phenomenon; protocol "ours". The stage adding most error is the
    next one to train."""
    from helix4d.eval.budget import run_budget
    from helix4d.eval.protocols import make_protocol

    chosen = [r.strip() for r in rows.split(",") if r.strip()]
    if json_out is not None:
        check_report_path(json_out, inputs=(dataset, model))
    with _evaluation_progress() as bar:
        task = bar.add_task("budget", total=None)
        report = run_budget(
            dataset,
            model,
            sequences,
            frames,
            steps,
            seed,
            device,
            make_protocol("ours", True, points),
            chosen,
            lambda what, done, total: bar.update(task, description=what, completed=done, total=total),
        )
    if json_out is not None:
        write_report(json_out, report.to_json(), inputs=(dataset, model))
    typer.echo(report.table())


@eval_app.command("fit")
def eval_fit_command(
    dataset: Path = typer.Argument(
        ..., help="Sequences to fit (e.g. 16: `helix4d data synth --seed 5000 --count 16 --views 1 ...`)."
    ),
    stage: str = typer.Option("ss", "--stage", help="'ss' (coarse structure), 'geometry' or 'material'."),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Model folder to copy and train; default: the shipped demo model (left unchanged)."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps on the sequences (default: 800)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Training batch (default: the stage's demo batch: ss 32, geometry 16, material 16)."
    ),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default: 4e-4, cosine to 1e-4)."),
    sampling_steps: Optional[int] = typer.Option(
        None, "--sampling-steps", help="Flow steps per frame when scoring (default: 12)."
    ),
    seed: int = typer.Option(0, "--seed", help="Training and sampling seed."),
    work: Optional[Path] = typer.Option(
        None, "--work", help="Keep the trained copy, its latents and the run here (a new folder; default: removed)."
    ),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Also write the report (per sequence, per kind, the loss curve) as JSON to this file."
    ),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
) -> None:
    """The fit check: train a copy of one stage briefly on DATASET and score it on those same sequences, per
    phenomenon. A design whose stage cannot fit 16 of its own training sequences will not learn from 720."""
    from helix4d.train.fit import FitSettings, format_fit, run_fit

    given = {"steps": steps, "batch_size": batch_size, "lr": lr, "sampling_steps": sampling_steps}
    settings = FitSettings(stage=stage, seed=seed, device=device, **{k: v for k, v in given.items() if v is not None})
    if json_out is not None:
        check_report_path(json_out, inputs=(dataset, model))
    if work is not None:
        check_output_dir(work, inputs=(dataset, model))
    with _evaluation_progress() as bar:
        task = bar.add_task("fit", total=None)
        report = run_fit(
            dataset,
            settings,
            model,
            work,
            lambda what, done, total: bar.update(task, description=what, completed=done, total=total),
        )
    if json_out is not None:
        write_report(json_out, report.to_dict(), inputs=(dataset, model))
    typer.echo(format_fit(report))


@app.command("ablate")
def ablate_command(
    dataset: Path = typer.Argument(
        ..., help="Dataset folder with ground truth (from `helix4d data synth` / `data build`)."
    ),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder; default: the shipped demo model."),
    sequences: Optional[int] = typer.Option(None, "--sequences", help="Use the first N sequences (default: all)."),
    frames: Optional[int] = typer.Option(
        None,
        "--frames",
        help="Use the first F frames of each sequence (default: all); their images are framed over the whole "
        "sequence, as its ground truth is.",
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps per stage (default: the model's)."),
    seed: int = typer.Option(0, "--seed", help="Seed shared by every variant, so all start from the same noise."),
    variants: str = typer.Option(
        "",
        "--variants",
        help="Comma-separated subset of full,no-anchor,no-rope4d,full-attention,per-frame (default: all).",
    ),
    protocol: str = typer.Option("ours", "--protocol", help="Metric protocol: 'ours' or 'actionbench' (see evaluate)."),
    no_align: bool = typer.Option(False, "--no-align", help="Score the meshes as generated: no normalisation, no ICP."),
    points: Optional[int] = typer.Option(None, "--points", help="Surface samples per frame (default: the protocol's)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (per-sequence rows and per-kind means) instead."),
    device: str = typer.Option("auto", "--device", help="'auto', 'cpu' or 'cuda'."),
) -> None:
    """The paper's ablations with one model: full method, no anchor, no 4D RoPE, full attention, per-frame."""
    import json

    from helix4d.eval.ablate import run_ablation, variants_by_name
    from helix4d.eval.protocols import make_protocol

    chosen = variants_by_name([v.strip() for v in variants.split(",") if v.strip()])
    with _evaluation_progress() as bar:
        task = bar.add_task("ablation", total=None)
        report = run_ablation(
            dataset,
            model,
            sequences,
            frames,
            steps,
            seed,
            device,
            make_protocol(protocol, not no_align, points, device),
            chosen,
            lambda what, done, total: bar.update(task, description=what, completed=done, total=total),
        )
    typer.echo(json.dumps(report.to_json(), indent=1) if json_out else report.table())


def main() -> None:
    """Console entry point: user mistakes become one line on stderr and exit code 2."""
    try:
        app()
    except Helix4DError as exc:
        err_console.print(labelled("error:", "bold red", str(exc)), highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
