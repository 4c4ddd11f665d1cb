"""A TRELLIS.2 release folder as the user downloads it: where each checkpoint lies and what its config says.

A TRELLIS.2 folder (microsoft/TRELLIS.2-4B, downloaded by the user) holds `pipeline.json` and, per model,
`ckpts/<name>.json` (`{"name", "args"}`) + `ckpts/<name>.safetensors`; its stage-1 decoder comes from
microsoft/TRELLIS-image-large, and the encoders (needed only to fine-tune) are released beside the decoders. Here
every checkpoint is found and its config read into ours (flows: `presets.flow_config_from_trellis2`, SC-VAEs:
`sc_vae`, SS decoder and encoder: `ss_vae`); nothing is loaded, and a missing file names what to download.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helix4d.errors import ConfigError
from helix4d.models.flow import FlowConfig
from helix4d.trellis2.presets import flow_config_from_trellis2
from helix4d.trellis2.sc_vae import Trellis2SCVAEConfig
from helix4d.trellis2.ss_vae import Trellis2SSDecoderConfig, Trellis2SSEncoderConfig

MODEL_KEY = {
    "ss": "sparse_structure_flow_model",
    "geometry": "shape_slat_flow_model_{res}",
    "material": "tex_slat_flow_model_{res}",
}
SAMPLER_KEY = {"ss": "sparse_structure_sampler", "geometry": "shape_slat_sampler", "material": "tex_slat_sampler"}
NORMALIZATION_KEY = {"geometry": "shape_slat_normalization", "material": "tex_slat_normalization"}
DOWNLOAD_HINT = "download microsoft/TRELLIS.2-4B yourself (all of it: pipeline.json and ckpts/) and pass its folder"


@dataclass
class Trellis2Folder:
    """A TRELLIS.2 checkpoint folder: its root and the `args` of its `pipeline.json`."""

    root: Path
    args: dict[str, Any]

    def flow_reference(self, stage: str, resolution: int) -> str:
        """The checkpoint path stem of a stage's flow model, e.g. 'ckpts/ss_flow_img_dit_1_3B_64_bf16'."""
        key = MODEL_KEY[stage].format(res=resolution)
        models = self.args.get("models", {})
        if key not in models:
            raise ConfigError(f"{self.root / 'pipeline.json'} names no '{key}' model; {DOWNLOAD_HINT}")
        return str(models[key])

    def sampling(self, stage: str) -> dict[str, Any]:
        """The stage's sampler settings as `SamplerConfig` fields."""
        p = self.args.get(SAMPLER_KEY[stage], {}).get("params", {})
        return {
            "steps": int(p.get("steps", 12)),
            "cfg_strength": float(p.get("guidance_strength", 1.0)),
            "cfg_interval": [float(v) for v in p.get("guidance_interval", (0.0, 1.0))],
            "time_shift": float(p.get("rescale_t", 1.0)),
            "cfg_rescale": float(p.get("guidance_rescale", 0.0)),
        }

    def latent_stats(self, stage: str) -> dict[str, list[float]] | None:
        """The stage's latent normalisation (`LatentStats` fields), or None where pipeline.json gives none."""
        norm = self.args.get(NORMALIZATION_KEY.get(stage, ""), None)
        return {"mean": [float(v) for v in norm["mean"]], "std": [float(v) for v in norm["std"]]} if norm else None


