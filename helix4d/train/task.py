"""What a model must provide to be trained by the engine, and the registry that maps config names to tasks.

A task owns everything model-specific (architecture, data, loss, output format); the engine owns everything
else (processes, devices, optimizer, schedule, EMA, checkpoints, logs). Register a task with

    @register_task("ss_vae")
    class SSVAETask(Task):
        def __init__(self, config: TrainConfig): ...

and name it in the config: {"task": "ss_vae", "task_options": {...}}. A config may also name any importable
factory as "package.module:factory", which needs no registration.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from helix4d.errors import ConfigError

if TYPE_CHECKING:
    from helix4d.train.config import TrainConfig

# The project's own tasks register themselves when this module is imported; it is imported on the first lookup
# of a name that is not registered yet, so `helix4d train` knows them without importing every model up front.
BUILTIN_TASKS_MODULE = "helix4d.train.tasks"


class Task(ABC):
    """One trainable model: how to build it, what to train in it, on which data, with which loss, and how to save
    the result. Methods are called on every rank; `save_artifact` on rank 0 only."""

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A fresh model on the CPU. Called with the global RNGs seeded from `config.seed` (identical on every
        rank); load pretrained weights here. Also called once more on rank 0 at the end of an FSDP run."""

    def trainable_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        """The parameters the optimizer updates; the engine freezes all others (requires_grad=False), never
        saves them in checkpoints, and logs the trainable count. Default: all of them."""
        return model.parameters()

    @abstractmethod
    def dataset(self) -> Dataset:
        """The training samples (map-style: __len__ and __getitem__). Item i must be a function of i alone
        (derive any augmentation randomness from i) so that a resumed run sees exactly the same data."""

    def collate(self, batch: list[Any]) -> Any:
        """Samples -> one batch. The engine moves every tensor in it (and any object with `.to(device)`) to the
        device. Default: torch's default_collate."""
        return default_collate(batch)

    @abstractmethod
    def loss(self, model: nn.Module, batch: Any, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, Any]]:
        """Scalar loss on this rank's share of the global batch (a mean, so DDP's gradient average equals the
        gradient of the global batch) and extra metrics (floats or 0-dim tensors, the same keys on every rank).

        `model` is the wrapped model (DDP/FSDP): call it through `model(...)` (its forward) so gradients are
        synchronised. Draw all noise and timesteps from `generator` (`torch.randn(..., generator=generator,
        device=generator.device)`): it is seeded from (seed, step, rank), which makes resumed runs exact."""

    @abstractmethod
    def save_artifact(self, model: nn.Module, out_dir: Path) -> None:
        """Write the trained model in the pipeline's format (e.g. config.json + model.safetensors) to `out_dir`
        (created by the engine). Receives the unwrapped model with EMA weights when EMA is enabled."""


TaskFactory = Callable[["TrainConfig"], Task]
_REGISTRY: dict[str, TaskFactory] = {}


def register_task(name: str) -> Callable[[TaskFactory], TaskFactory]:
    """Decorator: make `factory(config) -> Task` (often the Task subclass itself) available as `name` in configs.
    Registering a name again replaces the earlier factory."""

    def decorator(factory: TaskFactory) -> TaskFactory:
        _REGISTRY[name] = factory
        return factory

    return decorator


def resolve_task(name: str) -> TaskFactory:
    """The factory for a config's `task`: a registered name or "module:attribute"."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"task {name!r} cannot be imported ({exc}); check the module path and name") from None
    if name not in _REGISTRY and importlib.util.find_spec(BUILTIN_TASKS_MODULE) is not None:
        importlib.import_module(BUILTIN_TASKS_MODULE)
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none registered"
        raise ConfigError(
            f"unknown task {name!r} (known: {known}); fix 'task' in the config, or name a factory as 'module:function'"
        )
    return _REGISTRY[name]
