"""What the benchmarks share: the machine a report names, the devices asked for, the synthetic condition images that
the pipeline rows and `helix4d bench gpu` run on, and the markdown table they print.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np

from helix4d.errors import BackendUnavailableError, InputError


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import torch

    info = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def resolve_devices(device: str) -> list[str]:
    """'auto' -> cpu (and cuda where available); 'cpu'; 'cuda' (an error without CUDA)."""
    import torch

    if device == "auto":
        return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda (got {device!r})")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("CUDA is not available here; run with --device cpu")
    return [device]


def bench_images(frames: int, size: int) -> np.ndarray:
    """(F, 4, S, S) float32 condition images: a shaded disc moving left to right, RGB over black + alpha."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size  # (S, S)
    out = np.zeros((frames, 4, size, size), np.float32)
    for f in range(frames):
        cx = 0.35 + 0.3 * f / max(frames - 1, 1)
        alpha = (((xx - cx) ** 2 + (yy - 0.5) ** 2) < 0.2**2).astype(np.float32)
        out[f, 0], out[f, 1], out[f, 2], out[f, 3] = 0.8 * alpha, yy * alpha, 0.3 * alpha, alpha
    return out


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
