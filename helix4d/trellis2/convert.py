"""Official TRELLIS.2 checkpoints → helix4d flow models, strictly.

A TRELLIS.2 folder (microsoft/TRELLIS.2-4B, downloaded by the user) holds `pipeline.json` and, per model,
`ckpts/<name>.json` (`{"name", "args"}`) + `ckpts/<name>.safetensors`. For each stage's flow model we build the
helix4d `FlowTransformer` its args describe (`presets.flow_config_from_trellis2`), rename the tensors
(`names.py`), and check names and shapes against the model BEFORE loading anything: every missing, unexpected
or mis-shaped tensor is listed (in the checkpoint's own names) in one `ConfigError`. TRELLIS.2's own loader is
non-strict; ours never leaves a weight at its random initialisation. The temporal self-attention copies start
equal to the base weights, so a converted model reproduces the static model on the anchor frame.

`convert_trellis2(src, out)` writes `ss_flow/`, `geometry_flow/`, `material_flow/` (our `config.json` +
`model.safetensors` component format, loadable with `helix4d.pipeline.folder.load_component`), `ss_decoder/`
when the TRELLIS (v1) SS decoder checkpoint is present, and `trellis2.json` (sampling settings, latent
statistics, conditioning model, and what was not converted).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from helix4d.errors import ConfigError
from helix4d.export.files import atomic_dir
from helix4d.models.flow import FlowConfig, FlowTransformer
from helix4d.pipeline.folder import save_component, state_mismatches
from helix4d.trellis2.names import DERIVED_SOURCE_KEYS, is_temporal, to_helix4d, to_trellis2
from helix4d.trellis2.presets import STAGES, flow_config_from_trellis2
from helix4d.trellis2.ss_decoder import Trellis2SSDecoder, Trellis2SSDecoderConfig

RESOLUTIONS = (512, 1024)
COMPONENT = {"ss": "ss_flow", "geometry": "geometry_flow", "material": "material_flow"}
MODEL_KEY = {"ss": "sparse_structure_flow_model", "geometry": "shape_slat_flow_model_{res}",
             "material": "tex_slat_flow_model_{res}"}
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
        """The stage's sampler settings as `StageSampling` fields."""
        p = self.args.get(SAMPLER_KEY[stage], {}).get("params", {})
        return {
            "steps": int(p.get("steps", 12)), "cfg_strength": float(p.get("guidance_strength", 1.0)),
            "cfg_interval": [float(v) for v in p.get("guidance_interval", (0.0, 1.0))],
            "time_shift": float(p.get("rescale_t", 1.0)), "cfg_rescale": float(p.get("guidance_rescale", 0.0)),
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


def helix4d_state(config: FlowConfig, weights: Path, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Our state dict from a checked TRELLIS.2 checkpoint; temporal copies cloned from the base self-attention."""
    check_checkpoint(config, weights)
    source = load_file(str(weights))
    state = {to_helix4d(k): v.to(dtype) for k, v in source.items() if k not in DERIVED_SOURCE_KEYS}
    with torch.device("meta"):
        names = list(FlowTransformer(config).state_dict())
    for name in filter(is_temporal, names):
        state[name] = state[to_helix4d(to_trellis2(name))].clone()
    return state


def load_trellis2_flow(folder: Trellis2Folder, reference: str, dtype: torch.dtype = torch.bfloat16,
                       device: str | torch.device = "cpu") -> tuple[FlowTransformer, FlowConfig]:
    """One TRELLIS.2 flow checkpoint as a ready `FlowTransformer` (its tensors are used in place, no fp32 copy)."""
    config, weights = read_flow_config(folder, reference)
    state = helix4d_state(config, weights, dtype)
    with torch.device("meta"):
        model = FlowTransformer(config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.to(device).eval(), config


def find_ss_decoder(folder: Trellis2Folder) -> Path | None:
    """The SS decoder's `<name>.json`: pipeline.json points it into microsoft/TRELLIS-image-large, so look for that
    path under the folder and for `ckpts/<name>.json` beside the flows; None when the user has not downloaded it."""
    reference = folder.args.get("models", {}).get("sparse_structure_decoder")
    if not reference:
        return None
    candidates = (folder.root / f"{reference}.json", folder.root / "ckpts" / f"{Path(reference).name}.json")
    return next((c for c in candidates if c.is_file()), None)


def load_trellis2_ss_decoder(config_path: str | Path, dtype: torch.dtype = torch.float32
                             ) -> tuple[Trellis2SSDecoder, Trellis2SSDecoderConfig]:
    """TRELLIS' `SparseStructureDecoder` checkpoint (`<name>.json` + `<name>.safetensors`), checked strictly."""
    config_path = Path(config_path)
    name, args = read_checkpoint_config(config_path)
    config = Trellis2SSDecoderConfig.from_trellis(name, args, str(config_path))
    weights = config_path.with_suffix(".safetensors")
    with torch.device("meta"):
        model = Trellis2SSDecoder(config)
    check_tensors({k: tuple(v.shape) for k, v in model.state_dict().items()}, weights)
    model.load_state_dict({k: v.to(dtype) for k, v in load_file(str(weights)).items()}, strict=True, assign=True)
    return model.eval(), config


def load_trellis2_flows(src: str | Path, resolution: int = 512, dtype: torch.dtype = torch.bfloat16,
                        device: str | torch.device = "cpu") -> dict[str, FlowTransformer]:
    """The three flow models of a TRELLIS.2 folder, keyed by helix4d component name (ss_flow, ...)."""
    _check_resolution(resolution)
    folder = read_trellis2_folder(src)
    return {COMPONENT[s]: load_trellis2_flow(folder, folder.flow_reference(s, resolution), dtype, device)[0]
            for s in STAGES}


def convert_trellis2(src: str | Path, out: str | Path, resolution: int = 512, dtype: str = "bfloat16") -> Path:
    """Write the three flows of a TRELLIS.2 folder as helix4d components + `trellis2.json`; returns `out`.

    All checkpoints are checked before anything is written; the folder appears complete or not at all.
    """
    _check_resolution(resolution)
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    folder, out = read_trellis2_folder(src), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} exists and is not an empty folder; choose a new folder")
    references = {s: folder.flow_reference(s, resolution) for s in STAGES}
    configs = {s: read_flow_config(folder, ref) for s, ref in references.items()}
    for config, weights in configs.values():  # fail on any checkpoint before the slow part
        check_checkpoint(config, weights)
    ss_decoder = find_ss_decoder(folder)
    with atomic_dir(out) as tmp:
        for stage, (config, _) in configs.items():
            model, _ = load_trellis2_flow(folder, references[stage], DTYPES[dtype])
            save_component(model, config, tmp / COMPONENT[stage])
            del model
        if ss_decoder is not None:  # stored in float32: fp16 3D convolutions are slow or missing on CPUs
            save_component(*load_trellis2_ss_decoder(ss_decoder), tmp / "ss_decoder")
        manifest = _manifest(folder, resolution, dtype, references, ss_decoder is not None)
        (tmp / "trellis2.json").write_text(json.dumps(manifest, indent=2))
    return out


def _check_resolution(resolution: int) -> None:
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"resolution must be one of {RESOLUTIONS} (TRELLIS.2's 512 or 1024 models), got {resolution}")


