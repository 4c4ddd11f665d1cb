"""The `helix4d` command line: one typer app, sub-commands imported lazily so `--help` stays fast."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from helix4d import __version__
from helix4d.errors import Helix4DError

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
    window: int = typer.Option(1, "--window", min=0, help="Window radius r in frames."),
    heads: int = typer.Option(16, "--heads", min=1, help="Attention heads."),
    head_dim: int = typer.Option(64, "--head-dim", min=1, help="Dimension per head."),
    repeats: int = typer.Option(0, "--repeats", min=0, help="Timed repeats per backend (0: cpu 3, cuda 10)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of rows instead of a table."),
) -> None:
    """Windowed anchored attention: ms, useful TFLOP/s, peak memory and error of each backend vs dense."""
    import json

    import torch

    from helix4d.errors import BackendUnavailableError, InputError
    from helix4d.nn.attention_bench import print_attention_table, rows_as_dicts, run_attention_benchmark

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


def main() -> None:
    """Console entry point: user mistakes become one line on stderr and exit code 2."""
    try:
        app()
    except Helix4DError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
