"""`helix4d bench gpu`: the full-size TRELLIS.2 architecture with random weights, stage by stage, on one GPU.

    helix4d bench gpu                           # TRELLIS.2's 512 models, F = 1 and 16, bf16 (designed: < 8 min, H100)
    helix4d bench gpu --device cpu --size tiny  # the same code on a small copy of the architecture: seconds, CI

Speed does not depend on the weights' values, so nothing is downloaded: every component is built at TRELLIS.2's size
(`helix4d.bench.cost.trellis2_size`) with random weights, in bf16; the decoders keep their norms in float32, as
TRELLIS.2 runs them in half precision (helix4d's converted pipeline holds its decoders in float32 today: the bench
measures what bf16 decoding costs, which is what the sparse-convolution backends are for). Parameters that start at
zero (adaLN-Zero gates, zeroed output layers, biases) are drawn small but non-zero, so that every block, and the
attention inside it, changes the output: otherwise any two attention backends would agree trivially.

The tokens are those of a typical TRELLIS.2 output (`helix4d.bench.cost.shell_voxels`: ~2.4 K latent tokens a
frame, ~6 × 10⁵ O-Voxels at 512³). Stage 1's occupancy is decoded and timed but not used: its random weights would
place arbitrary voxels. Both SC-VAE decoders are guided to the shell's voxels (as the texture decoder is guided by
the shape decoder in the pipeline), so their work does not depend on random subdivision logits.

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

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from helix4d.bench.cost import (
    TRELLIS2_SAMPLING,
    Trellis2Size,
    shell_voxels,
    trellis2_costs,
    trellis2_size,
)
from helix4d.bench.report import bench_images, machine_info, markdown_table
from helix4d.errors import BackendUnavailableError, InputError
from helix4d.models.flow import FlowTransformer
from helix4d.models.interfaces import DecoderOutput
from helix4d.nn.attention import BACKENDS as ATTENTION_BACKENDS
from helix4d.nn.blocks import FrameAttention
from helix4d.pipeline.sampler import SamplerConfig, sample
from helix4d.settings import WINDOW
from helix4d.sparse import SparseTensor
from helix4d.sparse.conv import conv_backend, resolve_conv_backend
from helix4d.sparse.ocnn_conv import ocnn_unavailable
from helix4d.trellis2.sc_vae import LayerNorm32, Trellis2SCVAEDecoder
from helix4d.trellis2.ss_vae import ChannelLayerNorm, Trellis2SSDecoder

DTYPE = torch.bfloat16
FLOW_STAGES = ("ss", "geometry", "material")
MEMORY_LABEL = "torch.cuda.max_memory_allocated during the call, resident weights included (tensors only)"


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


# ------------------------------------------------------------------------------------------------ the model
@dataclass
class Trellis2Components:
    """Every component of the TRELLIS.2 architecture at one size, random weights, on one device."""

    size: Trellis2Size
    image_encoder: nn.Module | None  # None without transformers: random condition tokens instead
    flows: dict[str, FlowTransformer]
    ss_decoder: Trellis2SSDecoder
    shape_decoder: Trellis2SCVAEDecoder
    texture_decoder: Trellis2SCVAEDecoder


def build_components(size: Trellis2Size, device: torch.device) -> Trellis2Components:
    with torch.device(device):
        flows = {stage: randomise_zeros(FlowTransformer(size.flows[stage])) for stage in FLOW_STAGES}
        parts = Trellis2Components(
            size=size,
            image_encoder=_dino(size),
            flows=flows,
            ss_decoder=Trellis2SSDecoder(size.ss_decoder),
            shape_decoder=randomise_zeros(Trellis2SCVAEDecoder(size.shape_decoder)),
            texture_decoder=randomise_zeros(Trellis2SCVAEDecoder(size.texture_decoder)),
        )
    for module in (parts.image_encoder, *flows.values(), parts.ss_decoder, parts.shape_decoder, parts.texture_decoder):
        if module is not None:
            module.to(DTYPE).eval().requires_grad_(False)
    for module in (parts.ss_decoder, parts.shape_decoder, parts.texture_decoder):
        for norm in module.modules():
            if isinstance(norm, (LayerNorm32, ChannelLayerNorm)):
                norm.float()  # TRELLIS' float32 norms: they compute in float32 whatever the rest
    return parts


def _dino(size: Trellis2Size) -> nn.Module | None:
    try:
        from transformers import DINOv3ViTConfig, DINOv3ViTModel
    except ImportError:
        return None
    from helix4d.trellis2.dino import DinoEncoder

    return DinoEncoder(DINOv3ViTModel(DINOv3ViTConfig(**size.dino)), size.image_size)


@torch.no_grad()
def randomise_zeros(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Draw every parameter that starts at exactly zero from N(0, std²) (see the module docstring)."""
    for p in module.parameters():
        if not bool(p.any()):
            p.normal_(0.0, std)
    return module


