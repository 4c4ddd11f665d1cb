"""The thread share of a generation on a busy machine (helix4d.pipeline.threads)."""

from __future__ import annotations

import multiprocessing
import os

import cv2
import pytest
import threadpoolctl
import torch

from helix4d.pipeline import threads


def _spin(seconds: float) -> None:
    import time

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_idle_cores_sees_a_busy_process() -> None:
    if not os.path.exists("/proc/stat"):
        pytest.skip("needs /proc/stat")
    cores = os.cpu_count() or 1
    quiet = threads.idle_cores(0.2)
    assert quiet is not None and 0.0 <= quiet <= cores + 1e-6
    busy = multiprocessing.get_context("spawn").Process(target=_spin, args=(3.0,))
    busy.start()
    try:
        import time

        time.sleep(0.5)  # let the child start spinning
        loaded = threads.idle_cores(0.5)
    finally:
        busy.join()
    assert loaded is not None and loaded < quiet + 0.1 and loaded <= cores - 0.5


def test_idle_cores_does_not_count_this_process_as_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """One second on 2 cores (200 ticks): half of them busy, all with this process's own start-up work, leaves both
    cores to it; the same ticks spent by another process leave one."""
    ticks = threads._TICKS
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 2)
    for own_seconds, expected in ((1.0, 2.0), (0.0, 1.0)):
        clock = iter([0.0, 1.0, 1.0])  # the window opens, is checked for its length, closes
        stat = iter([[0, 0, 0, 0, 0, 0, 0, 0], [ticks, 0, 0, ticks, 0, 0, 0, 0]])  # user, ..., idle: 1 s each
        own = iter([0.0, own_seconds])
        monkeypatch.setattr(threads.time, "monotonic", lambda: next(clock))
        monkeypatch.setattr(threads, "_cpu_times", lambda: next(stat))
        monkeypatch.setattr(threads.time, "process_time", lambda: next(own))
        monkeypatch.setattr(threads, "_window", None)
        assert threads.idle_cores(0.0) == pytest.approx(expected)


def test_share_threads_follows_idle_cores_and_respects_omp_num_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before, before_cv2 = torch.get_num_threads(), cv2.getNumThreads()
    blas = threadpoolctl.ThreadpoolController()
    before_blas = blas.info()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.setenv("LP_NUM_THREADS", "")  # recorded, so that the value share_threads sets is undone
        monkeypatch.delenv("LP_NUM_THREADS")
        monkeypatch.setattr(threads, "DEFAULT_THREADS", 4)
        monkeypatch.setattr(threads, "idle_cores", lambda: 0.2)  # every core busy: still one thread
        assert threads.share_threads() == 1 == torch.get_num_threads() == cv2.getNumThreads()
        assert os.environ["LP_NUM_THREADS"] == "1"  # the preview's rasteriser takes the same share
        assert all(pool["num_threads"] == 1 for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas")
        monkeypatch.setattr(threads, "idle_cores", lambda: 2.6)
        assert threads.share_threads() == 3
        monkeypatch.setattr(threads, "idle_cores", lambda: 16.0)  # never more than the machine's default
        assert threads.share_threads() == 4
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's choice stands
        monkeypatch.setattr(threads, "idle_cores", lambda: 0.0)
        assert threads.share_threads() == 2 == torch.get_num_threads()
        assert cv2.getNumThreads() == 2
    finally:
        torch.set_num_threads(before)
        cv2.setNumThreads(before_cv2)
        for pool in before_blas:
            blas.select(filepath=pool["filepath"]).limit(limits=pool["num_threads"])
