"""The project's training tasks: every trainable part of a helix4d model folder.

Each task trains one component of a model folder (`task_options.model`, made by `helix4d model init`) and writes
it back into that folder when done (and into the run's `model/` folder), so the stages chain:

    ss_vae, sc_vae (geometry, material)  on a dataset             (helix4d data synth)
    -> helix4d model encode-latents                                (latents + statistics)
    -> image_encoder: condition image -> coarse occupancy          (stage 1's own encoder, `ss_image_encoder`)
    -> flow (stage ss with the image encoder, then geometry, material), static: F = 1
    -> flow ... temporal: true                                     (only the temporal self-attention copies)

Flow tasks follow docs/design.md §3.2: the clip's first frame is the anchor (ground-truth latent, t = 0, never noised),
the loss covers frames >= 1 only, and condition dropout (per frame, never the anchor) enables CFG.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import Dataset

from helix4d.data import layout
from helix4d.data.look import canonical_sequences
from helix4d.errors import ConfigError, InputError
from helix4d.io.files import atomic_dir, write_json_atomic
from helix4d.models.flow import FlowTransformer
from helix4d.models.image_encoder import ImageEncoder, OccupancyProbe
from helix4d.models.sc_vae import SCVAELossWeights
from helix4d.nn.blocks import FrameAttention, freeze_all_but_temporal, init_temporal_from_base
from helix4d.ovoxel.representation import voxel_features
from helix4d.pipeline.architecture import architecture_of, read_trainable_pipeline_config, stage1_encoder_name
from helix4d.pipeline.config import PipelineConfig
from helix4d.pipeline.folder import load_component, read_component_config, read_pipeline_config, save_component
from helix4d.sparse import SparseTensor, frame_coords
from helix4d.sparse.conv import coarse_occupancy
from helix4d.train.config import TrainConfig, parse_dataclass
from helix4d.train.latents import INDEX, encoded_stages
from helix4d.train.task import Task, register_task

STAGE_FLOW = {"ss": "ss_flow", "geometry": "geometry_flow", "material": "material_flow"}
RECOLOURED_CHANNELS = (0, 1, 2, 3, 4)  # material features: base colour RGB, metallic, roughness (alpha kept)


# ------------------------------------------------------------------------------------------------ options
@dataclasses.dataclass(frozen=True)
class VAEOptions:
    """`ss_vae` and `sc_vae` task options. model: the model folder (`helix4d model init`) whose component trains.
    sc_vae only: component, the `SCVAELossWeights`, colour_augmentation (materials: the share of frames whose
    colour / metallic / roughness are re-drawn, `recolour_frames`), and train: 'all' or 'decoder' (the encoder,
    hence the latent space the flows were trained on, stays as it is: a better decoder without retraining them)."""

    model: str
    component: str = "geometry_vae"  # geometry_vae | material_vae
    train: str = "all"  # all | decoder
    reconstruction_weight: float = SCVAELossWeights().reconstruction
    l1_weight: float = SCVAELossWeights().l1
    exists_weight: float = SCVAELossWeights().exists
    colour_augmentation: float = 0.0


@dataclasses.dataclass(frozen=True)
class ImageEncoderOptions:
    """`image_encoder` task options: model, latents (from `helix4d model encode-latents`; default: `data`), and
    encoder (ImageEncoderConfig fields: a fresh encoder of that shape instead, e.g. a deeper one)."""

    model: str
    latents: str | None = None
    encoder: dict[str, Any] | None = None


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


def fresh_of_shape(config: Any, shape: dict[str, Any] | None, option: str) -> Any | None:
    """`config` with the fields of `shape` replaced, or None when that changes nothing (keep the trained weights):
    how a task option asks for a fresh component of another shape."""
    if not shape:
        return None
    try:
        fresh = dataclasses.replace(config, **shape)
    except TypeError as exc:
        raise ConfigError(f"task_options.{option}: {exc}") from None
    return None if fresh == config else fresh


def task_options(config: TrainConfig, cls: type[Any]) -> Any:
    """`config.task_options` as the task's options dataclass (unknown keys and wrong types are errors)."""
    return parse_dataclass(cls, config.task_options, f"task_options of task {config.task!r}")


def install_component(module: nn.Module, config: Any, model_folder: Path, name: str, run_out: Path) -> None:
    """Write the trained component into the run's output and replace (or add) it in the model folder atomically."""
    save_component(module, config, run_out / name)
    with atomic_dir(model_folder / name) as staging:
        shutil.copytree(run_out / name, staging, dirs_exist_ok=True)


