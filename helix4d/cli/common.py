"""What the commands share: the console their messages go to, comma-separated number options, and the progress
bar of the long evaluations."""

from __future__ import annotations

from rich.console import Console

from helix4d.errors import InputError

err_console = Console(stderr=True)


def int_list(text: str, name: str) -> list[int]:
    """Parse '8,16' into [8, 16] (positive ints) or raise an InputError naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise InputError(f"{name} must be comma-separated positive integers such as 8,16 (got {text!r})")
    return values


def evaluation_progress():
    """The transient progress bar of `eval budget` and `ablate`; its descriptions name sequences and variants,
    printed literally (never as markup)."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}", markup=False), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    return Progress(*columns, console=err_console, transient=True)
