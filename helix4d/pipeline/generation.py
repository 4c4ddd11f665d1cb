"""`Generation`: one generation in progress, the state the three stages and every chunk share.

`Helix4DPipeline.generate` makes one per call and runs it chunk by chunk; an architecture's own steps
(`helix4d.pipeline.architecture.Architecture.place_voxels`) receive it to sample a stage of their own (TRELLIS.2's
cascade). It holds the sampling settings, the seeded per-frame noise, the anchors a chunk hands to the next,
progress and timings.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from torch import Tensor

from helix4d.errors import GenerationError
from helix4d.models.flow import FlowTransformer
from helix4d.nn.attention import FrameAttention
from helix4d.ovoxel import OVoxel
from helix4d.pipeline.options import SamplingOptions
from helix4d.pipeline.sampler import SamplerConfig, sample
from helix4d.sparse import SparseTensor

if TYPE_CHECKING:  # the pipeline makes generations; a generation reads the pipeline's models and config
    from helix4d.pipeline.helix4d import Helix4DPipeline

STAGES = ("ss", "geometry", "material")
Progress = Callable[[str, int, int], None]  # (task description, completed, total)

NOISE_STREAMS = STAGES + ("geometry_lr",)  # the cascade's first geometry pass draws its own noise


def stage_seed(seed: int, stage: str, frame: int) -> int:
    """Noise of (stage, frame) comes from its own generator, so frame 0 does not depend on the clip length."""
    return (seed * 1_000_003 + NOISE_STREAMS.index(stage) * 10_007 + frame) % (2**63 - 1)


def frame_noise(coords_per_frame: list[Tensor], channels: int, seed: int, stage: str, first: int = 0) -> Tensor:
    """(N, C) standard normal noise, frame f drawn from generator `stage_seed(seed, stage, first + f)` (on the
    CPU); `first` is the clip's number of coords_per_frame[0], so a frame's noise does not depend on its chunk."""
    parts = [
        torch.randn(c.shape[0], channels, generator=torch.Generator().manual_seed(stage_seed(seed, stage, first + f)))
        for f, c in enumerate(coords_per_frame)
    ]
    return torch.cat(parts)


def require_finite(stage: str, x: Tensor) -> Tensor:
    """`x` unchanged, or a GenerationError: a NaN that reaches the next stage ends in an error nobody can read."""
    if not bool(torch.isfinite(x).all()):
        raise GenerationError(
            f"stage {stage} produced non-finite values (NaN or inf); the model folder's weights "
            "may be broken, or the guidance strength (cfg) too extreme for it"
        )
    return x


class Generation:
    """One generation: sampling settings, seed, progress and timings shared by the three stages and every chunk,
    and the anchors a chunk hands to the next (per noise stream, the clean latent of its last frame)."""

    def __init__(
        self,
        pipe: Helix4DPipeline,
        sampling: SamplingOptions,
        progress: Progress | None,
        frames: int,
        geometry: Tensor | None = None,
    ) -> None:
        """`sampling` checked; `frames` in the whole clip; `geometry` given geometry latents that replace stage 2
        (see `Helix4DPipeline.generate`). A `sampling.window` of None becomes the model folder's (pipeline.json)
        here, the one place generation fills it in, so every flow call names its window."""
        window = pipe.config.window if sampling.window is None else sampling.window
        self.sampling = dataclasses.replace(sampling, window=window)
        self.pipe, self.progress, self.device = pipe, progress, pipe.device
        self.frames, self.given_geometry = frames, geometry
        self.first = 0  # the clip's number of the current chunk's frame 0
        self.anchors: dict[str, Tensor] = {}  # stream -> (n_0, C) the current chunk's frame 0, clean (as sampled)
        self.last: dict[str, Tensor] = {}  # stream -> the current chunk's last frame, the next chunk's anchor
        self.counters: dict[str, StepCounter] = {}
        self.timings: dict[str, float] = {}

    def chunk(self, images: np.ndarray, first: int, coarse: list[Tensor] | None) -> tuple[list[OVoxel], list[Tensor]]:
        """O-Voxels and latent voxels of frames first..first+len(images)-1, the first of them the anchor (from
        the previous chunk when first > 0); `coarse` replaces stage 1 (see `Helix4DPipeline.generate`)."""
        pipe, self.first = self.pipe, first
        with self._timed("encode_images"):
            pixels = torch.from_numpy(images).to(self.device)  # (F, 4, S, S)
            with pipe.using("image_encoder"):
                cond = pipe.image_encoder(pixels)  # (F, L, C)
            cond_ss = cond
            if coarse is None and "ss_image_encoder" in pipe.components:
                with pipe.using("ss_image_encoder"):
                    cond_ss = pipe.components["ss_image_encoder"](pixels)  # (F, L, C) stage 1's own tokens
        with self._timed("ss"):
            if coarse is None:
                with pipe.using("ss_vae"):
                    coarse = self.sparse_structure(cond_ss)  # per frame (n_f, 3) coarse voxels
        with self._timed("geometry"):
            if self.given_geometry is None:
                coarse, geo_latent = self.geometry(cond, coarse)
            else:
                geo_latent = self.normalise("geometry", self.given_geometry.to(self.device))
        with self._timed("material"):
            mat_latent = self.material(cond, coarse, geo_latent)
        with self._timed("decode"):
            ovoxels = pipe.decode_latents(
                coarse,
                self.normalise("geometry", geo_latent, inverse=True),
                self.normalise("material", mat_latent, inverse=True),
            )
        self.anchors, self.last = self.last, {}
        return ovoxels, coarse

    @contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        """Seconds spent in the block, added to `timings[name]` (summed over chunks)."""
        clock = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - clock

    def counter(self, stream: str, steps: int) -> StepCounter:
        """The progress of one noise stream over the whole clip: `steps` per frame."""
        if stream not in self.counters:
            self.counters[stream] = StepCounter(self.progress, f"stage {stream}", steps * self.frames)
        return self.counters[stream]

    def sampler(self, stage: str) -> SamplerConfig:
        s = self.pipe.config.sampling[stage]
        steps, cfg = self.sampling.steps, self.sampling.cfg
        return dataclasses.replace(s, steps=steps or s.steps, cfg_strength=s.cfg_strength if cfg is None else cfg)

    def normalise(self, stage: str, z: Tensor, inverse: bool = False) -> Tensor:
        stats = self.pipe.config.latent_stats[stage]
        mean = torch.tensor(stats.mean, device=z.device, dtype=z.dtype)
        std = torch.tensor(stats.std, device=z.device, dtype=z.dtype)
        return z * std + mean if inverse else (z - mean) / std

    # ---------------------------------------------------------------- stages
    def sparse_structure(self, cond: Tensor) -> list[Tensor]:
        ss_vae = self.pipe.ss_vae
        r, frames = ss_vae.latent_resolution, cond.shape[0]
        grid = torch.stack(torch.meshgrid(*(torch.arange(r),) * 3, indexing="ij"), -1).reshape(-1, 3)
        coords = [grid] * frames
        latent = self.sample_stage("ss", "ss_flow", coords, cond)  # (F·r³, C)
        latent = self.normalise("ss", latent, inverse=True)
        dense = SparseTensor.from_frames(coords, list(latent.split(r**3))).to_dense((r, r, r))
        logits = require_finite("ss", ss_vae.decode(dense)[:, 0])  # (F, R, R, R)
        logits = self.pipe.architecture.coarse_logits(logits, self.pipe.config, self.pipe.geometry_vae.downsampling)
        occupied = []
        for f in range(frames):
            idx = (logits[f] > self.pipe.config.occupancy_threshold).nonzero()  # (n_f, 3)
            occupied.append(idx.cpu())
        if not any(len(idx) for idx in occupied):
            raise GenerationError(
                "stage ss produced no voxel in any frame, so there is nothing to mesh; the model "
                "folder may be untrained or broken, or the guidance strength (cfg) too extreme"
            )
        return occupied

    def geometry(self, cond: Tensor, coarse: list[Tensor]) -> tuple[list[Tensor], Tensor]:
        """The latent voxels per frame (as the architecture places them) and the geometry latent on them
        (normalised, as sampled)."""
        coarse = self.pipe.architecture.place_voxels(self, cond, coarse)
        return coarse, self.sample_stage("geometry", "geometry_flow", coarse, cond)  # (N, C), normalised

    def material(self, cond: Tensor, coarse: list[Tensor], geo_latent: Tensor) -> Tensor:
        """The material latent (N, C) on the latent voxels (normalised, as sampled), given the geometry latent."""
        return self.sample_stage("material", "material_flow", coarse, cond, extra=geo_latent)

    # ---------------------------------------------------------------- the shared sampling logic
    def sample_stage(
        self,
        stage: str,
        flow_name: str,
        coords: list[Tensor],
        cond: Tensor,
        extra: Tensor | None = None,
        stream: str | None = None,
    ) -> Tensor:
        """Latents (N, C) for tokens at coords[f] of each frame, frames concatenated in order; the flow is on the
        device only meanwhile when offloading. `stream` names the noise (default: the stage)."""
        with self.pipe.using(flow_name):
            flow = cast(FlowTransformer, self.pipe.components[flow_name])  # every architecture's flows are this class
            latent = self._sample(stage, flow, coords, cond, extra, stream or stage)
        return require_finite(stage, latent)

    def _sample(
        self, stage: str, flow: FlowTransformer, coords: list[Tensor], cond: Tensor, extra: Tensor | None, stream: str
    ) -> Tensor:
        """Frame 0 through the static model alone (the anchor; or as the previous chunk left it), then, in temporal
        mode, frames 1..F-1 jointly with the anchor's cached keys/values; in per-frame mode every frame as frame 0
        of its own clip."""
        config, frames, window = self.sampler(stage), len(coords), self.sampling.window
        noise = frame_noise(coords, flow.config.in_channels, self.sampling.seed, stream, self.first).to(self.device)
        sizes = [c.shape[0] for c in coords]
        rows = [slice(a, b) for a, b in itertools.pairwise(np.cumsum([0, *sizes]).tolist())]
        given = [extra[r] if extra is not None else None for r in rows]  # per frame
        steps = self.counter(stream, config.steps)

        def static(f: int) -> Tensor:
            tokens = SparseTensor.from_frames([coords[f].to(self.device)], [noise[rows[f]]])  # frame index 0
            attention = FrameAttention(window, anchor=self.sampling.anchor)
            velocity = _velocity(flow, tokens, cond[f : f + 1], given[f], attention)
            return sample(velocity, noise[rows[f]], config, on_step=lambda _: steps.advance(1))

        first = self.anchors[stream] if stream in self.anchors else static(0)
        if self.sampling.mode == "per-frame" or frames == 1:
            return self._hand_on(stream, torch.cat([first, *(static(f) for f in range(1, frames))]), rows[-1])
        tokens = SparseTensor.of_sequence(coords, noise)
        rest = tokens.select_frames(list(range(1, frames)))
        if self.sampling.anchor:
            cache = flow.empty_anchor_cache()
            anchor = SparseTensor.from_frames([coords[0].to(self.device)], [first])
            flow(anchor, first.new_zeros(first.shape[0]), cond[:1], FrameAttention(window, cache=cache), given[0])
            attention = FrameAttention(window, cache=cache, anchor_included=False)  # reads the filled cache
            rest_extra = extra[rows[1].start :] if extra is not None else None
            velocity = _velocity(flow, rest, cond[1:], rest_extra, attention)
        else:
            attention = FrameAttention(window, anchor=False)
            velocity = _velocity_without_anchor(flow, tokens, first, cond, extra, attention)
        others = sample(velocity, rest.feats, config, on_step=lambda _: steps.advance(frames - 1), groups=sizes[1:])
        return self._hand_on(stream, torch.cat([first, others]), rows[-1])

    def _hand_on(self, stream: str, latent: Tensor, last: slice) -> Tensor:
        """`latent` unchanged; its `last` rows (the chunk's last frame) kept as the next chunk's anchor."""
        self.last[stream] = latent[last]
        return latent


class StepCounter:
    """Sampling steps done of `total`, told to `progress` (when given) after each step."""

    def __init__(self, progress: Progress | None, description: str, total: int) -> None:
        self.progress, self.description, self.total, self.done = progress, description, total, 0

    def advance(self, n: int) -> None:
        self.done += n
        if self.progress:
            self.progress(self.description, self.done, self.total)


def _velocity(
    flow: FlowTransformer, tokens: SparseTensor, cond: Tensor, extra: Tensor | None, attention: FrameAttention
):
    """The sampler's velocity function for these tokens; unconditional = zero condition tokens."""
    uncond = torch.zeros_like(cond)

    def velocity(x: Tensor, t: float, conditioned: bool) -> Tensor:
        tt = x.new_full((x.shape[0],), t)
        return flow(tokens.replace(x), tt, cond if conditioned else uncond, attention, extra)

    return velocity


def _velocity_without_anchor(
    flow: FlowTransformer,
    tokens: SparseTensor,
    first: Tensor,
    cond: Tensor,
    extra: Tensor | None,
    attention: FrameAttention,
):
    """The "no anchor" ablation's velocity for frames 1..F-1 (`attention.anchor` False): the clean static frame 0
    (t = 0) stays in the array as an ordinary member of the sliding window (as in training, where the clip's first
    frame is clean), so it is seen only by frames within `attention.window` of it and, seeing them too, is
    recomputed at every step. The unconditional pass keeps frame 0's condition, as training never drops the first
    frame's."""
    n0 = first.shape[0]
    uncond = torch.cat([cond[:1], torch.zeros_like(cond[1:])])

    def velocity(x: Tensor, t: float, conditioned: bool) -> Tensor:
        tt = torch.cat([x.new_zeros(n0), x.new_full((x.shape[0],), t)])  # (N,) frame 0 at t = 0
        full = tokens.replace(torch.cat([first, x]))  # (N, C) frames 0..F-1
        return flow(full, tt, cond if conditioned else uncond, attention, extra)[n0:]

    return velocity
