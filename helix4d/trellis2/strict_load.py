"""TRELLIS.2 checkpoints loaded strictly: every tensor checked against our module before anything is loaded.

For every model we build the helix4d module its config describes (on the meta device: no memory), rename tensors
where our names differ (`names.py`), and check names, shapes and dtypes against the module from the safetensors
header alone: every missing, unexpected or mis-shaped tensor is listed (in the checkpoint's own names) in one
`ConfigError`. TRELLIS.2's own loader is non-strict; ours never leaves a weight at its random initialisation. The
temporal self-attention copies start equal to the base weights, so a converted model reproduces the static model on
the anchor frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from helix4d.errors import ConfigError
from helix4d.models.flow import FlowConfig, FlowTransformer
from helix4d.pipeline.folder import state_mismatches
from helix4d.trellis2.names import DERIVED_SOURCE_KEYS, is_temporal, to_helix4d, to_trellis2
from helix4d.trellis2.release import Trellis2Folder, read_flow_config, read_ss_decoder_config
from helix4d.trellis2.ss_vae import Trellis2SSDecoder, Trellis2SSDecoderConfig


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


def flow_from_checked(config: FlowConfig, weights: Path, dtype: torch.dtype) -> FlowTransformer:
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
    return flow_from_checked(config, weights, dtype).to(device), config


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


def load_trellis2_ss_decoder(
    config_path: str | Path, dtype: torch.dtype = torch.float32
) -> tuple[Trellis2SSDecoder, Trellis2SSDecoderConfig]:
    """TRELLIS' `SparseStructureDecoder` checkpoint (`<name>.json` + `<name>.safetensors`), checked strictly."""
    config, weights = read_ss_decoder_config(Path(config_path))
    return load_checked(Trellis2SSDecoder, config, weights, dtype), config
