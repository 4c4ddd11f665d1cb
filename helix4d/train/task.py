"""What a model must provide to be trained by the engine, and the registry that maps config names to tasks.

A task owns everything model-specific (architecture, data, loss, output format); the engine owns everything
else (processes, devices, optimizer, schedule, EMA, checkpoints, logs). Register a task with

    @register_task("ss_vae")
    class SSVAETask(Task):
        def __init__(self, config: TrainConfig): ...

and name it in the config: {"task": "ss_vae", "task_options": {...}}. A plug-in package makes its tasks known
without being imported first by declaring them as entry points in the group "helix4d.tasks":

    [project.entry-points."helix4d.tasks"]
    my_task = "my_package.tasks:MyTask"

Nothing else is accepted: a config is data, and a "module:attribute" in it would import and call whatever it
names (`"builtins:print"`), so a config can only choose among tasks that code has registered.
"""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, default_collate

from helix4d.errors import ConfigError
from helix4d.train.config import TrainConfig

# The project's own tasks register themselves when this module is imported; it is imported on the first lookup
# of a name that is not registered yet, so `helix4d train` knows them without importing every model up front.
BUILTIN_TASKS_MODULE = "helix4d.train.tasks"
ENTRY_POINT_GROUP = "helix4d.tasks"  # plug-ins: [project.entry-points."helix4d.tasks"] name = "module:factory"


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
    """The factory for a config's `task`: a registered name, the project's own or a plug-in's entry point."""
    if name not in _REGISTRY and importlib.util.find_spec(BUILTIN_TASKS_MODULE) is not None:
        importlib.import_module(BUILTIN_TASKS_MODULE)
    if name not in _REGISTRY:
        plugin = next(iter(entry_points(group=ENTRY_POINT_GROUP, name=name)), None)
        if plugin is not None:
            try:
                register_task(name)(plugin.load())
            except Exception as exc:  # a broken plug-in is named, never a traceback
                raise ConfigError(f"task {name!r} from plug-in {plugin.value!r} cannot be loaded ({exc})") from None
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none registered"
        raise ConfigError(
            f"unknown task {name!r} (known: {known}); fix 'task' in the config (a plug-in declares its tasks as "
            f"{ENTRY_POINT_GROUP!r} entry points)"
        )
    return _REGISTRY[name]
