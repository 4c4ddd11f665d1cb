"""`helix4d bench`: the speed and memory report (pipeline stages, frame-count scaling, O-Voxel resolutions, and
the attention backends of `helix4d.bench.attention`), on the CPU and, where CUDA exists, the GPU.

The pipeline rows, and the peak memory they report, are `helix4d.bench.pipeline`'s.

O-Voxel rows reuse `helix4d.bench.ovoxel` (its ~100k-face mesh and its fresh-process measurement). Its
measurement reads `ru_maxrss`, so it is launched from a small intermediate process (not from this one, which
holds torch and the attention tensors).
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from helix4d.bench import ovoxel as ovoxel_bench
from helix4d.bench.common import machine_info, markdown_table, resolve_devices
from helix4d.bench.pipeline import PipelineBenchRow, pipeline_table, run_pipeline_benchmark, scaling


@dataclass
class OVoxelBenchRow:
    resolution: int
    direction: str  # "mesh->ovoxel" | "ovoxel->mesh"
    seconds: float
    peak_mib: float  # RSS growth over the RSS right before the call, fresh process (helix4d.bench.ovoxel)
    result: str


@dataclass
class BenchReport:
    machine: dict[str, Any]
    settings: dict[str, Any]
    pipeline: list[PipelineBenchRow] = field(default_factory=list)
    ovoxel: list[OVoxelBenchRow] = field(default_factory=list)
    ovoxel_note: str = ""
    attention: list[Any] = field(default_factory=list)  # helix4d.bench.attention.AttentionBenchRow

    def to_json(self) -> dict[str, Any]:
        pipeline = [{**asdict(r), "seconds_per_frame": r.seconds_per_frame, "fps": r.fps} for r in self.pipeline]
        out: dict[str, Any] = {
            "machine": self.machine,
            "settings": self.settings,
            "pipeline": pipeline,
            "scaling": scaling(self.pipeline),
        }
        if self.ovoxel or self.ovoxel_note:
            out["ovoxel"] = {"rows": [asdict(r) for r in self.ovoxel], "note": self.ovoxel_note}
        if self.attention:
            out["attention"] = [asdict(r) for r in self.attention]
        return out


# ------------------------------------------------------------------------------------------------ O-Voxels


def run_ovoxel_benchmark(resolutions: list[int], repeat: int = 1) -> tuple[list[OVoxelBenchRow], str]:
    """Mesh -> O-Voxel and back at each resolution on `helix4d.bench.ovoxel`'s mesh; (rows, note)."""
    mesh = ovoxel_bench.bench_mesh()
    rows = []
    launcher = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))  # small, so children inherit little
    with launcher, tempfile.TemporaryDirectory(prefix="helix4d-bench-") as tmp:
        mesh_path = str(Path(tmp) / "mesh.ply")
        mesh.export(mesh_path)
        for r in resolutions:
            out = str(Path(tmp) / f"r{r}.npz")
            for direction, job in (("mesh->ovoxel", "ovoxel_encode"), ("ovoxel->mesh", "ovoxel_decode")):
                seconds, peak, note = launcher.submit(ovoxel_bench.measure, job, mesh_path, r, out, repeat).result()
                rows.append(OVoxelBenchRow(r, direction, seconds, peak, note))
    note = (
        f"mesh: {len(mesh.faces):,} faces (helix4d.bench.ovoxel); fastest of {repeat}; peak MiB = RSS growth "
        "over the RSS right before the call, fresh process; chamfer in voxels (/R)"
    )
    return rows, note


def ovoxel_table(rows: list[OVoxelBenchRow], note: str) -> str:
    body = [[str(r.resolution), r.direction, f"{r.seconds:.3f}", f"{r.peak_mib:.0f}", r.result] for r in rows]
    table = markdown_table(["R", "direction", "seconds", "peak MiB", "result"], body) if rows else ""
    return "\n".join(p for p in ("O-Voxel conversion by resolution (CPU)", note, table) if p)


def header(machine: dict[str, Any], settings: dict[str, Any]) -> str:
    return (
        "machine: "
        + ", ".join(f"{k} {v}" for k, v in machine.items())
        + "\nsettings: "
        + ", ".join(f"{k} {v}" for k, v in settings.items())
    )


# ------------------------------------------------------------------------------------------------ the full report


def run_report(
    frames: list[int],
    steps: int = 1,
    device: str = "auto",
    model: str | Path | None = None,
    preset: str = "tiny",
    resolutions: list[int] = (32, 64),
    attention_frames: list[int] = (8,),
    attention_tokens: list[int] | None = None,
    threads: int | None = None,
    repeat: int = 1,
    on_row: Callable[[PipelineBenchRow], None] | None = None,
) -> BenchReport:
    """Everything `helix4d bench all` prints: attention backends and the pipeline per device, O-Voxels on the CPU."""
    import torch

    from helix4d.bench.attention import run_attention_benchmark

    devices = resolve_devices(device)
    if threads:
        torch.set_num_threads(threads)  # the attention rows run in this process
    settings = {
        "devices": ",".join(devices),
        "model": str(model) if model else f"random '{preset}' preset",
        "steps": steps,
        "frames": ",".join(map(str, frames)),
        "repeat": repeat,
        "resolutions": ",".join(map(str, resolutions)),
    }
    report = BenchReport(machine_info(), settings)
    for dev in devices:
        report.attention += run_attention_benchmark(dev, list(attention_frames), attention_tokens)
    report.pipeline = run_pipeline_benchmark(frames, steps, devices, model, preset, 0, threads, repeat, on_row)
    report.ovoxel, report.ovoxel_note = run_ovoxel_benchmark(list(resolutions), repeat)
    return report


def print_report(report: BenchReport) -> None:
    """The whole report on stdout: attention tables (rich), then the pipeline and O-Voxel tables (markdown)."""
    from helix4d.bench.attention import print_attention_table

    print(header(report.machine, report.settings))
    for dev in dict.fromkeys(r.device for r in report.attention):
        print_attention_table([r for r in report.attention if r.device == dev])
    print()
    print(pipeline_table(report.pipeline))
    print()
    print(ovoxel_table(report.ovoxel, report.ovoxel_note))
