"""`TemporalDiTBlock`: a DiT block whose self-attention is frame-windowed, anchored and dual-weighted.

Per block (docs/design.md §3.2, §5), tokens are flat (N, D) with a `FrameLayout`:
    x = x + gate_msa * SelfAttn(modulate(norm1(x), shift_msa, scale_msa))    # window + anchor, 4D RoPE
    x = x + CrossAttn(norm2(x), cond of the token's own frame)
    x = x + gate_mlp * MLP(modulate(norm3(x), shift_mlp, scale_mlp))
with the six modulation vectors computed from a PER-TOKEN conditioning c (N, D): the anchor's tokens carry the
t = 0 embedding, the other frames the sampling t. With `shared_modulation` (TRELLIS.2's `share_mod`) the model
computes one AdaLN projection for all blocks and hands each block c (N, 6D); the block adds its own learned bias
`modulation` (6D,) instead of owning an `adaLN_modulation` layer.

Dual weights: `self_attn` (the base/static model's projections) makes q/k/v and the output for frame-0 tokens,
`temporal_attn` (a copy, `init_temporal_from_base`) does it for frames >= 1; both feed ONE windowed anchored
attention. Only the temporal copies are trained (`freeze_all_but_temporal`).

Anchor cache: frame-0 tokens see only frame 0, use base weights and t = 0, so their stream does not depend on
the other frames. Run the model once on the anchor frames alone with an empty `AnchorKV` per layer: the block
fills it with the anchor's keys/values (after RMS norm and RoPE). Later calls hold only frames >= 1 tokens
(`FrameLayout(..., anchor_included=False)`) and read the same `AnchorKV` instead of recomputing the anchor.

The attention settings of a call (`FrameAttention`) and the anchor cache (`AnchorKV`, `AnchorCache`) live beside the
kernel that reads them, `helix4d.nn.attention`; a block takes the settings whole and hands them on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from helix4d.nn.attention import AnchorKV, FrameAttention, FrameLayout, windowed_anchored_attention
from helix4d.nn.rope import apply_rope


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """AdaLN modulation as in DiT: x * (1 + scale) + shift (all (N, D), per token)."""
    return x * (1 + scale) + shift


class MultiHeadRMSNorm(nn.Module):
    """RMS norm over the head dimension with a learnable gamma per head: (..., H, Dh) -> (..., H, Dh)."""

    def __init__(self, num_heads: int, head_dim: int) -> None:
        super().__init__()
        self.scale = head_dim**0.5
        self.gamma = nn.Parameter(torch.ones(num_heads, head_dim))

    def forward(self, x: Tensor) -> Tensor:
        return (F.normalize(x.float(), dim=-1) * self.gamma * self.scale).to(x.dtype)


class SelfAttentionProjections(nn.Module):
    """The weights of one self-attention stream: to_qkv, per-head q/k RMS norms, to_out."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.q_rms_norm = MultiHeadRMSNorm(num_heads, self.head_dim)
        self.k_rms_norm = MultiHeadRMSNorm(num_heads, self.head_dim)
        self.to_out = nn.Linear(dim, dim)

    def project(self, x: Tensor) -> Tensor:
        """x (n, D) -> stacked q, k, v (n, 3, H, Dh), q and k RMS-normed (RoPE comes after)."""
        qkv = self.to_qkv(x).unflatten(-1, (3, self.num_heads, self.head_dim))  # (n, 3, H, Dh)
        q, k, v = qkv.unbind(1)  # 3 x (n, H, Dh)
        return torch.stack([self.q_rms_norm(q), self.k_rms_norm(k), v], dim=1)  # (n, 3, H, Dh)


