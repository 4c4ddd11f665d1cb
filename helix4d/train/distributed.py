"""Processes and devices: read torchrun's environment, start the process group, wrap the model (DDP or FSDP).

Without torchrun (no WORLD_SIZE in the environment) everything here degrades to a single process and no
collective is ever called, so the same training code runs on a laptop and on many nodes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from helix4d.errors import BackendUnavailableError


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: its rank among `world_size` processes and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 writes files and prints."""
        return self.rank == 0

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mean of `tensor` over all ranks (a new tensor; the input is untouched)."""
        tensor = tensor.clone()
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor /= self.world_size
        return tensor

    def gather_object(self, obj: Any) -> list[Any] | None:
        """Every rank's `obj`, in rank order, on rank 0 (None elsewhere)."""
        if self.world_size == 1:
            return [obj]
        gathered = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, gathered, dst=0)
        return gathered

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def resolve_device(choice: str, local_rank: int) -> torch.device:
    """ "auto" | "cpu" | "cuda" -> the device of this process (cuda:LOCAL_RANK under torchrun)."""
    if choice == "cpu" or (choice == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise BackendUnavailableError("device 'cuda' was asked for but CUDA is not available here; use --device cpu")
    return torch.device("cuda", local_rank)


@contextmanager
def distributed(device: str) -> Iterator[DistEnv]:
    """The process environment for one run. Starts the process group when launched by torchrun with more than
    one process (NCCL on CUDA, Gloo on CPU) and tears it down at the end; an existing group is reused as is."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    env = DistEnv(rank, world_size, local_rank, resolve_device(device, local_rank))
    if env.device.type == "cuda":
        torch.cuda.set_device(env.device)
    started = world_size > 1 and not dist.is_initialized()
    if started:
        if not dist.is_available():
            raise BackendUnavailableError("this PyTorch build has no torch.distributed; run a single process")
        dist.init_process_group("nccl" if env.device.type == "cuda" else "gloo")
    try:
        yield env
    finally:
        if started:
            dist.destroy_process_group()


def wrap_model(model: nn.Module, strategy: str, env: DistEnv) -> nn.Module:
    """The module the loss calls. DDP: a wrapper that averages gradients over ranks. FSDP: `model` itself, sharded
    in place (fully_shard): each element of every nn.ModuleList (the transformer blocks) is one sharding unit,
    the root holds the rest. A single process gets `model` unchanged."""
    if env.world_size == 1:
        return model
    if strategy == "ddp":
        device_ids = [env.device.index] if env.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    from torch.distributed.fsdp import fully_shard

    # Children before parents (reversed pre-order), as fully_shard requires.
    for module in reversed(list(model.modules())):
        if isinstance(module, nn.ModuleList):
            for block in module:
                if not isinstance(block, (nn.ModuleList, nn.ModuleDict)):
                    fully_shard(block)
    fully_shard(model)
    return model
