"""The process-wide headless OpenGL context (EGL): Mesa llvmpipe on CPU machines, the NVIDIA driver on GPUs.

Creating a context costs ~0.3 s, so every `Renderer` of a thread shares one. An OpenGL context is current in one
thread only, so each thread that renders gets its own (web servers run requests on varying threads); a Renderer
must be used in the thread that created it. A process forked after its parent
made the context cannot render (Mesa's EGL hangs when the child makes a new context): such a child gets a clear
error instead; start render workers with multiprocessing's "spawn" method.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from helix4d.errors import BackendUnavailableError

EGL_INSTALL_HINT = "apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri"

_local = threading.local()  # .context and .pid of this thread's context
_created_pid: int | None = None  # the process that created the first context


def gl_context() -> Any:
    """This thread's shared `moderngl.Context` (OpenGL >= 3.3 core), created on first use."""
    global _created_pid
    if _created_pid is not None and _created_pid != os.getpid():
        raise BackendUnavailableError(
            "this process was forked after its parent created the OpenGL context, and EGL does not survive fork: "
            "start rendering workers with multiprocessing.get_context('spawn')."
        )
    if getattr(_local, "context", None) is None:
        try:
            import moderngl
        except ImportError as exc:
            raise BackendUnavailableError("rendering needs the `moderngl` package: pip install moderngl") from exc
        try:
            _local.context = moderngl.create_standalone_context(backend="egl", require=330)
            _created_pid = os.getpid()
        except Exception as exc:  # moderngl/glcontext raise plain Exceptions for a missing libEGL or driver
            raise BackendUnavailableError(
                f"headless OpenGL (EGL) is unavailable ({exc}). Install the system libraries: {EGL_INSTALL_HINT}"
            ) from exc
    return _local.context