class LossModule(nn.Module):
    """Wraps a VAE so DDP sees its loss as the forward pass (gradient sync hooks need forward)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Tensor, dict[str, float]]:
        return self.inner.loss(*args, **kwargs)


class VoxelFrames(Dataset):
    """Every (sequence, frame) of a dataset, reading only the O-Voxels (no images): VAE training data."""

    def __init__(self, root: Path) -> None:
        manifest = layout.read_manifest(root)
        self.root = root
        self.paths = [root / s["path"] for s in manifest["sequences"]]
        self.ends = np.cumsum([s["frames"] for s in manifest["sequences"]])

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def __getitem__(self, index: int):
        seq = int(np.searchsorted(self.ends, index, side="right"))
        frame = index - (int(self.ends[seq - 1]) if seq else 0)
        return _load_sequence_ovoxels(str(self.paths[seq]))[frame]


@lru_cache(maxsize=4096)  # a whole demo-size dataset fits; random access must not re-read npz files
def _load_sequence_ovoxels(path: str):
    return layout.load_ovoxels(Path(path) / layout.OVOXELS)


# ------------------------------------------------------------------------------------------------ VAEs
@register_task("ss_vae")
class SSVAETask(Task):
    """Occupancy of the coarse grid (the parents of the O-Voxels) ↔ the stage-1 latent grid."""

    def __init__(self, config: TrainConfig) -> None:
        self.config, self.model_folder = config, Path(task_options(config, VAEOptions).model)
        self.pipeline = read_trainable_pipeline_config(self.model_folder)

    def build_model(self) -> nn.Module:
        vae, self.vae_config = load_component("ss_vae", self.model_folder / "ss_vae")
        geo_config = load_component("geometry_vae", self.model_folder / "geometry_vae")[1]
        self.levels = len(geo_config.channels) - 1
        return LossModule(vae.train())

    def dataset(self) -> Dataset:
        return VoxelFrames(Path(self.config.data))

    def collate(self, batch: list) -> Tensor:
        fine = frame_coords([v.coords for v in batch])
        return coarse_occupancy(fine, self.levels, len(batch), self.vae_config.resolution)  # (B, 1, R, R, R)

    def loss(self, model: nn.Module, batch: Tensor, generator: torch.Generator):
        return model(batch, generator=generator)

    def save_artifact(self, model: nn.Module, out_dir: Path) -> None:
        install_component(model.inner, self.vae_config, self.model_folder, "ss_vae", out_dir)


@register_task("sc_vae")
class SCVAETask(Task):
    """Fine O-Voxel features ↔ coarse sparse latents (options: `VAEOptions`)."""

    def __init__(self, config: TrainConfig) -> None:
        o = task_options(config, VAEOptions)
        self.config, self.model_folder = config, Path(o.model)
        self.component = o.component
        if self.component not in ("geometry_vae", "material_vae"):
            raise ConfigError(f"task_options.component must be geometry_vae or material_vae, got {self.component!r}")
        read_trainable_pipeline_config(self.model_folder)  # our own VAEs only
        self.weights = SCVAELossWeights(o.reconstruction_weight, o.l1_weight, o.exists_weight)
        self.colour_augmentation = o.colour_augmentation
        if self.colour_augmentation and self.component != "material_vae":
            raise ConfigError("colour_augmentation applies to the material_vae only")
        if o.train not in ("all", "decoder"):
            raise ConfigError(f"task_options.train must be 'all' or 'decoder', got {o.train!r}")
        self.decoder_only = o.train == "decoder"

    def build_model(self) -> nn.Module:
        vae, self.vae_config = load_component(self.component, self.model_folder / self.component)
        return LossModule(vae.train())

    def trainable_parameters(self, model: nn.Module):
        if self.decoder_only:
            return [p for n, p in model.inner.named_parameters() if n.startswith("dec_")]
        return model.parameters()

    def dataset(self) -> Dataset:
        return VoxelFrames(Path(self.config.data))

    def collate(self, batch: list) -> SparseTensor:
        """Frames of different sequences, each its own one-frame sequence."""
        geometry = self.component == "geometry_vae"
        feats = [v.geometry_features(oriented=True) if geometry else v.material_features() for v in batch]
        return SparseTensor.cat([voxel_features([v], [f]) for v, f in zip(batch, feats)])

    def loss(self, model: nn.Module, batch: SparseTensor, generator: torch.Generator):
        if self.colour_augmentation:
            batch = recolour_frames(batch, self.colour_augmentation, generator)
        return model(batch, generator=generator, weights=self.weights)

    def save_artifact(self, model: nn.Module, out_dir: Path) -> None:
        install_component(model.inner, self.vae_config, self.model_folder, self.component, out_dir)


def recolour_frames(
    x: SparseTensor,
    probability: float,
    generator: torch.Generator,
    channels: tuple[int, ...] = RECOLOURED_CHANNELS,
) -> SparseTensor:
    """Material features (N, 6) with, in a `probability` share of frames, each of `channels` moved to a random
    frame mean in [0, 1] and its deviations scaled by U(0.5, 1.5), clipped to [0, 1].

    Why: procedural objects come in few colours, each tied to a shape; the material decoder is given the voxels,
    so without this it learns "shape → typical colour" and ignores its latent (every output came out one
    pinkish grey). Re-drawn colours make the latent the only source of colour."""
    feats, frame, frames = x.feats, x.global_frame_index, x.num_frames
    dev = feats.device
    ch = torch.tensor(channels, device=dev)
    use = torch.rand(frames, generator=generator, device=dev) < probability  # (F,)
    counts = torch.zeros(frames, device=dev).index_add_(0, frame, torch.ones_like(frame, dtype=feats.dtype))
    mean = torch.zeros(frames, len(ch), device=dev).index_add_(0, frame, feats[:, ch]) / counts.clamp(min=1)[:, None]
    new_mean = torch.rand(frames, len(ch), generator=generator, device=dev)
    scale = 0.5 + torch.rand(frames, len(ch), generator=generator, device=dev)
    recoloured = (new_mean[frame] + scale[frame] * (feats[:, ch] - mean[frame])).clamp(0, 1)
    out = feats.clone()
    out[:, ch] = torch.where(use[frame][:, None], recoloured, feats[:, ch])
    return x.replace(out)


# ------------------------------------------------------------------------------------------------ flows
class LatentClips(Dataset):
    """Clips of pre-encoded sequences. Static training (clip_frames = 1) indexes every (sequence, frame); temporal
    training draws one clip start per (sequence, index) from a seeded RNG, so item i is a function of i alone."""

    def __init__(self, root: Path, clip_frames: int, seed: int, repeats: int = 1, looks: str = "all") -> None:
        index_path = root / INDEX
        if not index_path.is_file():
            raise ConfigError(f"{root} holds no encoded latents; run `helix4d model encode-latents` first")
        self.root, self.clip_frames, self.seed = root, clip_frames, seed
        index = json.loads(index_path.read_text())
        self.sequences = [s for s in index["sequences"] if s["frames"] >= clip_frames]
        if looks != "all":
            kept = _sequences_of_look(Path(index["data"]), looks)
            self.sequences = [s for s in self.sequences if s["id"] in kept]
        if not self.sequences:
            raise ConfigError(
                f"no sequence in {root} has {clip_frames} frames" + ("" if looks == "all" else f" and the {looks} look")
            )
        self.ends = np.cumsum([s["frames"] if clip_frames == 1 else repeats for s in self.sequences])

    def __len__(self) -> int:
        return int(self.ends[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq = int(np.searchsorted(self.ends, index, side="right"))
        entry = self.sequences[seq]
        record = _load_latents(str(self.root / f"{entry['id']}.pt"))
        if self.clip_frames == 1:
            start = index - (int(self.ends[seq - 1]) if seq else 0)
        else:
            start = int(np.random.default_rng([self.seed, index]).integers(0, entry["frames"] - self.clip_frames + 1))
        frames = list(range(start, start + self.clip_frames))
        coarse = record["coarse"]
        rows = [coarse[:, 0] == f for f in frames]
        item = {
            "images": record["images"][frames],  # (F, 4, S, S) uint8
            "ss": record["ss"][frames],  # (F, C, r, r, r)
            "coarse": [coarse[m, 1:] for m in rows],  # per frame (n_f, 3)
        }
        for stage in ("geometry", "material"):  # absent from stage-1-only latents
            if stage in record:
                item[stage] = [record[stage][m] for m in rows]
        return item


def _sequences_of_look(data: Path, looks: str) -> set[str]:
    """Ids of the encoded dataset's sequences seen with `looks` (only 'canonical' is selectable)."""
    if looks != "canonical":
        raise ConfigError(f"task_options.looks must be 'all' or 'canonical', got {looks!r}")
    try:
        return canonical_sequences(data)
    except InputError as exc:
        raise ConfigError(f"selecting looks reads the dataset the latents were encoded from: {exc}") from None


