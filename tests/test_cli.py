"""The CLI contract: version, help on every command (without importing torch), the old spellings of moved commands,
and one-line errors with exit code 2."""

import re
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from helix4d import __version__
from helix4d.cli import app, main
from helix4d.errors import Helix4DError

runner = CliRunner()


def _all_command_paths(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    import typer.main

    click_group = typer.main.get_command(group)
    paths = []

    def walk(cmd, path):
        paths.append(path)
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, path + (name,))

    walk(click_group, prefix)
    return paths


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output and f"demo {__version__}" in result.output


@pytest.mark.parametrize("path", _all_command_paths(app))
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_help_keeps_square_brackets() -> None:
    """rich reads `[alembic]` in a help text as markup and drops it: the install hints must print whole."""
    result = runner.invoke(app, ["generate", "--help"], env={"COLUMNS": "400"})
    assert "pip install 'helix4d[alembic]'" in result.output and "pip install 'helix4d[blender]'" in result.output
    import typer.main

    for path in _all_command_paths(app):
        command = typer.main.get_command(app)
        for name in path:
            command = command.commands[name]
        for text in [command.help or "", *(getattr(p, "help", None) or "" for p in command.params)]:
            assert not re.search(r"(?<!\\)\[[a-z]", text), f"{' '.join(path)}: unescaped [ in {text!r}"


def test_user_error_is_one_line_exit_2(monkeypatch, capsys) -> None:
    @app.command("_raise_for_test", hidden=True)
    def _raise() -> None:
        raise Helix4DError("the input is wrong; pass a real file")

    monkeypatch.setattr(sys, "argv", ["helix4d", "_raise_for_test"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "the input is wrong" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "helix4d", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and __version__ in out.stdout


def test_help_does_not_import_torch() -> None:
    """Every command imports its work inside itself, so `helix4d --help` answers without loading torch."""
    code = "\n".join(
        [
            "import runpy, sys",
            "try:",
            "    runpy.run_module('helix4d', run_name='__main__')",  # `python -m helix4d --help`
            "except SystemExit:",
            "    pass",
            "print('torch' in sys.modules)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


@pytest.mark.parametrize("name", ["evaluate", "ablate"])
def test_eval_commands_keep_their_top_level_spelling(name: str) -> None:
    """`helix4d eval evaluate` / `eval ablate` and the first spellings `helix4d evaluate` / `ablate` are one command."""
    eval_app = next(group.typer_instance for group in app.registered_groups if group.name == "eval")
    top, grouped = ({c.name: c.callback for c in t.registered_commands}[name] for t in (app, eval_app))
    assert top is grouped
    top_help, grouped_help = (runner.invoke(app, [*path, "--help"]).output for path in ([name], ["eval", name]))
    lines = lambda text: [line.rstrip() for line in text.replace(f"eval {name}", name).splitlines()]  # noqa: E731
    assert lines(top_help) == lines(grouped_help)
