"""How many CPU threads a generation uses on a machine that others share.

PyTorch's intra-op pool runs one thread per core and meets at a barrier after every operation; when another process
holds one of those cores, the whole pool waits for the thread that is not scheduled. Measured on the split example
on 2 cores: 9.9 s alone, 36.6 s beside two busy processes with 2 threads, 23.0 s with 1. So a run takes as many
threads as there are idle cores when it starts (at least one), unless the user chose (OMP_NUM_THREADS).
"""

from __future__ import annotations

import os
import time

import cv2
import torch
from threadpoolctl import threadpool_limits

SAMPLE_S = 0.25
DEFAULT_THREADS = torch.get_num_threads()  # PyTorch's own choice for this machine, before any change
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100  # /proc/stat's unit, per second


def _cpu_times() -> list[int]:
    with open("/proc/stat") as f:
        fields = f.readline().split()  # "cpu user nice system idle iowait irq softirq steal ..."
    return [int(v) for v in fields[1:9]]


def _snapshot() -> tuple[float, list[int], float] | None:
    """(wall clock, /proc/stat's cpu line, this process's CPU seconds), or None where there is no /proc/stat."""
    try:
        return time.monotonic(), _cpu_times(), time.process_time()
    except OSError:
        return None


_window = _snapshot()  # the measurement window opens at import, so it covers this process's own start-up


def idle_cores(sample_s: float = SAMPLE_S) -> float | None:
    """Cores the other processes left idle since the last call (or this module's import), over at least `sample_s`
    seconds (sleeping the rest), from /proc/stat less this process's own CPU time: the start-up work between import
    and the call (the model, the video, the matte) counts as nobody's load and costs no extra wait. None where there
    is no /proc/stat."""
    global _window
    start = _window or _snapshot()
    if start is None:
        return None
    time.sleep(max(0.0, sample_s - (time.monotonic() - start[0])))
    _window = end = _snapshot()
    if end is None:
        return None
    total = sum(end[1]) - sum(start[1])
    idle = (end[1][3] + end[1][4]) - (start[1][3] + start[1][4])  # idle + iowait
    own = (end[2] - start[2]) * _TICKS  # this process's busy ticks are not another process's load
    cores = os.cpu_count() or 1
    if total <= 0:
        return float(cores)
    return min(float(cores), cores * (idle + min(own, total - idle)) / total)


def share_threads() -> int:
    """Set and return the thread count for this process (PyTorch's intra-op pool and `share_other_pools`): the
    user's choice when OMP_NUM_THREADS is set, else the idle cores now (rounded, at least 1, at most PyTorch's
    default for the machine)."""
    free = None if os.environ.get("OMP_NUM_THREADS", "").strip() else idle_cores()
    threads = torch.get_num_threads() if free is None else max(1, min(DEFAULT_THREADS, int(free + 0.5)))
    torch.set_num_threads(threads)
    share_other_pools(threads)
    return threads


def share_other_pools(threads: int) -> None:
    """Give OpenCV's pool (the matte clean-up, the camera measurement, the crop), the BLAS pools of numpy and scipy
    (the export's tracking solves) and Mesa llvmpipe's rasteriser (the preview, texture baking) the same share: each
    waits for its slowest thread as PyTorch's pool does, and by default takes every core (beside two busy processes
    the default export took 24 s with BLAS on 2 threads, 11 s on 1). llvmpipe reads LP_NUM_THREADS when the first
    OpenGL context is made, and a value the user set is kept."""
    cv2.setNumThreads(threads)
    threadpool_limits(threads, user_api="blas")
    os.environ.setdefault("LP_NUM_THREADS", str(threads))
