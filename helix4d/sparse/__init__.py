"""Sparse per-frame voxel tokens (coords + feats kept together)."""

from helix4d.sparse.tensor import SparseTensor, frame_coords

__all__ = ["SparseTensor", "frame_coords"]
