"""`helix4d bench pipeline`: the whole pipeline's seconds per stage and peak memory for each frame count F, and how
its time scales with F.

Pipeline rows: `Helix4DPipeline.generate` on F synthetic condition images (a disc moving across the frames),
each (device, F) in a FRESH process (spawned), so nothing leaks from one row into the next, after a warm-up
generate of the same images with 1 step: steady state, as for a loaded model (a cold first call pays kernel
set-up per new tensor shape, seconds on a CPU). On a CPU shared with other busy processes, pass `--threads 1`:
torch's thread pool waits at every barrier for its preempted threads, which can slow small models 10-50x.
Per-stage seconds are the pipeline's own `metadata["seconds"]`; total is the wall time of the measured call
(CUDA-synchronised).

Peak memory, labelled in every table:
- CPU: the process's resident-set high-water mark during the measured call (`VmHWM` of /proc/self/status, reset
  just before the call through /proc/self/clear_refs), model and torch runtime included, and its growth over the
  RSS right before the call ("Δ gen": memory the allocator kept from the warm-up is not counted again, so this is
  a lower bound on the call's working set). Not `ru_maxrss`: Linux carries it across exec, so a spawned child
  would report at least its parent's RSS. tracemalloc cannot see torch's allocations.
- CUDA: `torch.cuda.max_memory_allocated` during the call (tensors only; the allocator's cache and the CUDA
  context are not counted), and its growth over the memory allocated before it.
"""

from __future__ import annotations

import multiprocessing as mp
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from helix4d.bench.common import bench_images, markdown_table
from helix4d.errors import InputError

STAGE_ORDER = ("encode_images", "ss", "geometry", "material", "decode", "meshing")
MEMORY_LABELS = {
    "cpu": "peak RSS during generate (VmHWM, fresh process per row: model + torch runtime included)",
    "cuda": "torch.cuda.max_memory_allocated during generate (tensors only)",
}


