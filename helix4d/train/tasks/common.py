"""What every training task shares: its options parsed strictly, a fresh component of another shape, the
trained component written back into its model folder, a VAE's loss as a forward pass."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from helix4d.errors import ConfigError
from helix4d.io.files import atomic_dir
from helix4d.pipeline.folder import save_component
from helix4d.train.config import TrainConfig, parse_dataclass


def fresh_of_shape(config: Any, shape: dict[str, Any] | None, option: str) -> Any | None:
    """`config` with the fields of `shape` replaced, or None when that changes nothing (keep the trained weights):
    how a task option asks for a fresh component of another shape."""
    if not shape:
        return None
    try:
        fresh = dataclasses.replace(config, **shape)
    except TypeError as exc:
        raise ConfigError(f"task_options.{option}: {exc}") from None
    return None if fresh == config else fresh


def task_options(config: TrainConfig, cls: type[Any]) -> Any:
    """`config.task_options` as the task's options dataclass (unknown keys and wrong types are errors)."""
    return parse_dataclass(cls, config.task_options, f"task_options of task {config.task!r}")


def install_component(module: nn.Module, config: Any, model_folder: Path, name: str, run_out: Path) -> None:
    """Write the trained component into the run's output and replace (or add) it in the model folder atomically."""
    save_component(module, config, run_out / name)
    with atomic_dir(model_folder / name) as staging:
        shutil.copytree(run_out / name, staging, dirs_exist_ok=True)


class LossModule(nn.Module):
    """Wraps a VAE so DDP sees its loss as the forward pass (gradient sync hooks need forward)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> tuple[Tensor, dict[str, float]]:
        return self.inner.loss(*args, **kwargs)
