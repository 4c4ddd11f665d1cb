"""Model-independent training: a config, a task protocol, and one readable training loop (torchrun-ready).

from helix4d.train import TrainConfig, train
train(TrainConfig(task="ss_vae", data="data/objects", steps=10_000))
"""

from helix4d.train.config import TrainConfig, load_config
from helix4d.train.engine import train
from helix4d.train.task import Task, register_task

__all__ = ["Task", "TrainConfig", "load_config", "register_task", "train"]