# ------------------------------------------------------------------------------------------------ the stages
class Velocity:
    """The sampler's velocity function for fixed tokens: the flow's prediction, unconditional = zero condition."""

    def __init__(
        self, flow: FlowTransformer, tokens: SparseTensor, cond: Tensor, extra: Tensor | None, attention: FrameAttention
    ) -> None:
        self.flow, self.tokens, self.cond, self.extra, self.attention = flow, tokens, cond, extra, attention

    def __call__(self, x: Tensor, t: float, conditioned: bool) -> Tensor:
        cond = self.cond if conditioned else torch.zeros_like(self.cond)
        tt = x.new_full((x.shape[0],), t)
        return self.flow(self.tokens.replace(x), tt, cond, self.attention, self.extra)  # (N, C)


def sample_clip(
    flow: FlowTransformer,
    coords: list[Tensor],
    cond: Tensor,
    sampler: SamplerConfig,
    extra: Tensor | None = None,
    backend: str = "loop",
    window: int = WINDOW,
) -> Tensor:
    """Latents (N, C) for the tokens at coords[f] (n_f, 3) of each frame, frames concatenated, as
    `Helix4DPipeline` samples a chunk: frame 0 alone through the static model, its clean latent once more to fill
    the anchor cache, then frames 1..F-1 together reading it. cond (F, L, C_cond); extra (N, C_extra) or None."""
    sizes = [len(c) for c in coords]
    noise = torch.randn(sum(sizes), flow.config.in_channels, device=cond.device)  # (N, C)
    given = list(extra.split(sizes)) if extra is not None else [None] * len(sizes)
    anchor = SparseTensor.from_frames(coords[:1], [noise[: sizes[0]]])
    first = sample(
        Velocity(flow, anchor, cond[:1], given[0], FrameAttention(window, backend=backend)), anchor.feats, sampler
    )  # (n_0, C)
    if len(coords) == 1:
        return first
    cache = flow.empty_anchor_cache()
    flow(
        anchor.replace(first),
        first.new_zeros(sizes[0]),
        cond[:1],
        FrameAttention(window, True, cache, backend=backend),
        given[0],
    )
    rest = SparseTensor.of_sequence(coords, noise).select_frames(list(range(1, len(coords))))
    attention = FrameAttention(window, True, cache, anchor_included=False, backend=backend)
    rest_extra = extra[sizes[0] :] if extra is not None else None
    others = sample(Velocity(flow, rest, cond[1:], rest_extra, attention), rest.feats, sampler, groups=sizes[1:])
    return torch.cat([first, others])  # (N, C)


@dataclass
class ClipTokens:
    """The voxels one bench clip works on: per frame stage 1's dense grid and the shell's latent voxels, and the
    shell's subdivision masks per decoder level (all frames)."""

    grid: list[Tensor]
    latent: list[Tensor]
    masks: list[Tensor]

    @classmethod
    def make(cls, size: Trellis2Size, frames: int, device: torch.device) -> ClipTokens:
        r = size.ss_decoder.latent_resolution
        grid = torch.stack(torch.meshgrid(*(torch.arange(r, device=device),) * 3, indexing="ij"), -1).reshape(-1, 3)
        latent, masks = shell_voxels(size.resolution, size.levels, frames, device=device)
        return cls([grid] * frames, latent, masks)


def decode_clip(
    parts: Trellis2Components, tokens: ClipTokens, geometry: Tensor, material: Tensor
) -> tuple[DecoderOutput, DecoderOutput]:
    """Both SC-VAE decoders on the shell's voxels (guided by its subdivision masks)."""
    guide = DecoderOutput(SparseTensor.of_sequence(tokens.latent, geometry), [m.float() * 2 - 1 for m in tokens.masks])
    shape = parts.shape_decoder.decode(SparseTensor.of_sequence(tokens.latent, geometry), guide=guide)
    texture = parts.texture_decoder.decode(SparseTensor.of_sequence(tokens.latent, material), guide=guide)
    return shape, texture


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


def _out_of_memory(device: torch.device) -> str:
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
                    rows.append(AttentionRow(stage, frames, backend, None, None, None, _out_of_memory(self.device)))
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
                rows.append(ConvRow(frames, backend, None, None, None, None, None, _out_of_memory(self.device)))
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
            report.stages.append(StageRow("all", f, 0.0, None, None, 0.0, _out_of_memory(dev)))
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