class FrameCrossAttention(nn.Module):
    """Each frame's tokens attend to that frame's condition tokens only; QK RMS norm."""

    def __init__(self, dim: int, cond_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(cond_dim, 2 * dim)
        self.q_rms_norm = MultiHeadRMSNorm(num_heads, self.head_dim)
        self.k_rms_norm = MultiHeadRMSNorm(num_heads, self.head_dim)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: Tensor, layout: FrameLayout, cond: Tensor) -> Tensor:
        """x (N, D), cond (T, L, C_cond) with T = frames in the layout -> (N, D)."""
        t = len(layout.offsets) - 1
        if cond.ndim != 3 or cond.shape[0] != t:
            raise ValueError(f"cond must be (T={t}, L, C_cond), got {tuple(cond.shape)}")
        q = self.q_rms_norm(self.to_q(x).unflatten(-1, (self.num_heads, self.head_dim)))  # (N, H, Dh)
        kv = self.to_kv(cond).unflatten(-1, (2, self.num_heads, self.head_dim))  # (T, L, 2, H, Dh)
        k, v = self.k_rms_norm(kv[:, :, 0]), kv[:, :, 1]  # (T, L, H, Dh) each
        off, outs = layout.offsets, []
        for j in range(t):  # T is small (frames), each call is a large dense block
            if off[j + 1] > off[j]:
                q_j = q[off[j] : off[j + 1]].transpose(0, 1)  # (H, n_j, Dh)
                o = F.scaled_dot_product_attention(q_j, k[j].transpose(0, 1), v[j].transpose(0, 1))  # (H, n_j, Dh)
                outs.append(o.transpose(0, 1))  # (n_j, H, Dh)
        o = torch.cat(outs) if outs else q
        return self.to_out(o.flatten(1))  # (N, D)


