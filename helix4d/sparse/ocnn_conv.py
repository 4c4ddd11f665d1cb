"""ocnn's Triton implicit-GEMM kernels as the GPU backend of our submanifold 3×3×3 convolution.

ocnn (`pip install 'helix4d[gpu]'`, https://github.com/octree-nn/ocnn-pytorch) computes a submanifold convolution
from a per-voxel neighbour table, one row per voxel and one column per kernel offset with −1 for an absent
neighbour: exactly our `neighbour_map`. So the neighbour map built once per level in pure PyTorch is shared by the
level's convolutions, whichever backend runs them, and only the gather + matmul moves into a fused Triton kernel
(no (N, 27·C_in) gathered copy). Forward and backward kernels exist, so training runs on it too. Why ocnn and not
spconv-triton: docs/performance.md.

The library is imported only when a CUDA/ROCm tensor asks for it (`helix4d.sparse.conv.conv_backend`), so the CPU
and MPS paths never import it.
"""

from __future__ import annotations

import functools
from types import ModuleType

import torch
from torch import Tensor

KERNEL_VOLUME = 27  # 3 × 3 × 3 offsets


def ocnn_operands(weight: Tensor, neighbours: Tensor) -> tuple[Tensor, Tensor]:
    """Our weight `[C_out, 3, 3, 3, C_in]` and neighbour map (N, 27) as ocnn's kernels read them: weight
    (C_out, 27, C_in) and neighbours (N, 27), both contiguous. The one place the layouts meet.

    Why it is written once, here: a wrong kernel layout does not fail, it convolves with a permuted kernel and
    silently scatters the surface (TRELLIS.2 #89: 11,990 mesh components instead of 62 with a mis-mapped spconv
    backend). What the mapping rests on, each point checked in tests/test_sparse_conv.py:

    - ocnn's forward kernel (`conv_fwd_implicit_gemm_kernel`) computes out[i] = bias + Σ_v W[:, v, :] · x[nbr[i, v]]
      over the v with nbr[i, v] ≠ −1, W (C_out, V, C_in) contiguous. Ours computes out[i] = bias +
      Σ_{a,b,c} weight[:, a, b, c, :] · x[voxel at i + (a − 1, b − 1, c − 1)], and `neighbour_map` column
      v = 9a + 3b + c holds that voxel (`OFFSETS_3X3X3` is x-major like the weight's (3, 3, 3) axes). So ocnn's v
      is our flattened (a, b, c): `weight.reshape(C_out, 27, C_in)`, a view: no permutation, no flip. (TRELLIS.2's
      FlexGEMM weights use the same layout, so converted checkpoints need nothing more.)
    - The input-gradient kernel reads column V − 1 − v as the transposed convolution's neighbour: it assumes that
      column 26 − v is the offset opposite to column v. x-major (−1, 0, 1)³ has that symmetry
      (OFFSETS_3X3X3[26 − v] = −OFFSETS_3X3X3[v]), and a voxel's neighbour at +d has it as its neighbour at −d.
    - −1 marks an absent neighbour in both; the kernels take int64 indices, as `neighbour_map` returns them.
    """
    c_out, c_in = weight.shape[0], weight.shape[-1]
    if weight.shape[1:4] != (3, 3, 3) or neighbours.shape[-1] != KERNEL_VOLUME:
        raise ValueError(
            f"expected weight [C_out, 3, 3, 3, C_in] and neighbours (N, 27), got "
            f"{tuple(weight.shape)} and {tuple(neighbours.shape)}"
        )
    return weight.reshape(c_out, KERNEL_VOLUME, c_in).contiguous(), neighbours.contiguous()


@functools.cache
def ocnn_triton() -> tuple[ModuleType, ModuleType] | str:
    """(ocnn's autograd-wrapped Triton convolution module, its kernel config) or why they cannot be used here."""
    if not torch.cuda.is_available():
        return "ocnn's kernels need a CUDA or ROCm GPU"
    try:
        from ocnn.nn import octree_conv_t
        from ocnn.nn.kernels import config
    except ImportError as exc:  # not installed, or its triton / torchvision do not import
        return f"ocnn is not importable ({exc}); pip install 'helix4d[gpu]'"
    if octree_conv_t.conv_fwd_implicit_gemm_splitk is None:
        return "ocnn is installed but its Triton kernels are not (triton missing?)"
    return octree_conv_t, config


def ocnn_unavailable() -> str | None:
    """Why the ocnn backend cannot run here, or None when it can."""
    found = ocnn_triton()
    return found if isinstance(found, str) else None


def ocnn_submconv(feats: Tensor, weight: Tensor, bias: Tensor | None, neighbours: Tensor) -> Tensor:
    """feats (N, C_in) on a GPU, weight [C_out, 3, 3, 3, C_in], bias (C_out,) or None, neighbours (N, 27) from
    `neighbour_map` -> (N, C_out), with autograd. Float32 inputs use TF32 exactly when PyTorch's matmuls do
    (`torch.set_float32_matmul_precision`), so both backends round alike."""
    found = ocnn_triton()
    if isinstance(found, str):
        raise RuntimeError(found)
    octree_conv_t, config = found
    # a setting of ocnn's config module: typed as ModuleType, whose attributes mypy lets one read but not set
    config.allow_tf32 = torch.get_float32_matmul_precision() != "highest"  # type: ignore[attr-defined]
    w, nbr = ocnn_operands(weight.to(feats.dtype), neighbours)  # (C_out, 27, C_in), (N, 27)
    b = bias.to(feats.dtype) if bias is not None else None
    return octree_conv_t.octree_conv_triton(feats.contiguous(), w, b, nbr)  # (N, C_out)
