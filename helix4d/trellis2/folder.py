"""Loading a model folder written by `helix4d convert trellis2` (pipeline.json `architecture: "trellis2"`).

Same layout as our own model folders (one `config.json` + `model.safetensors` per component, loaded strictly);
the component types are TRELLIS.2's: its stage-1 decoder as `ss_vae`, its shape / texture SC-VAE decoders as
`geometry_vae` / `material_vae`, and DINOv3 (the user's own download, copied into `image_encoder/`).
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from helix4d.errors import ConfigError, InputError
from helix4d.models.flow import FlowConfig, FlowTransformer
from helix4d.pipeline.config import PipelineConfig
from helix4d.pipeline.folder import load_component
from helix4d.trellis2.dino import DINOV3, IMAGE_ENCODER, DinoEncoder
from helix4d.trellis2.sc_vae import (
    Trellis2SCVAEConfig,
    Trellis2SCVAEDecoder,
    Trellis2SCVAEEncoder,
)
from helix4d.trellis2.ss_vae import (
    Trellis2SSDecoder,
    Trellis2SSDecoderConfig,
    Trellis2SSEncoder,
    Trellis2SSEncoderConfig,
)

COMPONENT_TYPES = {
    "ss_vae": (Trellis2SSDecoderConfig, Trellis2SSDecoder),
    "geometry_vae": (Trellis2SCVAEConfig, Trellis2SCVAEDecoder),
    "material_vae": (Trellis2SCVAEConfig, Trellis2SCVAEDecoder),
    "ss_flow": (FlowConfig, FlowTransformer),
    "geometry_flow": (FlowConfig, FlowTransformer),
    "material_flow": (FlowConfig, FlowTransformer),
}


ENCODER_TYPES = {
    "ss_encoder": (Trellis2SSEncoderConfig, Trellis2SSEncoder),
    "geometry_encoder": (Trellis2SCVAEConfig, Trellis2SCVAEEncoder),
    "material_encoder": (Trellis2SCVAEConfig, Trellis2SCVAEEncoder),
}


def load_trellis2_components(folder: Path, config: PipelineConfig) -> dict[str, nn.Module]:
    """Every component of a converted TRELLIS.2 model folder; a missing DINO copy is a clear error."""
    types = COMPONENT_TYPES | ({"geometry_flow_lr": COMPONENT_TYPES["geometry_flow"]} if config.cascade_from else {})
    modules = {name: load_component(name, folder / name, t)[0] for name, t in types.items()}
    return modules | {"image_encoder": load_trellis2_image_encoder(folder, config)}


def load_trellis2_image_encoder(folder: Path, config: PipelineConfig) -> DinoEncoder:
    """The folder's copy of DINOv3 (frozen); a missing copy is a clear error."""
    try:
        return DinoEncoder.from_folder(folder / IMAGE_ENCODER, config.image_size)
    except InputError:
        raise ConfigError(
            f"{folder} has no image encoder: download {DINOV3} yourself and copy its files into "
            f"{folder / IMAGE_ENCODER} (or convert again with --dino FOLDER)"
        ) from None


def load_trellis2_encoders(folder: Path) -> dict[str, nn.Module]:
    """The three encoders a fine-tune needs to turn new data into latents; missing ones are a clear error."""
    missing = [name for name in ENCODER_TYPES if not (folder / name).is_dir()]
    if missing:
        raise ConfigError(
            f"{folder} has no {', '.join(missing)}: fine-tuning needs TRELLIS.2's encoders. Download "
            "ckpts/shape_enc_next_dc_f16c32_fp16.* and tex_enc_next_dc_f16c32_fp16.* (microsoft/TRELLIS.2-4B) and "
            "ss_enc_conv3d_16l8_fp16.* (microsoft/TRELLIS-image-large) into the TRELLIS.2 folder's ckpts/ and "
            "convert again"
        )
    return {name: load_component(name, folder / name, types)[0] for name, types in ENCODER_TYPES.items()}
