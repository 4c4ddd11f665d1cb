"""Official TRELLIS.2 checkpoints → a helix4d model folder, strictly.

A TRELLIS.2 folder (microsoft/TRELLIS.2-4B, downloaded by the user) holds `pipeline.json` and, per model,
`ckpts/<name>.json` (`{"name", "args"}`) + `ckpts/<name>.safetensors`; its stage-1 decoder comes from
microsoft/TRELLIS-image-large. For every model we build the helix4d module its args describe (flows:
`presets.flow_config_from_trellis2`, SC-VAE decoders: `sc_vae`, SS decoder: `ss_decoder`), rename tensors where
our names differ (`names.py`), and check names and shapes against the module BEFORE loading anything: every
missing, unexpected or mis-shaped tensor is listed (in the checkpoint's own names) in one `ConfigError`.
TRELLIS.2's own loader is non-strict; ours never leaves a weight at its random initialisation. The temporal
self-attention copies start equal to the base weights, so a converted model reproduces the static model on the
anchor frame.

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
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from helix4d.errors import ConfigError
from helix4d.io.files import atomic_dir, check_output_dir
from helix4d.models.flow import FlowConfig, FlowTransformer
from helix4d.pipeline.config import LatentStats, PipelineConfig
from helix4d.pipeline.folder import save_component, state_mismatches
from helix4d.pipeline.sampler import SamplerConfig
from helix4d.trellis2.dino import DINO_IMAGE_SIZE, IMAGE_ENCODER, dino_folder_files
from helix4d.trellis2.names import (
    DERIVED_SOURCE_KEYS,
    is_temporal,
    to_helix4d,
    to_trellis2,
)
from helix4d.trellis2.presets import STAGES, flow_config_from_trellis2
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

RESOLUTIONS = (512, 1024)
ENCODER_TYPES = {
    "ss_encoder": Trellis2SSEncoder,
    "geometry_encoder": Trellis2SCVAEEncoder,
    "material_encoder": Trellis2SCVAEEncoder,
}
COMPONENT = {"ss": "ss_flow", "geometry": "geometry_flow", "material": "material_flow"}
CASCADE_FLOW = "geometry_flow_lr"  # the 512 shape flow whose output places the 1024 models' voxels
MODEL_KEY = {
    "ss": "sparse_structure_flow_model",
    "geometry": "shape_slat_flow_model_{res}",
    "material": "tex_slat_flow_model_{res}",
}
SAMPLER_KEY = {"ss": "sparse_structure_sampler", "geometry": "shape_slat_sampler", "material": "tex_slat_sampler"}
NORMALIZATION_KEY = {"geometry": "shape_slat_normalization", "material": "tex_slat_normalization"}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
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
        norm = self.args.get(NORMALIZATION_KEY.get(stage, ""), None)
        return {"mean": [float(v) for v in norm["mean"]], "std": [float(v) for v in norm["std"]]} if norm else None


def read_trellis2_folder(src: str | Path) -> Trellis2Folder:
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


def expected_trellis2_shapes(config: FlowConfig) -> dict[str, tuple[int, ...]]:
    """TRELLIS.2 name -> shape of every tensor a checkpoint for this config must hold (no memory: meta device)."""
    with torch.device("meta"):
        model = FlowTransformer(config)
    return {to_trellis2(k): tuple(v.shape) for k, v in model.state_dict().items() if not is_temporal(k)}


def check_tensors(expected: dict[str, tuple[int, ...]], weights: Path) -> None:
    """Names, shapes and dtypes of a checkpoint against a model, read from its header only; one error for all."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            found = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys() if k not in DERIVED_SOURCE_KEYS}
            dtypes = {k: f.get_slice(k).get_dtype() for k in found}
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"{weights} is not a readable safetensors file ({exc})") from None
    problems = state_mismatches(expected, found)
    not_float = sorted(f"{k}: {d}" for k, d in dtypes.items() if d not in ("BF16", "F16", "F32", "F64"))
    if not_float:
        problems.append(f"not floating point {not_float}")
    if problems:
        raise ConfigError(f"{weights} does not match the TRELLIS.2 model its config describes: " + "; ".join(problems))


def check_checkpoint(config: FlowConfig, weights: Path) -> None:
    """A flow checkpoint against the model its config describes (see `check_tensors`)."""
    check_tensors(expected_trellis2_shapes(config), weights)


def _flow_from_checked(config: FlowConfig, weights: Path, dtype: torch.dtype) -> FlowTransformer:
    """Our flow model from a checked TRELLIS.2 checkpoint (its tensors are used in place, no fp32 copy); the
    temporal copies are cloned from the base self-attention."""
    check_checkpoint(config, weights)
    source = load_file(str(weights))
    state = {to_helix4d(k): v.to(dtype) for k, v in source.items() if k not in DERIVED_SOURCE_KEYS}
    with torch.device("meta"):
        model = FlowTransformer(config)
    for name in filter(is_temporal, model.state_dict()):
        state[name] = state[to_helix4d(to_trellis2(name))].clone()
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def load_trellis2_flow(
    folder: Trellis2Folder, reference: str, dtype: torch.dtype = torch.bfloat16, device: str | torch.device = "cpu"
) -> tuple[FlowTransformer, FlowConfig]:
    """One TRELLIS.2 flow checkpoint as a ready `FlowTransformer`."""
    config, weights = read_flow_config(folder, reference)
    return _flow_from_checked(config, weights, dtype).to(device), config


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


def check_module_checkpoint(model_type: type[nn.Module], config: Any, weights: Path) -> nn.Module:
    """The module `config` describes, on the meta device, after its checkpoint matched it by name and shape."""
    with torch.device("meta"):
        model = model_type(config)
    check_tensors({k: tuple(v.shape) for k, v in model.state_dict().items()}, weights)
    return model


def load_checked(model_type: type[nn.Module], config: Any, weights: Path, dtype: torch.dtype) -> nn.Module:
    """A module whose checkpoint matched `config` by name and shape (header first), loaded strictly in `dtype`."""
    model = check_module_checkpoint(model_type, config, weights)
    model.load_state_dict({k: v.to(dtype) for k, v in load_file(str(weights)).items()}, strict=True, assign=True)
    return model.eval()


def read_ss_decoder_config(config_path: Path) -> tuple[Trellis2SSDecoderConfig, Path]:
    name, args = read_checkpoint_config(config_path)
    return Trellis2SSDecoderConfig.from_trellis(name, args, str(config_path)), config_path.with_suffix(".safetensors")


def load_trellis2_ss_decoder(
    config_path: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[Trellis2SSDecoder, Trellis2SSDecoderConfig]:
    """TRELLIS' `SparseStructureDecoder` checkpoint (`<name>.json` + `<name>.safetensors`), checked strictly."""
    config, weights = read_ss_decoder_config(Path(config_path))
    return load_checked(Trellis2SSDecoder, config, weights, dtype), config


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
            yield name, _flow_from_checked(config, weights, dtype), config
        yield (
            "ss_vae",
            load_checked(Trellis2SSDecoder, self.ss_decoder[0], self.ss_decoder[1], torch.float32),
            self.ss_decoder[0],
        )
        for name, (config, weights) in self.decoders.items():
            yield name, load_checked(Trellis2SCVAEDecoder, config, weights, torch.float32), config
        for name, (config, weights) in self.encoders.items():
            yield name, load_checked(ENCODER_TYPES[name], config, weights, torch.float32), config


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
