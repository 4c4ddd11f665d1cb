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


def main() -> None:
    """Console entry point: user mistakes become one line on stderr and exit code 2."""
    try:
        app()
    except Helix4DError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
