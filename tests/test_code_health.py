"""Habits the code keeps, checked with the tests so CI enforces them: ruff's lint and format, mypy's type check of
the core packages (pyproject.toml's `[tool.mypy]`), and the import layers of docs/design.md §9 (pyproject.toml's
import-linter contracts: nothing imports upward, no circles)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["helix4d", "tests", "scripts"]
BIN = Path(sys.executable).parent


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)


@pytest.mark.parametrize("command", [("check",), ("format", "--check")], ids=["lint", "format"])
def test_ruff_is_clean(command: tuple[str, ...]) -> None:
    result = _run(BIN / "ruff", *command, *SOURCES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow  # the first run reads torch's types (about a minute on 2 cores); later runs use .mypy_cache
def test_types_check() -> None:
    result = _run(BIN / "mypy")
    assert result.returncode == 0, result.stdout[-3000:]


def test_import_layers_hold() -> None:
    result = _run(BIN / "lint-imports")
    assert result.returncode == 0, result.stdout[-3000:]


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    """The contract is live: the same tree with one upward import (sparse -> pipeline) fails it."""
    shutil.copytree(ROOT / "helix4d", tmp_path / "helix4d", ignore=shutil.ignore_patterns("weights", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    with (tmp_path / "helix4d" / "sparse" / "tensor.py").open("a") as f:
        f.write("\nfrom helix4d.pipeline import config as _upward  # noqa: E402\n")
    result = _run(BIN / "lint-imports", cwd=tmp_path)
    assert result.returncode != 0
    assert "helix4d.sparse is not allowed to import helix4d.pipeline" in result.stdout