@lru_cache(maxsize=4096)
def _load_latents(path: str) -> dict[str, Any]:
    return torch.load(path, weights_only=True)


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
        if fresh is not None:
            if self.temporal:
                raise ConfigError("task_options.flow starts a fresh flow, which only static training can do")
            changed = [f for f in FIXED_FLOW_FIELDS if getattr(fresh, f) != getattr(self.flow_config, f)]
            if changed:
                raise ConfigError(f"task_options.flow cannot change {', '.join(changed)}: the stage sets them")
            flow, self.flow_config = FlowTransformer(fresh), fresh
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


# ------------------------------------------------------------------------------------------------ image encoder
class EncoderWithProbe(nn.Module):
    """The image encoder and its occupancy probe with a class-balanced BCE, as one module so DDP wraps both."""

    def __init__(self, encoder: ImageEncoder, probe: OccupancyProbe) -> None:
        super().__init__()
        self.encoder, self.probe = encoder, probe

    def forward(self, images: Tensor, occupancy: Tensor) -> tuple[Tensor, dict[str, float]]:
        """images (B, 4, S, S) uint8, occupancy (B, R, R, R) in {0, 1} -> loss, metrics."""
        logits = self.probe(self.encoder(images.float() / 255.0))  # (B, R, R, R)
        pos_weight = ((1 - occupancy).sum() / occupancy.sum().clamp(min=1)).clamp(max=20.0)
        loss = F.binary_cross_entropy_with_logits(logits, occupancy, pos_weight=pos_weight)
        with torch.no_grad():
            pred, gt = logits > 0, occupancy > 0.5
            iou = ((pred & gt).flatten(1).sum(1) / (pred | gt).flatten(1).sum(1).clamp(min=1)).mean().item()
        return loss, {"iou": iou}


