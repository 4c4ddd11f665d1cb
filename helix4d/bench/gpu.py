"""`helix4d bench gpu`: the full-size TRELLIS.2 architecture with random weights, stage by stage, on one GPU.

    helix4d bench gpu                           # TRELLIS.2's 512 models, F = 1 and 16, bf16 (designed: < 8 min, H100)
    helix4d bench gpu --device cpu --size tiny  # the same code on a small copy of the architecture: seconds, CI

The model is TRELLIS.2's architecture with random weights, in bf16, on the tokens of a typical output
(`helix4d.bench.gpu_model`, whose docstring says why random weights suffice); `helix4d.bench.gpu_measure` times it.

Three tables, all measured:
1. stages: seconds and peak memory of each stage for every frame count, with the pipeline's defaults ("loop"
   attention, "auto" sparse convolution), TRELLIS.2's samplers (12 steps, CFG where its interval says), sampled
   as `Helix4DPipeline` samples a chunk (`sample_clip`). The cost model's TFLOP for the same work gives the
   achieved rate. Each frame count first runs every stage once with one step (compilation, autotuning).
2. attention: one CFG step (2 passes) of each flow at the largest frame count with each backend, and the largest
   difference of its velocity from "dense"'s (relative to the largest |v|).
3. sparse convolution: the decode stage with each backend at every frame count (after a warm-up decode of the
   same voxels), and the largest difference of the decoded features from the reference's (relative), plus how
   many of the shape decoder's subdivision decisions (logit > 0) would differ: what changes a mesh.

Peak memory: `torch.cuda.max_memory_allocated` during the measured call (tensors only; the resident weights, ~12
GB at full size, included). On a CPU it is not measured (shown as –): torch's CPU allocations are invisible to
Python's tracers and the process RSS would mix in every earlier stage.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from helix4d.bench.common import machine_info, markdown_table
from helix4d.bench.gpu_measure import AttentionRow, ConvRow, GpuBench, StageRow, out_of_memory
from helix4d.bench.gpu_model import DTYPE, build_components
from helix4d.bench.workload import trellis2_size
from helix4d.errors import BackendUnavailableError, InputError
from helix4d.settings import WINDOW
from helix4d.sparse.conv import resolve_conv_backend

MEMORY_LABEL = "torch.cuda.max_memory_allocated during the call, resident weights included (tensors only)"


@dataclass
class GpuBenchReport:
    machine: dict[str, Any]
    settings: dict[str, Any]
    stages: list[StageRow] = field(default_factory=list)
    attention: list[AttentionRow] = field(default_factory=list)
    sparse_conv: list[ConvRow] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        stages = [asdict(r) | {"achieved_tflops": r.achieved_tflops} for r in self.stages]
        return {
            "machine": self.machine,
            "settings": self.settings,
            "memory": MEMORY_LABEL,
            "stages": stages,
            "attention": [asdict(r) for r in self.attention],
            "sparse_conv": [asdict(r) for r in self.sparse_conv],
        }


def resolve_bench_device(device: str) -> torch.device:
    if device not in ("cpu", "cuda"):
        raise InputError(f"--device must be cuda or cpu, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError(
            "no CUDA/ROCm GPU here; on a CPU run `helix4d bench gpu --device cpu --size tiny`"
        )
    return torch.device(device)


@torch.no_grad()
def run_gpu_bench(
    device: str, size: str, frames: list[int], steps: int | None = None, log: Callable[[str], None] = print
) -> GpuBenchReport:
    """Build the architecture at `size` on `device` and measure the three tables (module docstring)."""
    dev, arch = resolve_bench_device(device), trellis2_size(size)
    if dev.type == "cpu" and size == "full":
        raise InputError("the full size needs a GPU (one flow pass is ~10 TFLOP); on a CPU use --size tiny")
    clock = time.perf_counter()
    parts = build_components(arch, dev)
    settings = {
        "size": size,
        "device": str(dev),
        "dtype": str(DTYPE).removeprefix("torch.") + " (decoder norms float32)",
        "frames": frames,
        "steps": steps or "TRELLIS.2's (12)",
        "window": WINDOW,
        "sparse_conv_default": resolve_conv_backend(dev),
        "image_encoder": "DINOv3 (random)" if parts.image_encoder is not None else "random tokens (no transformers)",
    }
    report = GpuBenchReport(machine_info(), settings)
    log(f"built the {size} architecture in {time.perf_counter() - clock:.1f} s")
    bench = GpuBench(parts, dev, steps, log)
    for f in sorted(set(frames)):
        try:
            rows, tokens, geometry, material = bench.stage_rows(f)
        except torch.OutOfMemoryError:
            report.stages.append(StageRow("all", f, 0.0, None, None, 0.0, out_of_memory(dev)))
            continue
        report.stages += rows
        report.sparse_conv += bench.conv_rows(f, tokens, geometry, material)
    report.attention = bench.attention_rows(max(frames))
    report.settings["seconds"] = round(time.perf_counter() - clock, 1)
    return report


# ------------------------------------------------------------------------------------------------ tables
def _num(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def gpu_tables(report: GpuBenchReport) -> str:
    s = report.settings
    head = (
        f"TRELLIS.2 architecture ({s['size']}), random weights, {s['dtype']}, {s['device']}"
        f" ({report.machine.get('gpu', report.machine['cpu'])}); steps {s['steps']}; window {s['window']};"
        f" image encoder: {s['image_encoder']}; {s.get('seconds', '?')} s in all\nmemory: {MEMORY_LABEL}"
    )
    stages = markdown_table(
        ["stage", "F", "tokens/frame", "s", "s/frame", "peak GiB", "TFLOP (model)", "TFLOP/s", "status"],
        [
            [
                r.stage,
                str(r.frames),
                f"{r.tokens_per_frame:g}",
                _num(r.seconds, ".2f"),
                _num(r.seconds / r.frames if r.seconds else None, ".3f"),
                _num(r.peak_gib, ".1f"),
                f"{r.tflop:.3g}",
                _num(r.achieved_tflops, ".3g"),
                r.status,
            ]
            for r in report.stages
        ],
    )
    totals = []
    for f in dict.fromkeys(r.frames for r in report.stages):
        timed = [r.seconds for r in report.stages if r.frames == f and r.seconds is not None]
        totals.append(f"F={f}: {sum(timed):.2f} s ({sum(timed) / f:.2f} s a frame)")
    attention = markdown_table(
        ["flow", "F", "backend", "ms / CFG step", "peak GiB", "max |Δv| / max |v| vs dense", "status"],
        [
            [
                r.stage,
                str(r.frames),
                r.backend,
                _num(r.ms_per_step, ".0f"),
                _num(r.peak_gib, ".1f"),
                _num(r.max_rel_diff, ".2e"),
                r.status,
            ]
            for r in report.attention
        ],
    )
    conv = markdown_table(
        ["F", "backend", "decode s", "peak GiB", "max |Δ| / max |ref|", "subdivisions differing", "status"],
        [
            [
                str(r.frames),
                r.backend,
                _num(r.seconds, ".2f"),
                _num(r.peak_gib, ".1f"),
                _num(r.max_rel_diff, ".2e"),
                "–" if r.subdivision_flips is None else f"{r.subdivision_flips} of {r.subdivision_total}",
                r.status,
            ]
            for r in report.sparse_conv
        ],
    )
    return "\n\n".join(
        [
            head,
            "Stages",
            stages,
            "Totals: " + "; ".join(totals),
            "Attention backends",
            attention,
            "Sparse convolution (decode stage)",
            conv,
        ]
    )
