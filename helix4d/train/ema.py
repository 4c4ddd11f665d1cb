"""Exponential moving average of the trainable weights, kept in fp32.

Only trainable parameters are averaged (frozen ones never change), so the temporal fine-tune of a large model
keeps a small EMA. Under FSDP the averages are sharded like the parameters they follow.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor


class EMA:
    """ema <- d * ema + (1 - d) * weights after optimizer step n, with the usual warm-up
    d = min(decay, (1 + n) / (10 + n)): a short run's average is not dominated by its random start."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        self.shadow = {n: p.detach().float().clone() for n, p in self.params.items()}

    @torch.no_grad()
    def update(self, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, p in self.params.items():
            self.shadow[name].lerp_(p.detach().float(), 1.0 - decay)

    @torch.no_grad()
    def copy_to_model(self) -> None:
        """Overwrite the trainable weights with their averages (for the final artifact)."""
        for name, p in self.params.items():
            p.copy_(self.shadow[name])

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """Unsharded CPU copies (collective under FSDP: every rank must call it)."""
        return {n: (t.full_tensor() if isinstance(t, DTensor) else t).cpu() for n, t in self.shadow.items()}

    def load_full_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Inverse of `full_state_dict` (collective under FSDP)."""
        if state.keys() != self.shadow.keys():
            raise KeyError(f"EMA names differ: {sorted(state.keys() ^ self.shadow.keys())[:5]}")
        for name, current in self.shadow.items():
            value = state[name]
            if isinstance(current, DTensor):
                mesh = current.device_mesh
                value = distribute_tensor(value.to(mesh.device_type), mesh, current.placements)
            current.copy_(value)
