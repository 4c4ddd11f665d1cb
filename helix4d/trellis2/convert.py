"""Official TRELLIS.2 checkpoints → a helix4d model folder, strictly.

`plan_trellis2` finds every checkpoint a TRELLIS.2 folder provides for one resolution (`release.py`) and checks
each against the module its config describes (`strict_load.py`) before anything is loaded, so a wrong or partial
download fails in seconds with every problem named, not after gigabytes were read.

`convert_trellis2(src, out)` writes a model folder in our format (`pipeline.json` with `architecture:
"trellis2"`, one `config.json` + `model.safetensors` per component, `image_encoder/` = the user's DINOv3 folder
when given) plus `trellis2.json` (where each component came from); `Helix4DPipeline.from_trellis2` builds the
same pipeline in memory.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from helix4d.errors import ConfigError
from helix4d.io.files import atomic_dir, check_output_dir
from helix4d.models.flow import FlowConfig, FlowTransformer
from helix4d.pipeline.config import LatentStats, PipelineConfig
from helix4d.pipeline.folder import save_component
from helix4d.pipeline.sampler import SamplerConfig
from helix4d.trellis2.dino import DINO_IMAGE_SIZE, IMAGE_ENCODER, dino_folder_files
from helix4d.trellis2.presets import STAGES
from helix4d.trellis2.release import (
    Trellis2Folder,
    find_encoders,
    find_ss_decoder,
    read_flow_config,
    read_sc_vae_config,
    read_ss_decoder_config,
    read_trellis2_folder,
)
from helix4d.trellis2.sc_vae import (
    Trellis2SCVAEConfig,
    Trellis2SCVAEDecoder,
    Trellis2SCVAEEncoder,
)
from helix4d.trellis2.ss_vae import Trellis2SSDecoder, Trellis2SSDecoderConfig, Trellis2SSEncoder
from helix4d.trellis2.strict_load import (
    check_checkpoint,
    check_module_checkpoint,
    flow_from_checked,
    load_checked,
    load_trellis2_flow,
)

RESOLUTIONS = (512, 1024)
ENCODER_TYPES = {
    "ss_encoder": Trellis2SSEncoder,
    "geometry_encoder": Trellis2SCVAEEncoder,
    "material_encoder": Trellis2SCVAEEncoder,
}
COMPONENT = {"ss": "ss_flow", "geometry": "geometry_flow", "material": "material_flow"}
CASCADE_FLOW = "geometry_flow_lr"  # the 512 shape flow whose output places the 1024 models' voxels
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass
class Trellis2Plan:
    """Everything a TRELLIS.2 folder provides for one resolution, every checkpoint checked by name and shape."""

    folder: Trellis2Folder
    resolution: int
    flows: dict[str, tuple[FlowConfig, Path]]  # keyed by component: ss_flow, geometry_flow, material_flow (+ _lr)
    ss_decoder: tuple[Trellis2SSDecoderConfig, Path]
    decoders: dict[str, tuple[Trellis2SCVAEConfig, Path]]  # "geometry_vae" (shape), "material_vae" (texture)
    encoders: dict[str, tuple[Any, Path]]  # those found of ss_encoder, geometry_encoder, material_encoder
    cascade_from: int | None = None  # cascade: the resolution of the first geometry pass (its flow: geometry_flow_lr)

    def pipeline_config(self) -> PipelineConfig:
        """Our pipeline settings for these models: TRELLIS.2's samplers and latent statistics."""
        channels = self.flows["ss_flow"][0].in_channels
        identity = LatentStats([0.0] * channels, [1.0] * channels)
        stats = {s: LatentStats(**st) for s in STAGES if (st := self.folder.latent_stats(s)) is not None}
        sampling = {}
        for s in STAGES:
            raw = self.folder.sampling(s)
            sampling[s] = SamplerConfig(**{**raw, "cfg_interval": tuple(raw["cfg_interval"])})
        return PipelineConfig(
            preset="trellis2",
            architecture="trellis2",
            resolution=self.resolution,
            image_size=DINO_IMAGE_SIZE,
            latent_stats={"ss": identity, **stats},
            sampling=sampling,
            trained=True,
            cascade_from=self.cascade_from,
        )

    def components(self, dtype: torch.dtype) -> Iterator[tuple[str, nn.Module, Any]]:
        """(component name, module, config) one at a time, so a converter holds one 1.3 B model at once.

        Flows come in `dtype`; the decoders in float32 (fp16 3D convolutions are slow or missing on CPUs)."""
        for name, (config, weights) in self.flows.items():
            yield name, flow_from_checked(config, weights, dtype), config
        yield (
            "ss_vae",
            load_checked(Trellis2SSDecoder, self.ss_decoder[0], self.ss_decoder[1], torch.float32),
            self.ss_decoder[0],
        )
        for name, (config, weights) in self.decoders.items():
            yield name, load_checked(Trellis2SCVAEDecoder, config, weights, torch.float32), config
        for name, (config, weights) in self.encoders.items():
            yield name, load_checked(ENCODER_TYPES[name], config, weights, torch.float32), config


