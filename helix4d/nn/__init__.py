"""Transformer building blocks: 4D RoPE, frame-windowed anchored attention, temporal DiT blocks."""

from helix4d.nn.attention import AnchorCache, AnchorKV, FrameAttention, FrameLayout, windowed_anchored_attention
from helix4d.nn.blocks import (
    TemporalDiTBlock,
    freeze_all_but_temporal,
    init_temporal_from_base,
    temporal_parameters,
)
from helix4d.nn.rope import RopeConfig, apply_rope, rope_angles

__all__ = [
    "AnchorCache",
    "AnchorKV",
    "FrameAttention",
    "FrameLayout",
    "RopeConfig",
    "TemporalDiTBlock",
    "apply_rope",
    "freeze_all_but_temporal",
    "init_temporal_from_base",
    "rope_angles",
    "temporal_parameters",
    "windowed_anchored_attention",
]