@register_task("image_encoder")
class ImageEncoderTask(Task):
    """Train stage 1's own encoder (`ss_image_encoder`) on condition image -> coarse occupancy (the stage-1 target's
    shape) through an `OccupancyProbe`, before the stage-1 flow is trained on its tokens; a folder without one starts
    it from its `image_encoder`, which stays as it is (stages 2-3 read it). options: model, latents (encoded with
    `helix4d model encode-latents`), encoder (ImageEncoderConfig fields: a fresh encoder of that shape instead, e.g.
    a deeper one; `dim` must stay the stage-1 flow's `cond_dim`). Only the encoder is written back; the probe is
    training scaffolding."""

    def __init__(self, config: TrainConfig) -> None:
        self.options = task_options(config, ImageEncoderOptions)
        self.config, self.model_folder = config, Path(self.options.model)
        read_trainable_pipeline_config(self.model_folder)  # our own encoder only (DINOv3 stays frozen)
        self.latents = Path(self.options.latents or config.data or "")

    def build_model(self) -> nn.Module:
        start = stage1_encoder_name(self.model_folder)  # continue stage 1's encoder, or start from the shared one
        encoder, self.encoder_config = load_component(start, self.model_folder / start)
        fresh = fresh_of_shape(self.encoder_config, self.options.encoder, "encoder")
        if fresh is not None:
            encoder, self.encoder_config = ImageEncoder(fresh), fresh
        ss = read_component_config("ss_vae", self.model_folder / "ss_vae")
        self.resolution = ss.resolution
        probe = OccupancyProbe(
            self.encoder_config.dim, self.encoder_config.heads, ss.resolution, ss.resolution // 2 ** len(ss.channels)
        )
        return EncoderWithProbe(encoder.train(), probe)

    def dataset(self) -> Dataset:
        return LatentClips(self.latents, 1, self.config.seed)

    def collate(self, batch: list[dict[str, Any]]) -> tuple[Tensor, Tensor]:
        r = self.resolution
        occupancy = torch.zeros(len(batch), r, r, r)
        for i, item in enumerate(batch):
            c = item["coarse"][0].long()  # (n, 3)
            occupancy[i, c[:, 0], c[:, 1], c[:, 2]] = 1.0
        return torch.cat([item["images"] for item in batch]), occupancy

    def loss(self, model: nn.Module, batch: tuple[Tensor, Tensor], generator: torch.Generator):
        return model(*batch)

    def save_artifact(self, model: nn.Module, out_dir: Path) -> None:
        install_component(model.encoder, self.encoder_config, self.model_folder, "ss_image_encoder", out_dir)
