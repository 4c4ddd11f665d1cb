"""How each of `helix4d bench gpu`'s three tables is measured: a row type per table, a stopwatch that waits for the
device, and `GpuBench`, which times the stages, the attention backends and the sparse convolutions on one set of
components (`helix4d.bench.gpu_model`). Every measured call follows a warm-up of the same shapes, so compilation and
autotuning stay out of the numbers; running out of memory becomes a row's status instead of ending the run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor

from helix4d.bench.common import bench_images
from helix4d.bench.cost import trellis2_costs
from helix4d.bench.gpu_model import (
    DTYPE,
    FLOW_STAGES,
    ClipTokens,
    Trellis2Components,
    Velocity,
    decode_clip,
    sample_clip,
)
from helix4d.bench.workload import TRELLIS2_SAMPLING
from helix4d.nn.attention import BACKENDS as ATTENTION_BACKENDS
from helix4d.nn.blocks import FrameAttention
from helix4d.pipeline.sampler import SamplerConfig
from helix4d.settings import WINDOW
from helix4d.sparse import SparseTensor
from helix4d.sparse.conv import conv_backend, resolve_conv_backend
from helix4d.sparse.ocnn_conv import ocnn_unavailable


@dataclass
class StageRow:
    stage: str
    frames: int
    tokens_per_frame: float
    seconds: float | None
    peak_gib: float | None
    tflop: float  # the cost model's count for this work (helix4d.bench.cost)
    status: str = "ok"  # "ok", "out of memory" or why it did not run

    @property
    def achieved_tflops(self) -> float | None:
        return self.tflop / self.seconds if self.seconds else None


@dataclass
class AttentionRow:
    stage: str
    frames: int
    backend: str
    ms_per_step: float | None  # one CFG step: the conditional and the unconditional pass
    peak_gib: float | None
    max_rel_diff: float | None  # vs "dense"
    status: str = "ok"


@dataclass
class ConvRow:
    frames: int
    backend: str
    seconds: float | None
    peak_gib: float | None
    max_rel_diff: float | None  # decoded features vs the reference
    subdivision_flips: int | None  # shape-decoder children kept by one backend and not the other
    subdivision_total: int | None
    status: str = "ok"


class Stopwatch:
    """Seconds and peak accelerator memory of calls on one device (peak: None on a CPU)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def measure(self) -> Iterator[dict[str, float | None]]:
        out: dict[str, float | None] = {"seconds": None, "peak_gib": None}
        self._sync()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        start = time.perf_counter()
        yield out
        self._sync()
        out["seconds"] = time.perf_counter() - start
        if self.device.type == "cuda":
            out["peak_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30


def out_of_memory(device: torch.device) -> str:
    """A row's status after running out of memory; the allocator's cache is emptied so the next row starts clean."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return "out of memory"


# ------------------------------------------------------------------------------------------------ the bench
class GpuBench:
    """One bench run: the components, the device, the samplers, and the rows measured so far."""

    def __init__(
        self, parts: Trellis2Components, device: torch.device, steps: int | None, log: Callable[[str], None]
    ) -> None:
        self.parts, self.device, self.log = parts, device, log
        self.clock = Stopwatch(device)
        self.samplers = {
            s: TRELLIS2_SAMPLING[s] if steps is None else dataclasses.replace(TRELLIS2_SAMPLING[s], steps=steps)
            for s in FLOW_STAGES
        }
        self.steps = steps

    def condition(self, frames: int) -> Tensor:
        """(F, L, C) condition tokens of F bench images (random ones without an image encoder)."""
        size = self.parts.size
        if self.parts.image_encoder is None:
            return torch.randn(frames, size.cond_tokens, size.dino["hidden_size"], device=self.device, dtype=DTYPE)
        images = torch.from_numpy(bench_images(frames, size.image_size)).to(self.device)
        return self.parts.image_encoder(images)

    def run_stages(
        self, tokens: ClipTokens, cond_frames: int, samplers: dict[str, SamplerConfig], timed: dict[str, dict] | None
    ) -> tuple[Tensor, Tensor]:
        """Every stage once (timed into `timed` when given); returns the geometry and material latents."""
        p, clock = self.parts, self.clock

        @contextmanager
        def stage(name: str) -> Iterator[None]:
            if timed is None:
                yield
                return
            with clock.measure() as m:
                yield
            timed[name] = m

        with stage("encode_images"):
            cond = self.condition(cond_frames)  # (F, L, C)
        with stage("ss"):
            latent = sample_clip(p.flows["ss"], tokens.grid, cond, samplers["ss"])  # (F·r³, 8)
        with stage("ss_decode"):
            r = p.size.ss_decoder.latent_resolution
            dense = SparseTensor.from_frames(tokens.grid, list(latent.split(r**3))).to_dense((r, r, r))
            occupied = p.ss_decoder.decode(dense.to(DTYPE))[:, 0] > 0  # (F, R, R, R), as the pipeline thresholds it
            occupied.sum().item()
        with stage("geometry"):
            geometry = sample_clip(p.flows["geometry"], tokens.latent, cond, samplers["geometry"])  # (N, 32)
        with stage("material"):
            material = sample_clip(p.flows["material"], tokens.latent, cond, samplers["material"], extra=geometry)
        with stage("decode"):
            decode_clip(p, tokens, geometry, material)
        return geometry, material

    def stage_rows(self, frames: int) -> tuple[list[StageRow], ClipTokens, Tensor, Tensor]:
        tokens = ClipTokens.make(self.parts.size, frames, self.device)
        warm = {s: dataclasses.replace(c, steps=1) for s, c in self.samplers.items()}
        self.run_stages(tokens, frames, warm, None)  # compile, autotune, allocate
        timed: dict[str, dict] = {}
        torch.manual_seed(0)
        geometry, material = self.run_stages(tokens, frames, self.samplers, timed)
        conv = resolve_conv_backend(self.device)
        costs = {c.stage: c for c in trellis2_costs(frames, conv, self.parts.size, self.steps)}
        rows = []
        for name, m in timed.items():
            c = costs[name]
            rows.append(
                StageRow(name, frames, round(c.tokens_per_frame, 1), m["seconds"], m["peak_gib"], c.flops / 1e12)
            )
            self.log(f"F={frames} {name}: {m['seconds']:.2f} s")
        return rows, tokens, geometry, material

    def attention_rows(self, frames: int) -> list[AttentionRow]:
        """One CFG step of each flow over frames 1..F-1 (anchor cached) per attention backend, against "dense"."""
        if frames < 2:  # windows and anchors need frames beyond the anchor
            return [
                AttentionRow(s, frames, b, None, None, None, "needs 2 or more frames")
                for s in FLOW_STAGES
                for b in ATTENTION_BACKENDS
            ]
        tokens, cond, rows = ClipTokens.make(self.parts.size, frames, self.device), self.condition(frames), []
        for stage in FLOW_STAGES:
            flow = self.parts.flows[stage]
            coords = tokens.grid if stage == "ss" else tokens.latent
            sizes = [len(c) for c in coords]
            torch.manual_seed(1)
            x = SparseTensor.of_sequence(coords, torch.randn(sum(sizes), flow.config.in_channels, device=self.device))
            extra = (
                torch.randn(sum(sizes), flow.config.extra_channels, device=self.device) if stage == "material" else None
            )
            cache = flow.empty_anchor_cache()
            flow(
                x.select_frames([0]),
                torch.zeros(sizes[0], device=self.device),
                cond[:1],
                FrameAttention(WINDOW, True, cache),
                extra[: sizes[0]] if extra is not None else None,
            )
            rest = x.select_frames(list(range(1, frames)))
            reference: Tensor | None = None
            for backend in ("dense", *(b for b in ATTENTION_BACKENDS if b != "dense")):
                if backend == "flex" and self.device.type != "cuda":
                    rows.append(AttentionRow(stage, frames, backend, None, None, None, "unavailable: needs CUDA"))
                    continue
                attention = FrameAttention(WINDOW, True, cache, anchor_included=False, backend=backend)
                velocity = Velocity(flow, rest, cond[1:], extra[sizes[0] :] if extra is not None else None, attention)
                try:
                    velocity(rest.feats, 0.5, True)  # warm-up (FlexAttention compiles here)
                    with self.clock.measure() as m:
                        v = velocity(rest.feats, 0.5, True)
                        velocity(rest.feats, 0.5, False)
                except torch.OutOfMemoryError:
                    rows.append(AttentionRow(stage, frames, backend, None, None, None, out_of_memory(self.device)))
                    continue
                v = v.float()
                reference = v if backend == "dense" else reference
                diff = None if reference is None else float((v - reference).abs().max() / reference.abs().max())
                rows.append(AttentionRow(stage, frames, backend, m["seconds"] * 1e3, m["peak_gib"], diff))
                self.log(f"attention {stage} {backend}: {m['seconds'] * 1e3:.0f} ms per CFG step")
        return rows

    def conv_rows(self, frames: int, tokens: ClipTokens, geometry: Tensor, material: Tensor) -> list[ConvRow]:
        """The decode stage with each sparse-convolution backend, against the reference."""
        rows, reference = [], None
        for backend in ("reference", "ocnn"):
            why_not = ocnn_unavailable() if self.device.type == "cuda" else "needs a CUDA/ROCm GPU"
            if backend == "ocnn" and why_not:
                rows.append(ConvRow(frames, backend, None, None, None, None, None, f"unavailable: {why_not}"))
                continue
            try:
                with conv_backend(backend):
                    decode_clip(self.parts, tokens, geometry, material)  # warm-up (ocnn autotunes here)
                    with self.clock.measure() as m:
                        shape, texture = decode_clip(self.parts, tokens, geometry, material)
            except torch.OutOfMemoryError:
                rows.append(ConvRow(frames, backend, None, None, None, None, None, out_of_memory(self.device)))
                continue
            keeps = [logits > 0 for logits in shape.exists_logits]
            out = torch.cat([shape.voxels.feats.float(), texture.voxels.feats.float()], 1)  # (N, 7 + 6)
            if reference is None and backend == "reference":
                reference = (out, keeps)
            diff, flips, total = None, None, sum(k.numel() for k in keeps)
            if reference is not None:
                diff = float((out - reference[0]).abs().max() / reference[0].abs().max())
                flips = sum(int((a != b).sum()) for a, b in zip(keeps, reference[1]))
            rows.append(ConvRow(frames, backend, m["seconds"], m["peak_gib"], diff, flips, total))
            self.log(f"decode F={frames} {backend}: {m['seconds']:.2f} s")
        return rows
