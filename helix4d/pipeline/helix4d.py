"""`Helix4DPipeline`: video in, 4D asset out (docs/design.md §2).

    pipe = Helix4DPipeline.from_pretrained()          # the shipped demo model
    asset = pipe("examples/split.mp4", SamplingOptions(seed=0))  # -> Asset4D: per-frame O-Voxels and meshes

Every stage runs frame 0 (the anchor) through the static model alone, exactly as for a single image, then fills
the anchor cache with its clean latent at t = 0 and denoises frames 1..F-1 jointly with windowed anchored
attention. `SamplingOptions(mode="per-frame")` runs the static model on every frame independently (the paper's
baseline).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
import trimesh
from torch import Tensor

from helix4d.errors import InputError
from helix4d.io.matting import Matte, MattingOptions
from helix4d.io.preprocess import preprocess_frames
from helix4d.io.video import Video, read_video
from helix4d.models.interfaces import ConditionEncoder, SparseDecoder, SparseStructureDecoder
from helix4d.ovoxel import OVoxel, ovoxel_to_mesh
from helix4d.pipeline.architecture import architecture_of, load_components
from helix4d.pipeline.config import PipelineConfig
from helix4d.pipeline.folder import read_pipeline_config
from helix4d.pipeline.generation import STAGES, Generation, Progress, require_finite
from helix4d.pipeline.options import SamplingOptions
from helix4d.settings import check_settings
from helix4d.sparse import SparseTensor
from helix4d.sparse.conv import row_index

DEMO_MODEL = Path(__file__).resolve().parent.parent / "weights" / "demo"


@dataclass
class Asset4D:
    """The result: one O-Voxel and one mesh per frame, in the unit cube shared by all frames."""

    ovoxels: list[OVoxel]
    meshes: list[trimesh.Trimesh]
    times: np.ndarray  # (F,) seconds of each frame in the source video
    fps: float
    images: np.ndarray  # (F, 4, S, S) float32 condition images the model saw
    metadata: dict = field(default_factory=dict)  # settings and per-stage seconds
    input_frames: np.ndarray | None = None  # (F, H, W, 4) uint8 decoded video frames, for previews
    coarse: list[np.ndarray] = field(default_factory=list)  # per frame (n_f, 3) stage-1 voxels on the latent grid

    @property
    def num_frames(self) -> int:
        return len(self.meshes)


def chunk_ranges(frames: int, chunk: int) -> list[tuple[int, int]]:
    """[start, stop) of each chunk of a `frames`-frame clip, `chunk` frames each (0: one chunk): consecutive
    chunks share one frame, the next chunk's anchor, as ActionMesh and L4GM slide their windows."""
    if chunk == 0 or frames <= chunk:
        return [(0, frames)]
    return [(start, min(start + chunk, frames)) for start in range(0, frames - 1, chunk - 1)]


