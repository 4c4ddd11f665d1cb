"""The `helix4d` command line: one typer app whose commands live one module per group (generate, train, data,
eval, bench) and import their work lazily, inside each command, so `--help` stays fast."""

from __future__ import annotations

import sys

import typer

from helix4d import __version__
from helix4d.cli import bench, data, eval, generate, train
from helix4d.cli.common import err_console
from helix4d.console import labelled
from helix4d.errors import Helix4DError

app = typer.Typer(
    name="helix4d",
    help="Helix4D: turn a video of an object into a 4D asset (one textured mesh per frame).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"helix4d {__version__} (shipped model: demo {__version__}; see CHANGELOG.md)")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Helix4D: video in, 4D asset out."""


# The command tree; `helix4d --help` lists the commands in this order, then the groups.
app.command("train")(train.train_command)
app.command("generate")(generate.generate_command)
app.command("matte")(generate.matte_command)
app.command("app")(generate.app_command)
app.command("evaluate")(eval.evaluate_command)  # also `helix4d eval evaluate`
app.command("ablate")(eval.ablate_command)  # also `helix4d eval ablate`
app.add_typer(bench.bench_app, name="bench")
app.add_typer(train.model_app, name="model")
app.add_typer(data.convert_app, name="convert")
app.add_typer(data.data_app, name="data")
app.add_typer(eval.eval_app, name="eval")


def main() -> None:
    """Console entry point: user mistakes become one line on stderr and exit code 2."""
    try:
        app()
    except Helix4DError as exc:
        err_console.print(labelled("error:", "bold red", str(exc)), highlight=False, soft_wrap=True)
        sys.exit(2)
