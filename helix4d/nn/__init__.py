"""Transformer building blocks: 4D RoPE, frame-windowed anchored attention, temporal DiT blocks."""
