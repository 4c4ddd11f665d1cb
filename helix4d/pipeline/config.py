"""Model-size presets and the pipeline's own settings, as dataclasses serialised beside the weights.

A model folder (docs/design.md §6) holds `pipeline.json` (a `PipelineConfig`) and one sub-folder per component with its
`config.json` + `model.safetensors`. `tiny` is for tests, `demo` is what ships in `helix4d/weights/demo`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from helix4d.errors import ConfigError
from helix4d.models.flow import FlowConfig
from helix4d.models.image_encoder import ImageEncoderConfig
from helix4d.models.sc_vae import SCVAEConfig
from helix4d.models.ss_vae import SSVAEConfig
from helix4d.ovoxel.representation import MATERIAL_CHANNELS, ORIENTED_GEOMETRY_CHANNELS
from helix4d.pipeline.sampler import SamplerConfig
from helix4d.settings import WINDOW

# Geometry features are (dual 3, edges 3, split 1, edge signs 3); edges and signs are flags trained with BCE.
GEOMETRY_BINARY_CHANNELS = (3, 4, 5, 7, 8, 9)

ARCHITECTURES = ("helix4d", "trellis2")
COMPONENTS = ("image_encoder", "ss_vae", "geometry_vae", "material_vae", "ss_flow", "geometry_flow", "material_flow")
# Loaded when the folder holds them. `ss_image_encoder`: stage 1's own condition encoder, supervised on coarse
# occupancy (the `image_encoder` training task); without it stage 1 reads `image_encoder` like stages 2-3. Why a
# second one: a small encoder trained from scratch cannot serve both the shape stage-1 needs and the appearance the
# material stage needs, and retraining the one shared encoder would invalidate every flow trained on its tokens.
OPTIONAL_COMPONENTS = ("ss_image_encoder",)
CONFIG_TYPES = {
    "image_encoder": ImageEncoderConfig,
    "ss_image_encoder": ImageEncoderConfig,
    "ss_vae": SSVAEConfig,
    "geometry_vae": SCVAEConfig,
    "material_vae": SCVAEConfig,
    "ss_flow": FlowConfig,
    "geometry_flow": FlowConfig,
    "material_flow": FlowConfig,
}


@dataclass
class LatentStats:
    """Per-channel mean/std of a stage's latents, measured on the training set; flows work on standardised latents."""

    mean: list[float]
    std: list[float]


@dataclass
class PipelineConfig:
    preset: str
    resolution: int  # fine O-Voxel grid
    image_size: int  # condition image side
    window: int = WINDOW  # window radius r for frames >= 1 at inference
    occupancy_threshold: float = 0.0  # SS-VAE logit above which a coarse voxel is occupied
    latent_stats: dict[str, LatentStats] = field(default_factory=dict)  # keyed "ss", "geometry", "material"
    sampling: dict[str, SamplerConfig] = field(default_factory=dict)  # keyed "ss", "geometry", "material"
    trained: bool = False  # False for a freshly initialised folder: its outputs are noise
    architecture: str = "helix4d"  # "helix4d" (our components) | "trellis2" (converted TRELLIS.2 weights)
    cascade_from: int | None = None  # a first geometry pass at this resolution (`geometry_flow_lr`) places the voxels

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.architecture!r}; expected one of {ARCHITECTURES}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict) -> PipelineConfig:
        try:
            raw = dict(raw)
            raw["latent_stats"] = {k: LatentStats(**v) for k, v in raw.get("latent_stats", {}).items()}
            raw["sampling"] = {
                k: SamplerConfig(**{**v, "cfg_interval": tuple(v.get("cfg_interval", (0.0, 1.0)))})
                for k, v in raw.get("sampling", {}).items()
            }
            return cls(**raw)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"pipeline.json is not a helix4d pipeline config ({exc})") from None


@dataclass
class ModelPreset:
    pipeline: PipelineConfig
    components: dict[str, object]  # component name -> its config dataclass


def preset(name: str) -> ModelPreset:
    """Configs of every component for a named size."""
    vae_ch: tuple[int, ...]  # SC-VAE channels, one level per entry
    if name == "tiny":
        res, img, enc_dim, flow = 16, 32, 32, FlowConfig(dim=32, depth=2, heads=2)
        vae_ch, ss = (8, 16), SSVAEConfig(resolution=8, latent_channels=4, channels=(8,))
        latent, enc = 4, ImageEncoderConfig(image_size=img, dim=enc_dim, grid=4, depth=1, heads=2)
        guidance: dict[str, float] = {}  # stage -> cfg_strength where it is not SamplerConfig's
        occupancy = 0.0
    elif name == "demo":
        # Sized to train on a 2-core CPU within a working session: O-Voxels at 32³, latent tokens on the 8³
        # coarse grid (≈ 100 per frame), 4-block flows of width 128 (head dim 64, the Trellis2 RoPE layout).
        res, img, enc_dim, flow = 32, 128, 128, FlowConfig(dim=128, depth=4, heads=2)
        vae_ch, ss = (16, 32, 64), SSVAEConfig(resolution=8, latent_channels=8, channels=(32,))
        latent, enc = 8, ImageEncoderConfig(image_size=img, dim=enc_dim, grid=8, depth=2, heads=4)
        guidance = {"geometry": 1.0}  # the held-out budget: geometry guidance off keeps more surface (F@0.02 +0.03)
        # Stage 1 misses coarse rims more often than it adds them; keeping voxels down to logit -1 lets stage 2's
        # pruning drop the extras (held-out temporal CD-3D -0.0025, jitter -0.0005).
        occupancy = -1.0
    else:
        raise ConfigError(f"unknown preset {name!r}; choose 'tiny' or 'demo'")
    if res // 2 ** (len(vae_ch) - 1) != ss.resolution:
        raise ConfigError("SC-VAE downsampling must land on the SS-VAE grid")
    geometry_vae = SCVAEConfig(
        in_channels=ORIENTED_GEOMETRY_CHANNELS,
        latent_channels=latent,
        channels=vae_ch,
        binary_channels=GEOMETRY_BINARY_CHANNELS,
    )
    material_vae = SCVAEConfig(in_channels=MATERIAL_CHANNELS, latent_channels=latent, channels=vae_ch)
    components = {
        "image_encoder": enc,
        "ss_vae": ss,
        "geometry_vae": geometry_vae,
        "material_vae": material_vae,
        "ss_flow": dataclasses.replace(flow, in_channels=ss.latent_channels, cond_dim=enc_dim),
        "geometry_flow": dataclasses.replace(flow, in_channels=latent, cond_dim=enc_dim),
        "material_flow": dataclasses.replace(flow, in_channels=latent, extra_channels=latent, cond_dim=enc_dim),
    }
    identity = lambda c: LatentStats([0.0] * c, [1.0] * c)  # noqa: E731
    default = SamplerConfig().cfg_strength
    sampling = {k: SamplerConfig(cfg_strength=guidance.get(k, default)) for k in ("ss", "geometry", "material")}
    pipeline = PipelineConfig(
        preset=name,
        resolution=res,
        image_size=img,
        occupancy_threshold=occupancy,
        latent_stats={"ss": identity(ss.latent_channels), "geometry": identity(latent), "material": identity(latent)},
        sampling=sampling,
    )
    return ModelPreset(pipeline, components)
