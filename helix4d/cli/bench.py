"""`helix4d bench`: speed and memory benchmarks of the attention backends, the pipeline and TRELLIS.2's sizes."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from helix4d.cli.common import err_console, int_list
from helix4d.settings import WINDOW

bench_app = typer.Typer(help="Speed and memory benchmarks (print a table, or JSON with --json).", no_args_is_help=True)


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
        int_list(frames, "--frames") if frames else None,
        int_list(tokens, "--tokens") if tokens else None,
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
    steps: int = typer.Option(1, "--steps", min=1, help="Sampling steps per stage (models default to 12)."),
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

    from helix4d.bench.common import machine_info, resolve_devices
    from helix4d.bench.pipeline import pipeline_table, run_pipeline_benchmark
    from helix4d.bench.report import BenchReport

    devices, counts = resolve_devices(device), int_list(frames, "--frames")
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
    steps: int = typer.Option(1, "--steps", min=1, help="Sampling steps per stage (models default to 12)."),
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
        int_list(frames, "--frames"),
        steps,
        device,
        model,
        preset,
        int_list(resolutions, "--resolutions"),
        int_list(attention_frames, "--attention-frames"),
        int_list(attention_tokens, "--attention-tokens") if attention_tokens else None,
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
    report = run_gpu_bench(device, size, int_list(frames, "--frames"), steps or None, log)
    typer.echo(json.dumps(report.to_json(), indent=1) if as_json else gpu_tables(report))
