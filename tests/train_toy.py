"""A tiny MLP regression task for the training-engine tests, and the torchrun worker those tests launch.

As a worker (`python -m torch.distributed.run --standalone --nproc_per_node=2 tests/train_toy.py OUT`), it
writes, for DDP and for FSDP: the first step's averaged gradients (OUT/grads_<strategy>.pt), an uninterrupted
4-step run (OUT/<strategy>/full) and the same run killed after 2 steps and resumed (OUT/<strategy>/resumed).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch.distributed.tensor import DTensor
from torch.utils.data import TensorDataset

from helix4d.train import Task, TrainConfig, register_task, train
from helix4d.train.distributed import DistEnv, distributed, wrap_model
from helix4d.train.engine import build_model
from helix4d.train.sampler import GlobalBatchSampler


class Block(nn.Module):
    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.linear = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(F.gelu(self.linear(self.norm(x))))  # (B, H)


class ToyMLP(nn.Module):
    """stem -> 2 residual blocks (an nn.ModuleList: FSDP's sharding units) -> head."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.stem = nn.Linear(dim, hidden)
        self.blocks = nn.ModuleList(Block(hidden, dropout) for _ in range(2))
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, H)
        for block in self.blocks:
            x = block(x)
        return self.head(x)  # (B, 1)


@register_task("toy_mlp")
class ToyTask(Task):
    """Regress y = sin(x . w) from 4-d inputs. Options: samples, hidden, dropout, noise (std of input noise
    drawn from the step generator), train_only ("all" | "head")."""

    def __init__(self, config: TrainConfig) -> None:
        options = {"samples": 64, "hidden": 16, "dropout": 0.0, "noise": 0.0, "train_only": "all"}
        options.update(config.task_options)
        self.options = options

    def build_model(self) -> nn.Module:
        return ToyMLP(4, self.options["hidden"], self.options["dropout"])

    def trainable_parameters(self, model: nn.Module):
        return model.head.parameters() if self.options["train_only"] == "head" else model.parameters()

    def dataset(self) -> TensorDataset:
        g = torch.Generator().manual_seed(123)
        x = torch.randn(self.options["samples"], 4, generator=g)  # (N, 4)
        y = torch.sin(x @ torch.tensor([1.0, -2.0, 0.5, 1.5])).unsqueeze(1)  # (N, 1)
        return TensorDataset(x, y)

    def loss(self, model, batch, generator):
        x, y = batch
        if self.options["noise"]:
            x = x + self.options["noise"] * torch.randn(x.shape, generator=generator, device=generator.device)
        pred = model(x)
        return F.mse_loss(pred, y), {"abs_err": (pred - y).abs().mean().detach()}

    def save_artifact(self, model: nn.Module, out_dir: Path) -> None:
        (out_dir / "config.json").write_text(json.dumps(self.options))
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, out_dir / "model.safetensors")


def toy_config(out: Path, **overrides) -> TrainConfig:
    """A fast CPU config for the toy task; `overrides` may set any TrainConfig field."""
    fields = dict(
        task="toy_mlp",
        out=str(out),
        device="cpu",
        steps=4,
        batch_size=8,
        lr=1e-2,
        min_lr=1e-3,
        warmup_steps=1,
        checkpoint_every=2,
        log_every=1,
        ema_decay=0.9,
        task_options={"samples": 24},
    )
    return TrainConfig(**(fields | overrides))


def first_step_gradients(config: TrainConfig, env: DistEnv) -> dict[str, torch.Tensor]:
    """Gradients after the backward pass of step 0, on this process's share of the global batch (averaged over
    processes by DDP/FSDP), gathered into whole tensors."""
    task = ToyTask(config)
    model = build_model(task, config, env)
    net = wrap_model(model, config.strategy, env)
    dataset = task.dataset()
    sampler = GlobalBatchSampler(len(dataset), config.batch_size, env.rank, env.world_size, config.seed)
    batch = task.collate([dataset[i] for i in next(iter(sampler))])
    loss, _ = task.loss(net, batch, torch.Generator())
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    return {n: (g.full_tensor() if isinstance(g, DTensor) else g).clone() for n, g in grads.items()}


def read_losses(out: Path) -> dict[int, float]:
    """step -> logged loss, from a run's metrics.jsonl."""
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records}


def _worker(out: Path) -> None:
    with distributed("cpu") as env:
        for strategy in ("ddp", "fsdp"):
            grads = first_step_gradients(toy_config(out / "unused", strategy=strategy), env)
            if env.is_main:
                torch.save(grads, out / f"grads_{strategy}.pt")
            train(toy_config(out / strategy / "full", strategy=strategy))
            train(toy_config(out / strategy / "resumed", strategy=strategy, steps=2, lr_decay_steps=4))
            train(toy_config(out / strategy / "resumed", strategy=strategy), resume=True)
        # Every result is on disk. Leave without tearing down Gloo: on a loaded 2-core machine its teardown
        # occasionally aborts one rank ("terminate called without an active exception") after all work is done,
        # which says nothing about the gradients and resume this worker checks.
        env.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
