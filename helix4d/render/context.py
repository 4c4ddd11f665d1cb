"""The process-wide headless OpenGL context (EGL): Mesa llvmpipe on CPU machines, the NVIDIA driver on GPUs.

Creating a context costs ~0.3 s, so every `Renderer` in a process shares one. A process forked after its parent
made the context cannot render (Mesa's EGL hangs when the child makes a new context): such a child gets a clear
error instead; start render workers with multiprocessing's "spawn" method.
"""

from __future__ import annotations

import os
from typing import Any

from helix4d.errors import BackendUnavailableError

EGL_INSTALL_HINT = "apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri"

_context: Any = None
_owner_pid: int | None = None


def gl_context() -> Any:
    """The process's shared `moderngl.Context` (OpenGL >= 3.3 core), created on first use."""
    global _context, _owner_pid
    if _context is not None and _owner_pid != os.getpid():
        raise BackendUnavailableError(
            "this process was forked after its parent created the OpenGL context, and EGL does not survive fork: "
            "start rendering workers with multiprocessing.get_context('spawn')."
        )
    if _context is None:
        try:
            import moderngl
        except ImportError as exc:
            raise BackendUnavailableError(
                "rendering needs the `moderngl` package: pip install moderngl"
            ) from exc
        try:
            _context = moderngl.create_standalone_context(backend="egl", require=330)
            _owner_pid = os.getpid()
        except Exception as exc:  # moderngl/glcontext raise plain Exceptions for a missing libEGL or driver
            raise BackendUnavailableError(
                f"headless OpenGL (EGL) is unavailable ({exc}). Install the system libraries: {EGL_INSTALL_HINT}"
            ) from exc
    return _context