class TemporalDiTBlock(nn.Module):
    """DiT block with AdaLN-Zero (per-token c), dual-weight windowed anchored self-attention, cross-attention, MLP."""

    def __init__(
        self, dim: int, num_heads: int, cond_dim: int, mlp_ratio: float = 4.0, shared_modulation: bool = False
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.shared_modulation = shared_modulation
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = SelfAttentionProjections(dim, num_heads)  # base: frame-0 tokens
        self.temporal_attn = SelfAttentionProjections(dim, num_heads)  # copy: frames >= 1
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=True, eps=1e-6)
        self.cross_attn = FrameCrossAttention(dim, cond_dim, num_heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        if shared_modulation:
            self.modulation = nn.Parameter(torch.zeros(6 * dim))  # added to the model's shared projection
        else:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DiT initialisation, done here so a model only initialises its own embedders and heads.

        Linear layers: Xavier-uniform weights, zero biases. AdaLN-Zero: the modulation layer starts at zero, so
        every gate is 0 and the residual branches are off. The cross-attention output (ungated) also starts at
        zero, as in PixArt-α. Together a fresh block is exactly the identity map, which keeps a deep stack
        stable at the start of training. The temporal copy starts equal to the base. With shared modulation the
        per-block bias starts at zero (the model zeroes the shared projection), with the same effect.
        """
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        zeroed = [self.cross_attn.to_out]
        if not self.shared_modulation:
            zeroed.append(cast(nn.Linear, self.adaLN_modulation[-1]))  # cast: a Sequential's items type as any Module
        for lin in zeroed:
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        if self.shared_modulation:
            nn.init.zeros_(self.modulation)
        self.init_temporal_from_base()

    @torch.no_grad()
    def init_temporal_from_base(self) -> None:
        """Copy the base self-attention weights into the temporal copy (call after loading base weights)."""
        self.temporal_attn.load_state_dict(self.self_attn.state_dict())

    def _per_stream(
        self, fn: Callable[[SelfAttentionProjections, Tensor], Tensor], x: Tensor, layout: FrameLayout
    ) -> Tensor:
        """Apply fn with the base weights to frame-0 rows of x (N, ...) and with the temporal copy to the rest."""
        n_anchor = layout.num_anchor_tokens
        if n_anchor == 0:
            return fn(self.temporal_attn, x)
        if n_anchor == x.shape[0]:
            return fn(self.self_attn, x)
        is_anchor = layout.anchor_token_mask(x.device)  # (N,)
        ia, it = is_anchor.nonzero()[:, 0], (~is_anchor).nonzero()[:, 0]
        ya, yt = fn(self.self_attn, x[ia]), fn(self.temporal_attn, x[it])
        return ya.new_empty(x.shape[0], *ya.shape[1:]).index_copy(0, ia, ya).index_copy(0, it, yt)

    def attention(
        self, h: Tensor, layout: FrameLayout, rope_angles: Tensor, attention: FrameAttention, anchor_kv: AnchorKV | None
    ) -> Tensor:
        """Dual-weight windowed anchored self-attention: h (N, D) -> (N, D). See `forward` for anchor_kv."""
        qkv = self._per_stream(lambda m, t: m.project(t), h, layout)  # (N, 3, H, Dh)
        q, k, v = qkv.unbind(1)  # 3 x (N, H, Dh)
        q, k = apply_rope(q, rope_angles), apply_rope(k, rope_angles)  # (N, H, Dh)
        external = None
        if anchor_kv is not None and layout.anchor_included:  # store for later calls without the anchor
            anchor_kv.per_sequence = [(k[rows], v[rows]) for rows in layout.anchor_rows()]
        elif anchor_kv is not None:
            if not anchor_kv.filled:
                raise ValueError("anchor_kv is empty: run the anchor frames once with it to fill it")
            external = anchor_kv.per_sequence
        o = windowed_anchored_attention(q, k, v, layout, attention, external)  # (N, H, Dh)
        return self._per_stream(lambda m, t: m.to_out(t), o.flatten(1), layout)  # (N, D)

    def forward(
        self,
        x: Tensor,
        c: Tensor,
        layout: FrameLayout,
        rope_angles: Tensor,
        cond: Tensor,
        attention: FrameAttention,
        anchor_kv: AnchorKV | None = None,
    ) -> Tensor:
        """One block.

        x (N, D) tokens, c (N, D) per-token conditioning (timestep embedding; with shared modulation the shared
        projection's output (N, 6D)), layout of x, rope_angles
        (N, Dh // 2) from `rope_angles(coords.float(), cfg)`, cond (T, L, C_cond) condition tokens of each frame
        in the layout. attention: the window, anchor and backend of this call (its window a number: the flow fills
        in its own). anchor_kv: this layer's entry of `attention.cache`; if the layout includes the anchor frames,
        it is FILLED with this layer's anchor K/V; if it does not (`anchor_included=False`), it is READ as the
        anchor's K/V. -> (N, D).
        """
        width = 6 * x.shape[1] if self.shared_modulation else x.shape[1]
        if c.shape != (x.shape[0], width):
            raise ValueError(f"c must be per token, ({x.shape[0]}, {width}), got {tuple(c.shape)}")
        if self.shared_modulation:
            mod = (c + self.modulation).to(c.dtype).chunk(6, dim=1)  # 6 x (N, D)
        else:
            mod = self.adaLN_modulation(c).chunk(6, dim=1)  # 6 x (N, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod
        h = modulate(self.norm1(x), shift_msa, scale_msa)  # (N, D)
        x = x + gate_msa * self.attention(h, layout, rope_angles, attention, anchor_kv)  # (N, D)
        x = x + self.cross_attn(self.norm2(x), layout, cond)  # (N, D)
        x = x + gate_mlp * self.mlp(modulate(self.norm3(x), shift_mlp, scale_mlp))  # (N, D)
        return x


def init_temporal_from_base(module: nn.Module) -> None:
    """Copy base → temporal self-attention weights in every `TemporalDiTBlock` inside module."""
    for m in module.modules():
        if isinstance(m, TemporalDiTBlock):
            m.init_temporal_from_base()


def temporal_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """The temporal self-attention copies' parameters: the only ones trained for video (docs/design.md §3.2)."""
    for name, p in module.named_parameters():
        if "temporal_attn" in name.split("."):
            yield p


def freeze_all_but_temporal(module: nn.Module) -> list[nn.Parameter]:
    """requires_grad=False everywhere except the temporal copies; returns the trainable parameters."""
    module.requires_grad_(False)
    trainable = list(temporal_parameters(module))
    for p in trainable:
        p.requires_grad_(True)
    return trainable
