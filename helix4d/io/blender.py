"""Blender (`bpy`, the optional extra `helix4d[blender]`) as this project runs it: always in a child process, for
the asset importer and Cycles renderer of the training data and for the FBX writer of the export alike.

Why a child process: bpy is neither fork- nor thread-safe, keeps global state between files and can crash on a bad
one; a child turns all of that into an ordinary error for that one job. This module holds what every such job
shares: whether bpy is importable, how long a job may take, and the one line of its failure a user is shown.
"""

from __future__ import annotations

import importlib.util

from helix4d.errors import BackendUnavailableError

TIMEOUT_S = 600.0
INSTALL_HINT = "pip install 'helix4d[blender]' (Blender as a Python module, bpy; Python 3.11 only)"


def require_bpy(purpose: str = "this") -> None:
    """Raise `BackendUnavailableError` naming the extra unless Blender's Python module can be imported here (checked
    before any compute); `purpose` says what needed it."""
    if importlib.util.find_spec("bpy") is None:
        raise BackendUnavailableError(f"{purpose} needs Blender: {INSTALL_HINT}")


def last_error(stderr: str, returncode: int) -> str:
    """The line of a failed Blender child's stderr a user is shown: its last one, or the signal that killed it."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    tail = lines[-1] if lines else "no error message"
    return tail if returncode >= 0 else f"Blender crashed (signal {-returncode}); {tail}"
