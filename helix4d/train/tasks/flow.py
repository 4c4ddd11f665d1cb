"""`flow`: one stage's flow, static or temporal (docs/design.md §3.2: the clip's first frame is the clean anchor at
t = 0, the loss covers frames >= 1 only, condition dropout per frame enables CFG)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from helix4d.errors import ConfigError
from helix4d.io.files import write_json_atomic
from helix4d.models.flow import FlowTransformer
from helix4d.models.image_encoder import ImageEncoder
from helix4d.nn.blocks import FrameAttention, freeze_all_but_temporal, init_temporal_from_base
from helix4d.pipeline.architecture import architecture_of
from helix4d.pipeline.config import PipelineConfig
from helix4d.pipeline.folder import load_component, read_component_config, read_pipeline_config
from helix4d.sparse import SparseTensor
from helix4d.train.config import TrainConfig
from helix4d.train.latents import INDEX, encoded_stages
from helix4d.train.task import Task, register_task
from helix4d.train.tasks.clips import LatentClips
from helix4d.train.tasks.common import fresh_of_shape, install_component, task_options

STAGE_FLOW = {"ss": "ss_flow", "geometry": "geometry_flow", "material": "material_flow"}


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    """`flow` task options. stage: ss | geometry | material; temporal: train only the temporal self-attention
    copies on clips of clip_frames (repeats clips per sequence and epoch); train_image_encoder (static only: the
    encoder this stage reads); window: the attention radius (default: the model's); cond_drop: the share of
    frames whose condition is dropped (for classifier-free guidance); looks: 'all' sequences, or only those of the
    'canonical' look (as the encoded dataset's meta.json records it: polishing a `--look mixed` run on its
    canonical half); flow (static only, FlowConfig fields): a fresh flow of that shape instead, e.g. a wider one
    (its channels and cond_dim stay the stage's)."""

    model: str
    stage: str = "ss"
    latents: str | None = None
    temporal: bool = False
    clip_frames: int = 4
    repeats: int = 8
    train_image_encoder: bool = False
    window: int | None = None
    cond_drop: float = 0.1
    looks: str = "all"
    flow: dict[str, Any] | None = None


FIXED_FLOW_FIELDS = ("in_channels", "extra_channels", "cond_dim")  # set by the stage's latents and its encoder


def stage_latent_channels(model_folder: Path, stage: str) -> dict[str, int]:
    """The flow fields a stage's VAEs fix: its latents' channels and, for materials, the geometry latents it
    reads beside them. A fresh VAE of another width makes a fresh flow of the matching width."""
    if stage == "ss":
        return {"in_channels": read_component_config("ss_vae", model_folder / "ss_vae").latent_channels}
    geometry = read_component_config("geometry_vae", model_folder / "geometry_vae").latent_channels
    if stage == "geometry":
        return {"in_channels": geometry}
    material = read_component_config("material_vae", model_folder / "material_vae").latent_channels
    return {"in_channels": material, "extra_channels": geometry}


class FlowObjective(nn.Module):
    """A flow transformer (and, for the first static stage, the image encoder trained with it) and its
    rectified-flow loss, as one module so DDP wraps both."""

    def __init__(
        self,
        flow: FlowTransformer,
        encoder: ImageEncoder,
        stage: str,
        pipeline: PipelineConfig,
        temporal: bool,
        cond_drop: float,
        window: int,
    ) -> None:
        super().__init__()
        self.flow, self.encoder = flow, encoder
        self.stage, self.temporal, self.cond_drop, self.window = stage, temporal, cond_drop, window
        for key in ("ss", "geometry"):
            stats = pipeline.latent_stats[key]
            self.register_buffer(f"{key}_mean", torch.tensor(stats.mean), persistent=False)
            self.register_buffer(f"{key}_std", torch.tensor(stats.std), persistent=False)
        stats = pipeline.latent_stats["material"]
        self.register_buffer("material_mean", torch.tensor(stats.mean), persistent=False)
        self.register_buffer("material_std", torch.tensor(stats.std), persistent=False)

    def normalise(self, key: str, z: Tensor) -> Tensor:
        return (z - getattr(self, f"{key}_mean")) / getattr(self, f"{key}_std")

    def tokens(self, batch: list[dict[str, Any]]) -> tuple[SparseTensor, Tensor | None]:
        """The clean latents of every clip as one batched SparseTensor (+ given inputs for stage 3)."""
        seqs, extras = [], []
        for item in batch:
            if self.stage == "ss":
                ss = item["ss"]  # (F, C, r, r, r)
                st = SparseTensor.from_dense(ss)
                seqs.append(st.replace(self.normalise("ss", st.feats)))
            else:
                feats = [self.normalise(self.stage, z) for z in item[self.stage]]
                seqs.append(SparseTensor.from_frames(item["coarse"], feats))
                if self.stage == "material":
                    extras.append(torch.cat([self.normalise("geometry", z) for z in item["geometry"]]))
        return SparseTensor.cat(seqs), (torch.cat(extras) if extras else None)

    def forward(self, batch: list[dict[str, Any]], generator: torch.Generator) -> tuple[Tensor, dict[str, float]]:
        device = self.ss_mean.device
        x0, extra = self.tokens(batch)
        x0 = x0.to(device)
        extra = extra.to(device) if extra is not None else None
        images = torch.cat([item["images"] for item in batch]).to(device).float() / 255.0  # (T, 4, S, S)
        with torch.set_grad_enabled(any(p.requires_grad for p in self.encoder.parameters())):
            cond = self.encoder(images)  # (T, L, C)
        is_anchor_frame = torch.cat([torch.arange(n, device=device) == 0 for n in x0.frames_per_sequence])  # (T,)
        drop = torch.rand(cond.shape[0], generator=generator, device=device) < self.cond_drop
        if self.temporal:
            drop &= ~is_anchor_frame
        cond = torch.where(drop[:, None, None], torch.zeros_like(cond), cond)

        # One t per sequence (logit-normal, as TRELLIS), shared by its frames; anchors stay clean at t = 0.
        t_seq = torch.sigmoid(torch.randn(len(x0.frames_per_sequence), generator=generator, device=device) + 1.0)
        seq_of_frame = torch.cat([torch.full((n,), i, device=device) for i, n in enumerate(x0.frames_per_sequence)])
        frame = x0.global_frame_index.to(device)  # (N,)
        t = t_seq[seq_of_frame][frame]  # (N,)
        anchor_token = is_anchor_frame[frame] if self.temporal else torch.zeros_like(t, dtype=torch.bool)
        t = torch.where(anchor_token, torch.zeros_like(t), t)
        noise = torch.randn(x0.feats.shape, generator=generator, device=device)
        xt = (1 - t[:, None]) * x0.feats + t[:, None] * noise
        velocity = self.flow(x0.replace(xt), t, cond, FrameAttention(self.window), extra)
        target = noise - x0.feats
        per_token = (velocity - target).pow(2).mean(-1)  # (N,)
        loss = per_token[~anchor_token].mean()
        return loss, {"t_mean": t_seq.mean().item()}


@register_task("flow")
class FlowTask(Task):
    """One stage's flow, static or temporal (options: `FlowOptions`; the encoder a static stage ss trains is
    `ss_image_encoder` when the folder has one, else `image_encoder`)."""

    def __init__(self, config: TrainConfig) -> None:
        o = task_options(config, FlowOptions)
        self.config, self.model_folder = config, Path(o.model)
        self.stage = o.stage
        if self.stage not in STAGE_FLOW:
            raise ConfigError(f"task_options.stage must be one of {sorted(STAGE_FLOW)}, got {self.stage!r}")
        self.temporal = o.temporal
        self.clip_frames = o.clip_frames if self.temporal else 1
        self.train_encoder = o.train_image_encoder and not self.temporal
        self.latents = Path(o.latents or config.data or "")
        self.options = o

    def build_model(self) -> nn.Module:
        pipeline = read_pipeline_config(self.model_folder)
        name = STAGE_FLOW[self.stage]
        flow, self.flow_config = load_component(name, self.model_folder / name)
        self.encoder_name, encoder, self.encoder_config = architecture_of(pipeline).training_image_encoder(
            self.model_folder, pipeline, self.stage
        )
        if self.train_encoder and self.encoder_config is None:
            raise ConfigError(
                f"train_image_encoder is not possible with {pipeline.architecture} weights: its image "
                "encoder stays frozen"
            )
        fresh = fresh_of_shape(self.flow_config, self.options.flow, "flow")
        own_vaes = architecture_of(pipeline).own_vaes  # converted weights keep their released latents
        latent_channels = stage_latent_channels(self.model_folder, self.stage) if own_vaes else {}
        if fresh is not None:
            if self.temporal:
                raise ConfigError("task_options.flow starts a fresh flow, which only static training can do")
            changed = [f for f in FIXED_FLOW_FIELDS if getattr(fresh, f) != getattr(self.flow_config, f)]
            if changed:
                raise ConfigError(f"task_options.flow cannot change {', '.join(changed)}: the stage sets them")
            fresh = dataclasses.replace(fresh, **latent_channels)
            flow, self.flow_config = FlowTransformer(fresh), fresh
        elif any(getattr(self.flow_config, f) != n for f, n in latent_channels.items()):
            raise ConfigError(
                f"the {self.stage} latents have {latent_channels} channels but {name} reads "
                f"in_channels={self.flow_config.in_channels}, extra_channels={self.flow_config.extra_channels} "
                "(a VAE of another shape): start a fresh flow with task_options.flow"
            )
        if self.temporal:
            init_temporal_from_base(flow)  # the temporal copies start as the trained static weights
        window = pipeline.window if self.options.window is None else self.options.window
        cond_drop = self.options.cond_drop
        return FlowObjective(
            flow.train(), encoder.train(self.train_encoder), self.stage, pipeline, self.temporal, cond_drop, window
        )

    def trainable_parameters(self, model: nn.Module):
        if self.temporal:
            return freeze_all_but_temporal(model.flow)
        # Static (F = 1): every token is an anchor token, so the temporal copies get no gradient; they are set
        # equal to the trained base when saved (and again when the temporal fine-tune starts).
        params = [p for n, p in model.flow.named_parameters() if "temporal_attn" not in n.split(".")]
        return params + list(model.encoder.parameters()) if self.train_encoder else params

    def dataset(self) -> Dataset:
        needed = {"ss": ["ss"], "geometry": ["geometry"], "material": ["geometry", "material"]}[self.stage]
        missing = [s for s in needed if (self.latents / INDEX).is_file() and s not in encoded_stages(self.latents)]
        if missing:
            raise ConfigError(
                f"{self.latents} holds no {' or '.join(missing)} latents (a stage-1-only encode); add them with "
                f"`helix4d model encode-latents ... --only {','.join(missing)}`"
            )
        return LatentClips(self.latents, self.clip_frames, self.config.seed, self.options.repeats, self.options.looks)

    def collate(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return batch

    def loss(self, model: nn.Module, batch: list[dict[str, Any]], generator: torch.Generator):
        return model(batch, generator)

    def save_artifact(self, model: nn.Module, out_dir: Path) -> None:
        if not self.temporal:
            init_temporal_from_base(model.flow)
        install_component(model.flow, self.flow_config, self.model_folder, STAGE_FLOW[self.stage], out_dir)
        if self.train_encoder:
            install_component(model.encoder, self.encoder_config, self.model_folder, self.encoder_name, out_dir)
        pipeline = read_pipeline_config(self.model_folder)
        pipeline.trained = True
        write_json_atomic(self.model_folder / "pipeline.json", pipeline.to_dict())
