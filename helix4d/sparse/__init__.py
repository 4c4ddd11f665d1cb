"""Sparse per-frame voxel tokens (coords + feats kept together)."""

from helix4d.sparse.tensor import SparseTensor

__all__ = ["SparseTensor"]
