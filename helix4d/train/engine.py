"""The training loop: one function, `train`, readable top to bottom.

Launch it as one process (`helix4d train config.json`) or many (`torchrun ... -m helix4d train config.json`);
the code is the same. What is trained, on which data and with which loss comes from the config's task
(`helix4d.train.task`); everything below is model-independent.
"""

from __future__ import annotations

import functools
import json
import math
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import get_model_state_dict
from torch.distributed.tensor import DTensor
from torch.utils.data import DataLoader

from helix4d.errors import ConfigError, TrainingError
from helix4d.io.files import check_output_dir
from helix4d.train.checkpoint import (
    FULL_STATE,
    checkpoint_path,
    latest_checkpoint,
    load_training_state,
    save_training_state,
    set_rng_state,
)
from helix4d.train.config import TrainConfig
from helix4d.train.distributed import DistEnv, distributed, wrap_model
from helix4d.train.ema import EMA
from helix4d.train.log import RunLogger, info
from helix4d.train.sampler import GlobalBatchSampler, mix_seed
from helix4d.train.task import Task, resolve_task

NON_FINITE_PATIENCE = 3  # steps in a row with a NaN/inf loss or gradient before a run is stopped


def train(config: TrainConfig, resume: bool = False) -> nn.Module:
    """Train `config.task` for `config.steps` optimizer steps and write `<out>/model` with the task's
    `save_artifact` (EMA weights when enabled). With `resume`, continue from the newest checkpoint in
    `<out>/checkpoints` exactly as if the run had never stopped (same data, optimizer state and RNG streams);
    without a checkpoint there, start from step 0. Returns the trained model (sharded in place under FSDP)."""
    factory = resolve_task(config.task)  # a typo in the task name fails before anything is built or written
    out = Path(config.out)
    options = config.task_options
    check_output_dir(out, inputs=(config.data, options.get("model"), options.get("latents")), reuse=is_run_folder)
    ckpt_dir = out / "checkpoints"
    resume_from = latest_checkpoint(ckpt_dir)
    if resume_from is not None and not resume:
        raise ConfigError(f"{out} already holds checkpoints; pass --resume to continue that run, or another --out")

    with distributed(config.device) as env:
        say = functools.partial(info, enabled=env.is_main)
        task = factory(config)

        # Model and data: identical on every rank (global RNGs seeded from config.seed alone).
        model = build_model(task, config, env)
        say(_describe_trainable(model))
        dataset = task.dataset()
        sampler = GlobalBatchSampler(len(dataset), config.batch_size, env.rank, env.world_size, config.seed)

        # Distribution, optimizer, EMA; the state of a previous run when resuming.
        net = wrap_model(model, config.strategy, env)
        params = [p for p in model.parameters() if p.requires_grad]  # after wrapping: FSDP swaps parameters
        optimizer = make_optimizer(model, config)
        ema = EMA(model, config.ema_decay) if config.ema_decay > 0 else None
        rng_state = None
        if resume_from is not None:
            restored = load_training_state(resume_from, model=model, optimizer=optimizer, ema=ema, env=env)
            sampler.start_step, rng_state = restored["step"], restored["rng"]
            say(f"resumed from {resume_from} at step {sampler.start_step}")
            if restored["world_size"] != env.world_size:
                say(
                    f"saved with {restored['world_size']} processes, now {env.world_size}: "
                    "the data order is kept, random streams restart",
                    warning=True,
                )
            if tuple(restored["sampler"]) != sampler.position(sampler.start_step):
                say("the dataset size changed since the checkpoint; the data order differs", warning=True)
        elif resume:
            say(f"no checkpoint in {ckpt_dir}; starting from step 0")
        loader = DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=task.collate,
            num_workers=config.num_workers,
            pin_memory=env.device.type == "cuda",
            generator=torch.Generator().manual_seed(mix_seed(config.seed, env.rank)),  # leaves global RNG alone
        )
        batches = iter(loader)
        use_bf16 = config.precision == "bf16" and env.device.type == "cuda"
        if config.precision == "bf16" and not use_bf16:
            say("precision bf16 applies to CUDA only; training in fp32")
        if env.is_main:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2) + "\n")
        logger = RunLogger(out, config.steps, sampler.start_step, enabled=env.is_main)
        # Per-rank random streams (dropout, ...), set last so that nothing above can shift them.
        if rng_state is not None:
            set_rng_state(rng_state, env.device)
        else:
            seed_everything(mix_seed(config.seed, env.rank))

        non_finite_run = 0  # consecutive steps whose loss or gradient was NaN/inf
        for step in range(sampler.start_step, config.steps):
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = to_device(next(batches), env.device)
            generator = torch.Generator(env.device).manual_seed(mix_seed(config.seed, step, env.rank))
            with torch.autocast(env.device.type, dtype=torch.bfloat16, enabled=use_bf16):
                loss, metrics = task.loss(net, batch, generator)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip or math.inf)  # 0: measure only
            # A non-finite loss or gradient (the same on every rank: gradients are all-reduced) skips the update,
            # and a run of them ends the run before anything is saved or installed: NaN weights are no model.
            finite = bool(torch.isfinite(grad_norm.full_tensor() if isinstance(grad_norm, DTensor) else grad_norm))
            non_finite_run = 0 if finite else non_finite_run + 1
            if non_finite_run >= NON_FINITE_PATIENCE:
                raise TrainingError(
                    f"the loss or its gradient was NaN/inf for {non_finite_run} steps in a row (step {step + 1}); "
                    "the run stops and installs nothing: lower lr, or check the data and the model folder"
                )
            if finite:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(step)
            done = step + 1

            if done % config.log_every == 0 or done == config.steps:
                if isinstance(grad_norm, DTensor):
                    grad_norm = grad_norm.full_tensor()
                scalars = {"loss": loss.detach(), **metrics, "grad_norm": grad_norm}
                stacked = torch.stack([torch.as_tensor(v, device=env.device).float() for v in scalars.values()])
                logger.log(done, {"lr": lr, **dict(zip(scalars, env.all_reduce_mean(stacked).tolist()))})
            if done % config.checkpoint_every == 0 or done == config.steps:
                save_training_state(
                    checkpoint_path(ckpt_dir, done),
                    step=done,
                    model=model,
                    optimizer=optimizer,
                    ema=ema,
                    sampler_position=sampler.position(done),
                    config=config.to_dict(),
                    env=env,
                    keep=config.keep_checkpoints,
                )
        logger.close()

        # The artifact: EMA weights when enabled, gathered into an ordinary module, written by the task.
        if ema is not None:
            ema.copy_to_model()
        final = _unsharded(task, model, config, env)
        if env.is_main:
            (out / "model").mkdir(parents=True, exist_ok=True)
            task.save_artifact(final, out / "model")
            say(f"wrote {out / 'model'}")
        env.barrier()
    return model


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` holds a training run (its metrics or checkpoints), which `train` may resume or refuse."""
    return (folder / "metrics.jsonl").is_file() or (folder / "checkpoints").is_dir()


def build_model(task: Task, config: TrainConfig, env: DistEnv) -> nn.Module:
    """The task's model, built with the global RNGs seeded from `config.seed` (so every rank builds the same
    weights), with everything but `task.trainable_parameters` frozen, on the run's device."""
    seed_everything(config.seed)
    model = task.build_model()
    chosen = {id(p) for p in task.trainable_parameters(model)}
    if not chosen:
        raise ValueError(f"task {config.task!r}: trainable_parameters returned no parameter")
    if not chosen <= {id(p) for p in model.parameters()}:
        raise ValueError(f"task {config.task!r}: trainable_parameters returned parameters that are not in the model")
    for p in model.parameters():
        p.requires_grad_(id(p) in chosen)
    return model.to(env.device).train()


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; weight decay on matrices only (biases, norms and scales are not
    pulled towards zero)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in trainable if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas)


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of optimizer step `step` (0-based): linear warm-up to `lr`, cosine decay to `min_lr` at
    `decay_steps`, then constant."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if step >= config.decay_steps:
        return config.min_lr
    progress = (step - config.warmup_steps) / max(1, config.decay_steps - config.warmup_steps)
    return config.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (config.lr - config.min_lr)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and all CUDA devices) global RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    """`batch` with every tensor (inside dicts, lists, tuples) and every object with `.to(device)` moved."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)  # overlaps with compute when the loader pins memory
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # namedtuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    if hasattr(batch, "to"):  # sparse tensors and other containers of tensors
        return batch.to(device)
    return batch


def _unsharded(task: Task, model: nn.Module, config: TrainConfig, env: DistEnv) -> nn.Module:
    """`model` as an ordinary module on rank 0: itself, or under FSDP a fresh build holding the gathered weights
    (collective: every rank must call it)."""
    if not (config.strategy == "fsdp" and env.world_size > 1):
        return model
    state = get_model_state_dict(model, options=FULL_STATE)
    if not env.is_main:
        return model
    full = task.build_model()
    full.load_state_dict(state)
    return full


def _describe_trainable(model: nn.Module) -> str:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / max(total, 1):.2f}%)"
