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

SAMPLE_S = 0.25
DEFAULT_THREADS = torch.get_num_threads()  # PyTorch's own choice for this machine, before any change


def idle_cores(sample_s: float = SAMPLE_S) -> float | None:
    """Cores idle over the next `sample_s` seconds, from /proc/stat (None where there is no /proc/stat)."""
    try:
        first = _cpu_times()
        time.sleep(sample_s)
        second = _cpu_times()
    except OSError:
        return None
    total = sum(second) - sum(first)
    idle = (second[3] + second[4]) - (first[3] + first[4])  # idle + iowait
    cores = os.cpu_count() or 1
    return cores * idle / total if total > 0 else float(cores)


def _cpu_times() -> list[int]:
    with open("/proc/stat") as f:
        fields = f.readline().split()  # "cpu user nice system idle iowait irq softirq steal ..."
    return [int(v) for v in fields[1:9]]


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
    """Give OpenCV's pool (the matte clean-up, the camera measurement, the crop) and Mesa llvmpipe's rasteriser
    (the preview, texture baking) the same share: both wait for their slowest thread as PyTorch's pool does, and
    by default they take every core. llvmpipe reads LP_NUM_THREADS when the first OpenGL context is made, and a
    value the user set is kept."""
    cv2.setNumThreads(threads)
    os.environ.setdefault("LP_NUM_THREADS", str(threads))