def plan_trellis2(src: str | Path, resolution: int = 512, cascade: bool = False) -> Trellis2Plan:
    """Read a TRELLIS.2 folder and check every checkpoint it needs (headers only) before anything is loaded.

    `cascade` (TRELLIS.2's "1024_cascade", its default): structure and a first geometry pass with the 512 models,
    then geometry and material with the 1024 models on the voxels that pass predicts."""
    _check_resolution(resolution)
    if cascade and resolution != 1024:
        raise ConfigError("the cascade refines 512 into 1024: use resolution 1024 with it")
    folder = read_trellis2_folder(src)
    flows = {COMPONENT[s]: read_flow_config(folder, folder.flow_reference(s, resolution)) for s in STAGES}
    if cascade:
        flows[CASCADE_FLOW] = read_flow_config(folder, folder.flow_reference("geometry", 512))
    ss_decoder_path = find_ss_decoder(folder)
    ss_decoder = read_ss_decoder_config(ss_decoder_path)
    encoders = find_encoders(folder, ss_decoder_path)
    decoders = {
        "geometry_vae": read_sc_vae_config(folder, "shape_slat_decoder", "decoder"),
        "material_vae": read_sc_vae_config(folder, "tex_slat_decoder", "decoder"),
    }
    for config, weights in flows.values():
        check_checkpoint(config, weights)
    for model_type, (config, weights) in (
        [(Trellis2SSDecoder, ss_decoder)]
        + [(Trellis2SCVAEDecoder, d) for d in decoders.values()]
        + [(ENCODER_TYPES[name], e) for name, e in encoders.items()]
    ):
        check_module_checkpoint(model_type, config, weights)
    if decoders["geometry_vae"][0].geometry is False or decoders["material_vae"][0].pred_subdiv:
        raise ConfigError(
            "shape_slat_decoder must be a FlexiDualGridVaeDecoder and tex_slat_decoder a guided "
            "SparseUnetVaeDecoder (pred_subdiv false), as TRELLIS.2 releases them"
        )
    coarse = (512 if cascade else resolution) // decoders["geometry_vae"][0].downsampling
    if ss_decoder[0].resolution % coarse:
        raise ConfigError(
            f"the stage-1 decoder's {ss_decoder[0].resolution}³ grid does not pool onto the "
            f"{coarse}³ latent grid of the {resolution} models"
        )
    return Trellis2Plan(folder, resolution, flows, ss_decoder, decoders, encoders, 512 if cascade else None)


def load_trellis2_flows(
    src: str | Path, resolution: int = 512, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu"
) -> dict[str, FlowTransformer]:
    """The three flow models of a TRELLIS.2 folder, keyed by helix4d component name (ss_flow, ...)."""
    _check_resolution(resolution)
    folder = read_trellis2_folder(src)
    return {
        COMPONENT[s]: load_trellis2_flow(folder, folder.flow_reference(s, resolution), dtype, device)[0] for s in STAGES
    }


def convert_trellis2(
    src: str | Path,
    out: str | Path,
    resolution: int = 512,
    dtype: str = "bfloat16",
    dino: str | Path | None = None,
    cascade: bool = False,
) -> Path:
    """Write a TRELLIS.2 folder as a helix4d model folder (`helix4d generate --model OUT`); returns `out`.

    All checkpoints are checked before anything is written; the folder appears complete or not at all. With
    `dino` (a DINOv3 folder the user downloaded) its files are copied into `image_encoder/`, which makes the
    folder self-contained.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    out = check_output_dir(out, inputs=(src, dino))
    plan = plan_trellis2(src, resolution, cascade)
    dino_files = dino_folder_files(Path(dino)) if dino is not None else []
    with atomic_dir(out) as tmp:
        for name, module, config in plan.components(DTYPES[dtype]):
            save_component(module, config, tmp / name)
            del module
        if dino_files:
            (tmp / IMAGE_ENCODER).mkdir()
            for f in dino_files:
                shutil.copy2(f, tmp / IMAGE_ENCODER / f.name)
        (tmp / "pipeline.json").write_text(json.dumps(plan.pipeline_config().to_dict(), indent=2))
        (tmp / "trellis2.json").write_text(json.dumps(_manifest(plan, dtype, bool(dino_files)), indent=2))
    return out


def _check_resolution(resolution: int) -> None:
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"resolution must be one of {RESOLUTIONS} (TRELLIS.2's 512 or 1024 models), got {resolution}")


def _manifest(plan: Trellis2Plan, dtype: str, with_dino: bool) -> dict[str, Any]:
    folder = plan.folder
    cond, models = folder.args.get("image_cond_model", {}), folder.args.get("models", {})
    return {
        "source": str(folder.root.resolve()),
        "resolution": plan.resolution,
        "dtype": dtype,
        "checkpoints": {name: str(w.with_suffix("")) for name, (_, w) in plan.flows.items()}
        | {
            "ss_vae": str(plan.ss_decoder[1].with_suffix("")),
            "geometry_vae": models.get("shape_slat_decoder"),
            "material_vae": models.get("tex_slat_decoder"),
        }
        | {name: str(w.with_suffix("")) for name, (_, w) in plan.encoders.items()},
        "encoders": sorted(plan.encoders) or "none found: generation works, fine-tuning needs them",
        "image_encoder": {
            "name": cond.get("name"),
            **cond.get("args", {}),
            "copied": with_dino,
            "folder": IMAGE_ENCODER,
        },
    }