def read_trellis2_folder(src: str | Path) -> Trellis2Folder:
    """The folder's `pipeline.json`, refused with what to download when it is missing or not TRELLIS.2's."""
    root = Path(src)
    if not root.is_dir():
        raise ConfigError(f"TRELLIS.2 folder {root} does not exist; {DOWNLOAD_HINT}")
    path = root / "pipeline.json"
    if not path.is_file():
        raise ConfigError(f"{root} has no pipeline.json, so it is not a TRELLIS.2 checkpoint folder; {DOWNLOAD_HINT}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("args"), dict):
        raise ConfigError(f"{path} is not a TRELLIS.2 pipeline config (no 'args')")
    return Trellis2Folder(root, raw["args"])


def read_checkpoint_config(config_path: Path) -> tuple[str, dict[str, Any]]:
    """`ckpts/<name>.json` -> (model class name, args); the safetensors file beside it must exist too."""
    for p in (config_path, config_path.with_suffix(".safetensors")):
        if not p.is_file():
            raise ConfigError(f"missing {p}; {DOWNLOAD_HINT}")
    try:
        raw = json.loads(config_path.read_text())
        return raw["name"], dict(raw["args"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{config_path} is not a TRELLIS.2 model config ({exc!r})") from None


def read_flow_config(folder: Trellis2Folder, reference: str) -> tuple[FlowConfig, Path]:
    """The FlowConfig of checkpoint `reference` and its safetensors path (both files must exist)."""
    config_path = folder.root / f"{reference}.json"
    name, args = read_checkpoint_config(config_path)
    return flow_config_from_trellis2(name, args, str(config_path)), config_path.with_suffix(".safetensors")


def find_ss_decoder(folder: Trellis2Folder) -> Path:
    """The SS decoder's `<name>.json`: pipeline.json points it into microsoft/TRELLIS-image-large, so look for that
    path under the folder and for `ckpts/<name>.json` beside the flows."""
    reference = folder.args.get("models", {}).get("sparse_structure_decoder")
    if not reference:
        raise ConfigError(f"{folder.root / 'pipeline.json'} names no 'sparse_structure_decoder'; {DOWNLOAD_HINT}")
    candidates = (folder.root / f"{reference}.json", folder.root / "ckpts" / f"{Path(reference).name}.json")
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        raise ConfigError(
            f"TRELLIS.2's stage-1 decoder {reference} is missing: it is released with microsoft/TRELLIS-image-large; "
            f"download {Path(reference).name}.json and .safetensors into {folder.root / 'ckpts'}"
        )
    return found


def read_ss_decoder_config(config_path: Path) -> tuple[Trellis2SSDecoderConfig, Path]:
    """The SS decoder's config from its `<name>.json`, and its safetensors path (both files must exist)."""
    name, args = read_checkpoint_config(config_path)
    return Trellis2SSDecoderConfig.from_trellis(name, args, str(config_path)), config_path.with_suffix(".safetensors")


def read_sc_vae_config(folder: Trellis2Folder, key: str, role: str) -> tuple[Trellis2SCVAEConfig, Path]:
    """The config of the SC-VAE decoder that pipeline.json names under `key`, and its weights."""
    reference = folder.args.get("models", {}).get(key)
    if not reference:
        raise ConfigError(f"{folder.root / 'pipeline.json'} names no '{key}'; {DOWNLOAD_HINT}")
    config_path = folder.root / f"{reference}.json"
    name, args = read_checkpoint_config(config_path)
    config = Trellis2SCVAEConfig.from_trellis(name, args, str(config_path))
    if config.role != role:
        raise ConfigError(f"{config_path}: {name} is an SC-VAE {config.role}, but '{key}' must be a {role}")
    return config, config_path.with_suffix(".safetensors")


def find_encoders(folder: Trellis2Folder, ss_decoder: Path) -> dict[str, tuple[Any, Path]]:
    """The encoders released beside the decoders (`ss_enc_…`, `shape_enc_…`, `tex_enc_…`), where downloaded.

    Generation does not need them; fine-tuning does (they encode new data into latents)."""
    models = folder.args.get("models", {})
    candidates = {
        "ss_encoder": ss_decoder.with_name(ss_decoder.name.replace("ss_dec_", "ss_enc_")),
        "geometry_encoder": folder.root / f"{str(models.get('shape_slat_decoder', '')).replace('_dec_', '_enc_')}.json",
        "material_encoder": folder.root / f"{str(models.get('tex_slat_decoder', '')).replace('_dec_', '_enc_')}.json",
    }
    found = {}
    for name, config_path in candidates.items():
        if config_path.is_file() and config_path.with_suffix(".safetensors").is_file():
            model_name, args = read_checkpoint_config(config_path)
            config_type = Trellis2SSEncoderConfig if name == "ss_encoder" else Trellis2SCVAEConfig
            config = config_type.from_trellis(model_name, args, str(config_path))
            if getattr(config, "role", "encoder") != "encoder":
                raise ConfigError(f"{config_path}: {model_name} is not an encoder")
            found[name] = (config, config_path.with_suffix(".safetensors"))
    return found
