"""Training checkpoints: what they hold, and writing them so that a crash never leaves a broken file.

A checkpoint `checkpoints/step_XXXXXXXX.pt` holds everything needed to continue bit-for-bit:
  step            optimizer steps done (the LR schedule is a pure function of it)
  model           trainable parameters and buffers (frozen parameters are rebuilt by the task, never saved)
  optimizer       AdamW state keyed by parameter name
  ema             fp32 averages of the trainable parameters (or None)
  sampler         (epoch, batch in epoch) of the next global batch, to check the data order on resume
  rng             per-rank RNG states: python, numpy, torch CPU (+ CUDA)
  world_size, config
Tensors are stored unsharded, so a run may resume on a different number of processes (RNG streams then restart).
Files are written to a temporary name in the same folder and moved into place with os.replace (atomic on POSIX).
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from helix4d.errors import ConfigError
from helix4d.io.files import atomic_path
from helix4d.train.distributed import DistEnv
from helix4d.train.ema import EMA

FORMAT_VERSION = 1
_NAME = re.compile(r"^step_(\d{8})\.pt$")
FULL_STATE = StateDictOptions(full_state_dict=True, cpu_offload=True)  # whole tensors, on rank 0's CPU


def checkpoint_path(ckpt_dir: Path, step: int) -> Path:
    return ckpt_dir / f"step_{step:08d}.pt"


def list_checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints in `ckpt_dir`, oldest first (temporary files of interrupted writes are ignored)."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if _NAME.match(p.name))


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    found = list_checkpoints(ckpt_dir)
    return found[-1] if found else None


def atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file beside `path`, fsync, then os.replace: readers see the old file or the new
    one, never half of one. On any failure the temporary file is removed and the error re-raised."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())


def save_training_state(
    path: Path,
    *,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ema: EMA | None,
    sampler_position: tuple[int, int],
    config: dict[str, Any],
    env: DistEnv,
    keep: int,
) -> None:
    """Write a checkpoint (rank 0) and delete all but the newest `keep`. Collective: every rank must call it."""
    frozen = _frozen_names(model)
    model_state = get_model_state_dict(model, options=FULL_STATE)
    optim_state = get_optimizer_state_dict(model, optimizer, options=FULL_STATE)
    ema_state = ema.full_state_dict() if ema is not None else None
    rng = env.gather_object(_rng_state(env.device))
    if env.is_main:
        state = {
            "format": FORMAT_VERSION,
            "step": step,
            "model": {k: v for k, v in model_state.items() if k not in frozen},
            "optimizer": optim_state,
            "ema": ema_state,
            "sampler": list(sampler_position),
            "rng": rng,
            "world_size": env.world_size,
            "config": config,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(state, path)
        for old in list_checkpoints(path.parent)[:-keep]:
            old.unlink()
    env.barrier()


def load_training_state(
    path: Path, *, model: nn.Module, optimizer: torch.optim.Optimizer, ema: EMA | None, env: DistEnv
) -> dict[str, Any]:
    """Restore model, optimizer and EMA from a checkpoint. Returns its other fields: step, sampler, config,
    world_size, and rng: this rank's RNG states (None when the world size changed) for `set_rng_state`, which
    the caller applies right before the first step. Every rank reads the file (memory-mapped, so ranks on one
    node share the pages)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # a truncated or foreign file: say which one, not a pickle traceback
        raise ConfigError(f"cannot read checkpoint {path} ({exc}); delete it to resume from the one before") from None
    if state.get("format") != FORMAT_VERSION:
        raise ConfigError(f"{path} is not a helix4d training checkpoint (format {state.get('format')!r})")
    frozen = _frozen_names(model)
    expected = {k for k in model.state_dict() if k not in frozen}
    if state["model"].keys() != expected:
        missing, unexpected = sorted(expected - state["model"].keys()), sorted(state["model"].keys() - expected)
        raise ConfigError(
            f"checkpoint {path} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}; "
            "was it written by another task or task_options?"
        )
    set_model_state_dict(model, state["model"], options=StateDictOptions(full_state_dict=True, strict=False))
    set_optimizer_state_dict(model, optimizer, state["optimizer"], options=StateDictOptions(full_state_dict=True))
    if ema is not None:
        if state["ema"] is None:
            raise ConfigError(f"checkpoint {path} has no EMA weights; set ema_decay to 0 to resume it")
        ema.load_full_state_dict(state["ema"])
    rng = state["rng"][env.rank] if state["world_size"] == env.world_size else None
    return {**{k: state[k] for k in ("step", "sampler", "config", "world_size")}, "rng": rng}


def _frozen_names(model: nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if not p.requires_grad}


def _rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states in types that `torch.load(weights_only=True)` accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore RNG states saved in a checkpoint (the inverse of `_rng_state`)."""
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    random.setstate(state["python"])
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
