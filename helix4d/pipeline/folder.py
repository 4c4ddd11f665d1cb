"""Model folders: `pipeline.json` + `<component>/config.json` + `<component>/model.safetensors` (docs/design.md §6).

Loading is strict: a missing, unexpected or mis-shaped tensor is listed in one clear error, never silently left
at its random initialisation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from helix4d.errors import ConfigError
from helix4d.io.files import atomic_dir, check_output_dir
from helix4d.models.flow import FlowTransformer
from helix4d.models.image_encoder import ImageEncoder
from helix4d.models.sc_vae import SCVAE
from helix4d.models.ss_vae import SSVAE
from helix4d.pipeline.config import COMPONENTS, CONFIG_TYPES, ModelPreset, PipelineConfig

MODEL_TYPES = {
    "image_encoder": ImageEncoder,
    "ss_image_encoder": ImageEncoder,
    "ss_vae": SSVAE,
    "geometry_vae": SCVAE,
    "material_vae": SCVAE,
    "ss_flow": FlowTransformer,
    "geometry_flow": FlowTransformer,
    "material_flow": FlowTransformer,
}


def build_component(name: str, config: Any) -> nn.Module:
    """A freshly initialised component from its config dataclass."""
    return MODEL_TYPES[name](config)


def config_from_dict(name: str, raw: dict, cls: type | None = None) -> Any:
    """Rebuild a component config (of type `cls`, default: our component's), JSON lists back into tuples."""
    cls = cls or CONFIG_TYPES[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - fields
    if unknown:
        raise ConfigError(f"{name}/config.json has unknown fields {sorted(unknown)}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return cls(**values)


def save_component(module: nn.Module, config: Any, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    save_file(state, str(folder / "model.safetensors"))


def state_mismatches(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]]) -> list[str]:
    """Every missing, unexpected and mis-shaped key (name -> shape maps), as parts of one error message."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(found[k])} vs model {tuple(expected[k])}"
        for k in set(expected) & set(found)
        if tuple(found[k]) != tuple(expected[k])
    )
    problems = [
        f"missing {missing}" if missing else "",
        f"unexpected {unexpected}" if unexpected else "",
        f"mis-shaped {shapes}" if shapes else "",
    ]
    return [p for p in problems if p]


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    """load_state_dict that reports every missing/unexpected/mis-shaped key at once."""
    own = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problems = state_mismatches(own, {k: tuple(v.shape) for k, v in state.items()})
    if problems:
        raise ConfigError(f"weights in {where} do not match the model: " + "; ".join(problems))
    module.load_state_dict(state, strict=True)


def read_component_config(name: str, folder: Path, config_type: type | None = None) -> Any:
    """A component's `config.json` alone (no weights), as its dataclass (`config_type`, default: our own)."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"model folder is missing {config_path}; is this a helix4d model folder?")
    try:
        return config_from_dict(name, json.loads(config_path.read_text()), config_type)
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ConfigError(f"{config_path} is not a valid {name} config ({exc})") from None


def load_component(name: str, folder: Path, types: tuple[type, type[nn.Module]] | None = None) -> tuple[nn.Module, Any]:
    """One component folder, strictly; `types` = (config class, module class) when not our own component's."""
    config_type, model_type = types or (CONFIG_TYPES[name], MODEL_TYPES[name])
    weights_path = folder / "model.safetensors"
    if not weights_path.is_file():
        raise ConfigError(f"model folder is missing {weights_path}; is this a helix4d model folder?")
    config = read_component_config(name, folder, config_type)
    module = model_type(config)
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ConfigError(f"{weights_path} is not a readable safetensors file ({exc})") from None
    load_state_strict(module, state, str(weights_path))
    return module.eval(), config


def read_pipeline_config(folder: Path) -> PipelineConfig:
    path = folder / "pipeline.json"
    if not folder.is_dir():
        raise ConfigError(f"model folder {folder} does not exist")
    if not path.is_file():
        raise ConfigError(
            f"{folder} is not a helix4d model folder (no pipeline.json); create one with `helix4d model init`"
        )
    try:
        return PipelineConfig.from_dict(json.loads(path.read_text()))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc})") from None


def write_model_folder(
    out: Path, pipeline: PipelineConfig, modules: dict[str, nn.Module], configs: dict[str, Any]
) -> None:
    """Write every component and pipeline.json into a temporary folder, then move it into place; `out` must be a
    new or empty folder."""
    out = check_output_dir(out)
    with atomic_dir(out) as tmp:
        for name in COMPONENTS:
            save_component(modules[name], configs[name], tmp / name)
        (tmp / "pipeline.json").write_text(json.dumps(pipeline.to_dict(), indent=2))


def init_model_folder(spec: ModelPreset, out: Path, seed: int = 0) -> None:
    """A randomly initialised model folder in the `from_pretrained` format (the start of training from scratch)."""
    check_output_dir(out)
    torch.manual_seed(seed)
    modules = {name: build_component(name, spec.components[name]) for name in COMPONENTS}
    write_model_folder(out, spec.pipeline, modules, spec.components)