class Helix4DPipeline:
    """`offload=True` keeps every component in CPU memory and moves only the ones a stage uses to `device` for that
    stage: GPU memory then holds one 1.3 B flow (2.6 GB in bf16) instead of all weights (≈ 14 GB for TRELLIS.2)."""

    def __init__(
        self,
        config: PipelineConfig,
        components: dict[str, torch.nn.Module],
        device: str | torch.device = "cpu",
        offload: bool = False,
    ) -> None:
        self.config = config
        self.architecture = architecture_of(config)  # its own steps: stage 1's grid, where voxels are placed
        self.components = components
        self.device = torch.device(device)
        self.offload = offload and self.device.type != "cpu"
        for module in components.values():
            module.to("cpu" if self.offload else self.device).eval()

    @contextmanager
    def using(self, *names: str) -> Iterator[None]:
        """Components `names` on the device for the duration (a no-op without offloading)."""
        if not self.offload:
            yield
            return
        for name in names:
            self.components[name].to(self.device)
        try:
            yield
        finally:
            for name in names:
                self.components[name].to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls, folder: str | Path | None = None, device: str | torch.device = "cpu", offload: bool = False
    ) -> Helix4DPipeline:
        """Load a model folder (default: the shipped demo model)."""
        folder = Path(folder) if folder is not None else DEMO_MODEL
        config = read_pipeline_config(folder)
        return cls(config, load_components(folder, config), resolve_device(device), offload)

    # ------------------------------------------------------------------ components every architecture has
    # Typed by what the pipeline reads of them (`helix4d.models.interfaces`): architectures supply their own classes.
    @property
    def image_encoder(self) -> ConditionEncoder:
        return cast(ConditionEncoder, self.components["image_encoder"])

    @property
    def ss_vae(self) -> SparseStructureDecoder:
        return cast(SparseStructureDecoder, self.components["ss_vae"])

    @property
    def geometry_vae(self) -> SparseDecoder:
        return cast(SparseDecoder, self.components["geometry_vae"])

    @property
    def material_vae(self) -> SparseDecoder:
        return cast(SparseDecoder, self.components["material_vae"])

    # ------------------------------------------------------------------ entry points
    def __call__(
        self,
        video: str | Path | Video,
        sampling: SamplingOptions = SamplingOptions(),
        *,
        max_frames: int | None = None,
        fps: float | None = None,
        start: float | None = None,
        end: float | None = None,
        matting: MattingOptions | Matte = MattingOptions(),
        progress: Progress | None = None,
    ) -> Asset4D:
        """Decode, matte (`helix4d.io.matting` options, where a segmentation model folder runs on this pipeline's
        device unless `matting.device` says otherwise; or the video's matte computed already), preprocess and
        generate. Frames are sampled by `fps`/`start`/`end`/`max_frames`. The matte used and its confidence are
        in `metadata["matte"]`."""
        check_settings({"max_frames": max_frames, "fps": fps, "start": start, "end": end})
        sampling = sampling.checked()
        if not isinstance(video, Video):
            video = read_video(video, fps=fps, max_frames=max_frames, start=start, end=end)
        if isinstance(matting, MattingOptions) and matting.device is None:
            matting = dataclasses.replace(matting, device=str(self.device))
        cond = preprocess_frames(video, size=self.config.image_size, matting=matting)
        asset = self.generate(cond.images, sampling, progress=progress)
        asset.times, asset.fps, asset.input_frames = video.times, video.fps, video.frames
        asset.metadata["source"] = video.source
        asset.metadata["matte"] = cond.matte.summary()
        asset.metadata["object_box"] = list(cond.object_box)  # (x0, y0, x1, y1) in the decoded frames
        asset.metadata["crop_box"] = list(cond.box)  # the square the condition images were cut from
        asset.metadata["stabilised"] = cond.stabilised  # boxes in the first frame's pixels, its camera's motion undone
        asset.metadata["warnings"][:0] = cond.matte.warnings
        return asset

    def image_to_3d(self, image: str | Path | np.ndarray, sampling: SamplingOptions = SamplingOptions()) -> Asset4D:
        """The static single-image path: one frame, base weights only (`sampling.mode` is per-frame)."""
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] not in (3, 4) or image.dtype != np.uint8:
                raise InputError(f"image must be an (H, W, 3|4) uint8 array, got {image.shape} {image.dtype}")
            rgba = image if image.shape[2] == 4 else np.concatenate([image, np.full_like(image[..., :1], 255)], axis=2)
            video = Video(
                frames=rgba[None],
                fps=1.0,
                times=np.zeros(1),
                has_alpha=bool((rgba[..., 3] < 255).any()),
                source="array",
            )
        else:
            video = read_video(image, max_frames=1)
        return self(video, dataclasses.replace(sampling, mode="per-frame"))

    @torch.no_grad()
    def generate(
        self,
        images: np.ndarray,
        sampling: SamplingOptions = SamplingOptions(),
        *,
        progress: Progress | None = None,
        coarse: list[Tensor] | None = None,
        geometry: Tensor | None = None,
    ) -> Asset4D:
        """images (F, 4, S, S) float32 in [0, 1] (RGB over black + alpha) -> Asset4D. `coarse` (per frame (n_f, 3)
        voxels of the latent grid) replaces stage 1, e.g. by the true coarse structure to measure stages 2-3 alone;
        `geometry` (un-normalised geometry latents (N, C) on those voxels, frames concatenated) also replaces stage
        2, to measure stage 3 alone (one chunk only).
        A clip longer than `sampling.chunk` frames is generated chunk by chunk (`chunk_ranges`): a chunk's first
        frame is the previous chunk's last, whose clean latents of every stage are its anchor, so one chunk's tokens
        are held at a time and no frame is further from its anchor than the chunk length.

        Raises `GenerationError` when a stage yields NaN/inf or no voxel in any frame (broken weights, or
        settings the model cannot follow), instead of failing later somewhere deep inside the next stage."""
        sampling = sampling.checked()
        s = self.config.image_size
        if images.ndim != 4 or images.shape[1:] != (4, s, s) or images.shape[0] < 1:
            raise InputError(f"condition images must be (F, 4, {s}, {s}), got {images.shape}")
        f = images.shape[0]
        if coarse is not None and len(coarse) != f:
            raise InputError(f"coarse structure given for {len(coarse)} frames, but there are {f} images")
        chunks = chunk_ranges(f, sampling.chunk)
        if geometry is not None and (coarse is None or len(chunks) > 1):
            raise InputError("given geometry latents need the coarse structure they lie on and a clip of one chunk")
        run = Generation(self, sampling, progress, f, geometry)
        ovoxels: list[OVoxel] = []
        cells: list[Tensor] = []
        for start, stop in chunks:
            part, part_cells = run.chunk(images[start:stop], start, None if coarse is None else coarse[start:stop])
            skip = 0 if start == 0 else 1  # the chunk's anchor is the previous chunk's last frame, already there
            ovoxels += part[skip:]
            cells += part_cells[skip:]

        clock = time.perf_counter()
        meshes = [ovoxel_to_mesh(v) for v in ovoxels]
        run.timings["meshing"] = time.perf_counter() - clock

        empty = [i for i, mesh in enumerate(meshes) if len(mesh.faces) == 0]
        warnings = (
            [f"nothing was generated for frame(s) {', '.join(map(str, empty))}: their meshes are empty"]
            if empty
            else []
        )
        metadata = {
            "mode": sampling.mode,
            "seed": sampling.seed,
            "window": run.sampling.window,
            "anchor": sampling.anchor,
            "chunk": sampling.chunk,
            "chunks": [list(c) for c in chunks],
            "frames": f,
            "steps": {k: run.sampler(k).steps for k in STAGES},
            "cfg": {k: run.sampler(k).cfg_strength for k in STAGES},
            "seconds": run.timings,
            "model_preset": self.config.preset,
            "model_trained": self.config.trained,
            "empty_frames": empty,
            "warnings": warnings,
        }
        return Asset4D(
            ovoxels,
            meshes,
            np.arange(f, dtype=np.float64),
            1.0,
            images,
            metadata,
            coarse=[c.cpu().numpy() for c in cells],
        )

    @torch.no_grad()
    def coarse_structure(self, images: np.ndarray, sampling: SamplingOptions = SamplingOptions()) -> list[np.ndarray]:
        """Stage 1 alone: per frame the (n_f, 3) occupied voxels of the latent grid, for images as `generate` takes
        them (one chunk). Why: the fit check and stage-1 studies score the coarse structure thousands of times and
        should not pay for stages 2-3 each time."""
        sampling = sampling.checked()
        pixels = torch.from_numpy(images).to(self.device)  # (F, 4, S, S)
        name = "ss_image_encoder" if "ss_image_encoder" in self.components else "image_encoder"
        with self.using(name):
            cond = self.components[name](pixels)  # (F, L, C)
        with self.using("ss_vae"):
            coarse = Generation(self, sampling, None, images.shape[0]).sparse_structure(cond)
        return [c.numpy() for c in coarse]

    @torch.no_grad()
    def decode_latents(self, coarse: list[Tensor], geometry: Tensor, material: Tensor) -> list[OVoxel]:
        """Per-frame O-Voxels from geometry and material latents (M, C) (un-normalised, frames concatenated in
        order) on the per-frame coarse voxels (n_f, 3): the SC-VAE decoders, the material guided by the geometry's
        fine voxels. Shared by generation and by the error budget's VAE round trip."""
        with self.using("geometry_vae", "material_vae"):
            geo_vae, mat_vae = self.geometry_vae, self.material_vae
            decoded = geo_vae.decode(SparseTensor.of_sequence(coarse, geometry.to(self.device)))
            out = mat_vae.decode(SparseTensor.of_sequence(coarse, material.to(self.device)), guide=decoded)
            voxels = decoded.voxels
            colours = mat_vae.features(out.voxels.feats)[row_index(voxels.coords, out.voxels.coords)]  # (N, 6)
            features = require_finite("geometry", geo_vae.features(voxels.feats))
            colours = require_finite("material", colours)
        ovoxels = []
        for f in range(len(coarse)):
            lo, hi = (int(i) for i in voxels.frame_offsets[f : f + 2])
            ovoxels.append(
                geo_vae.ovoxel(
                    self.config.resolution, voxels.coords[lo:hi, 1:].cpu(), features[lo:hi].cpu(), colours[lo:hi].cpu()
                )
            )
        return ovoxels


def resolve_device(device: str | torch.device) -> torch.device:
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N', checked: an unknown name is a user's typo."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise InputError(f"--device must be auto, cpu or cuda (or cuda:N), got {device!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return dev
