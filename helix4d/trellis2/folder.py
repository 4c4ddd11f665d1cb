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
from helix4d.trellis2.sc_vae import Trellis2SCVAEConfig, Trellis2SCVAEDecoder
from helix4d.trellis2.ss_decoder import Trellis2SSDecoder, Trellis2SSDecoderConfig

COMPONENT_TYPES = {
    "ss_vae": (Trellis2SSDecoderConfig, Trellis2SSDecoder),
    "geometry_vae": (Trellis2SCVAEConfig, Trellis2SCVAEDecoder),
    "material_vae": (Trellis2SCVAEConfig, Trellis2SCVAEDecoder),
    "ss_flow": (FlowConfig, FlowTransformer),
    "geometry_flow": (FlowConfig, FlowTransformer),
    "material_flow": (FlowConfig, FlowTransformer),
}


def load_trellis2_components(folder: Path, config: PipelineConfig) -> dict[str, nn.Module]:
    """Every component of a converted TRELLIS.2 model folder; a missing DINO copy is a clear error."""
    modules = {name: load_component(name, folder / name, types)[0] for name, types in COMPONENT_TYPES.items()}
    try:
        modules["image_encoder"] = DinoEncoder.from_folder(folder / IMAGE_ENCODER, config.image_size)
    except InputError:
        raise ConfigError(
            f"{folder} has no image encoder: download {DINOV3} yourself and copy its files into "
            f"{folder / IMAGE_ENCODER} (or convert again with --dino FOLDER)"
        ) from None
    return modules