def _manifest(folder: Trellis2Folder, resolution: int, dtype: str, references: dict[str, str],
              with_ss_decoder: bool) -> dict[str, Any]:
    cond, models = folder.args.get("image_cond_model", {}), folder.args.get("models", {})
    not_converted = {
        "image_encoder": "DINOv3 is loaded from its own folder (helix4d.trellis2.dino.DinoEncoder)",
        "shape_slat_decoder": f"{models.get('shape_slat_decoder')}: TRELLIS.2 SC-VAE, not implemented yet",
        "tex_slat_decoder": f"{models.get('tex_slat_decoder')}: TRELLIS.2 SC-VAE, not implemented yet",
    }
    if not with_ss_decoder:
        not_converted["sparse_structure_decoder"] = (
            f"{models.get('sparse_structure_decoder')} not found: download it (microsoft/TRELLIS-image-large) "
            "into the TRELLIS.2 folder's ckpts/ and convert again"
        )
    return {
        "source": str(folder.root.resolve()),
        "resolution": resolution,
        "dtype": dtype,
        "checkpoints": {COMPONENT[s]: ref for s, ref in references.items()},
        "sampling": {s: folder.sampling(s) for s in STAGES},
        "latent_stats": {s: st for s in STAGES if (st := folder.latent_stats(s)) is not None},
        "image_encoder": {"name": cond.get("name"), **cond.get("args", {})},
        "converted": [COMPONENT[s] for s in STAGES] + (["ss_decoder"] if with_ss_decoder else []),
        "not_converted": not_converted,
    }