@dataclass
class PipelineBenchRow:
    """One (device, F) measurement. seconds: per stage; peak/delta MiB as described by `memory`."""

    device: str
    frames: int
    steps: int
    threads: int  # torch CPU threads
    voxels_per_frame: float  # mean O-Voxels per output frame (how much geometry the run produced)
    seconds: dict[str, float]
    total: float  # wall seconds
    cpu_seconds: float  # process CPU seconds, all threads (far below threads × total: the process was starved)
    peak_mib: float
    delta_mib: float
    memory: str

    @property
    def seconds_per_frame(self) -> float:
        return self.total / self.frames

    @property
    def fps(self) -> float:
        return self.frames / self.total


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _reset_peak_rss() -> None:
    """Set VmHWM to the current RSS (Linux >= 4.0); harmless where not allowed (the peak then also covers the warm-up:
    the same images with fewer steps)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: the process-wide maximum


def _pipeline_child(
    model: str, frames: int, steps: int, device: str, seed: int, threads: int | None, repeat: int
) -> dict:
    """Runs in a fresh process: load, warm up, then `repeat` measured generates of `frames` frames (the fastest
    is kept: robust to a busy machine); the peak covers all of them."""
    import torch

    from helix4d.pipeline.helix4d import Helix4DPipeline
    from helix4d.pipeline.options import SamplingOptions

    if threads:
        torch.set_num_threads(threads)
    pipe = Helix4DPipeline.from_pretrained(model, device=device)
    images = bench_images(frames, pipe.config.image_size)
    # warm-up: lazy imports, first-call kernels of these shapes
    pipe.generate(images, SamplingOptions(seed=seed, steps=1))
    cuda = pipe.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        _reset_peak_rss()
        before = _rss_mib()
    runs = []  # (wall s, process CPU s, asset)
    for _ in range(repeat):
        clock, cpu_clock = time.perf_counter(), time.process_time()
        asset = pipe.generate(images, SamplingOptions(seed=seed, steps=steps))
        if cuda:
            torch.cuda.synchronize()
        runs.append((time.perf_counter() - clock, time.process_time() - cpu_clock, asset))
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_rss_mib()
    total, cpu_seconds, asset = min(runs, key=lambda run: run[0])
    seconds = asset.metadata["seconds"]
    return {
        "device": pipe.device.type,
        "frames": frames,
        "steps": steps,
        "threads": torch.get_num_threads(),
        "voxels_per_frame": float(np.mean([len(v) for v in asset.ovoxels])),
        "seconds": {k: float(seconds[k]) for k in STAGE_ORDER if k in seconds},
        "total": total,
        "cpu_seconds": cpu_seconds,
        "peak_mib": peak,
        "delta_mib": max(0.0, peak - before),
        "memory": MEMORY_LABELS[pipe.device.type],
    }


def measure_pipeline(
    model: str | Path,
    frames: int,
    steps: int,
    device: str = "cpu",
    seed: int = 0,
    threads: int | None = None,
    repeat: int = 1,
) -> PipelineBenchRow:
    """One pipeline row, measured in a fresh spawned process (see the module docstring)."""
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        raw = pool.apply(_pipeline_child, (str(model), frames, steps, device, seed, threads, repeat))
    return PipelineBenchRow(**raw)


def run_pipeline_benchmark(
    frames: list[int],
    steps: int = 1,
    devices: list[str] = ("cpu",),
    model: str | Path | None = None,
    preset: str = "tiny",
    seed: int = 0,
    threads: int | None = None,
    repeat: int = 1,
    on_row: Callable[[PipelineBenchRow], None] | None = None,
) -> list[PipelineBenchRow]:
    """Rows for every device × frame count. Without `model`, a randomly initialised `preset` folder is timed
    (its outputs are noise, but a random model runs the same code on a comparable number of voxels)."""
    if not frames or min(frames) < 1:
        raise InputError(f"frame counts must be >= 1, got {frames}")
    if steps < 1 or repeat < 1:
        raise InputError(f"--steps and --repeat must be >= 1, got {steps} and {repeat}")
    with tempfile.TemporaryDirectory(prefix="helix4d-bench-") as tmp:
        if model is None:
            from helix4d.pipeline.config import preset as get_preset
            from helix4d.pipeline.folder import init_model_folder

            model = Path(tmp) / preset
            init_model_folder(get_preset(preset), model, seed=0)
        elif not (Path(model) / "pipeline.json").is_file():
            raise InputError(f"--model {model} is not a model folder (no pipeline.json)")
        rows = []
        for device in devices:
            for f in sorted(frames):
                row = measure_pipeline(model, f, steps, device, seed, threads, repeat)
                rows.append(row)
                if on_row:
                    on_row(row)
    return rows


def scaling(rows: list[PipelineBenchRow]) -> list[dict[str, float | str]]:
    """Per device, each frame count against the smallest: time ratio vs frame ratio ('× linear' = 1: linear)."""
    out = []
    for device in dict.fromkeys(r.device for r in rows):
        mine = sorted((r for r in rows if r.device == device), key=lambda r: r.frames)
        base = mine[0]
        for r in mine:
            time_ratio, frame_ratio = r.total / base.total, r.frames / base.frames
            out.append(
                {
                    "device": device,
                    "frames": r.frames,
                    "seconds_per_frame": r.seconds_per_frame,
                    "time_ratio": time_ratio,
                    "frame_ratio": frame_ratio,
                    "vs_linear": time_ratio / frame_ratio,
                }
            )
    return out


def pipeline_table(rows: list[PipelineBenchRow]) -> str:
    """Per-stage seconds, totals, throughput and memory per row, then the frame-count scaling per device."""
    parts = []
    for device in dict.fromkeys(r.device for r in rows):
        mine = [r for r in rows if r.device == device]
        stages = [s for s in STAGE_ORDER if any(s in r.seconds for r in mine)]
        headers = [
            "F",
            "steps",
            *[f"{s} s" for s in stages],
            "total s",
            "CPU s",
            "s/frame",
            "frames/s",
            "vox/frame",
            "peak MiB",
            "Δ gen MiB",
        ]
        body = [
            [
                str(r.frames),
                str(r.steps),
                *[f"{r.seconds.get(s, float('nan')):.3f}" for s in stages],
                f"{r.total:.3f}",
                f"{r.cpu_seconds:.3f}",
                f"{r.seconds_per_frame:.4f}",
                f"{r.fps:.2f}",
                f"{r.voxels_per_frame:.0f}",
                f"{r.peak_mib:.0f}",
                f"{r.delta_mib:.0f}",
            ]
            for r in mine
        ]
        parts += [
            f"pipeline on {device} ({mine[0].threads} torch threads; CPU s = process CPU time, all threads); "
            f"memory: {mine[0].memory}",
            markdown_table(headers, body),
            "",
        ]
        scale = [s for s in scaling(rows) if s["device"] == device]
        parts += [
            f"scaling with frame count on {device} (× linear = time ratio / frame ratio; 1.00 = linear)",
            markdown_table(
                ["F", "s/frame", "time ratio", "frame ratio", "× linear"],
                [
                    [
                        str(s["frames"]),
                        f"{s['seconds_per_frame']:.3f}",
                        f"{s['time_ratio']:.2f}",
                        f"{s['frame_ratio']:.2f}",
                        f"{s['vs_linear']:.2f}",
                    ]
                    for s in scale
                ],
            ),
            "",
        ]
    return "\n".join(parts).rstrip()
