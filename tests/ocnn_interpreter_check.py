"""ocnn's own Triton kernels, run by Triton's interpreter on the CPU, against our reference convolution.

Run by tests/test_sparse_conv.py in a fresh process with TRITON_INTERPRET=1 (the variable must be set before the
kernels are decorated, i.e. before ocnn is imported). The kernels' public wrappers autotune over GPU
configurations and ask the GPU for its multiprocessor count, so the jitted kernels are launched here directly with
fixed block sizes: the arithmetic and the indexing, which is what the weight mapping depends on, are the library's.
Prints one JSON line of maximum absolute differences.
"""

from __future__ import annotations

import json
import sys

import torch
import triton
from ocnn.nn.kernels.conv_bwd_implicit_gemm import conv_bwd_input_implicit_gemm_kernel
from ocnn.nn.kernels.conv_fwd_implicit_gemm import conv_fwd_implicit_gemm_kernel

from helix4d.sparse.conv import SubMConv3d, neighbour_map, reference_submconv
from helix4d.sparse.ocnn_conv import ocnn_operands

BLOCK = dict(B1=16, B2=16, BK=16, allow_tf32=False)  # power-of-two tiles, as tl.dot needs


def main() -> None:
    torch.manual_seed(0)
    grid = torch.stack(torch.meshgrid(*(torch.arange(5),) * 3, indexing="ij"), -1).reshape(-1, 3)  # (125, 3)
    keep = torch.rand(2, grid.shape[0]) < 0.5
    coords = torch.cat([torch.cat([torch.full((int(k.sum()), 1), f), grid[k]], 1) for f, k in enumerate(keep)])
    n, c_in, c_out = coords.shape[0], 5, 7
    feats = torch.randn(n, c_in, requires_grad=True)
    conv = SubMConv3d(c_in, c_out)
    nn_map = neighbour_map(coords)  # (N, 27)
    ref = reference_submconv(feats, conv.weight, conv.bias, nn_map)  # (N, C_out)
    grad_out = torch.randn(n, c_out)
    (ref_grad,) = torch.autograd.grad(ref, feats, grad_out)  # (N, C_in)

    def forward(weight: torch.Tensor) -> torch.Tensor:
        w, nbr = ocnn_operands(weight.detach(), nn_map)  # (C_out, 27, C_in), (N, 27)
        out = torch.empty(n, c_out)
        launch = (triton.cdiv(c_out, BLOCK["B2"]) * triton.cdiv(n, BLOCK["B1"]),)
        conv_fwd_implicit_gemm_kernel.fn[launch](
            feats.detach(), w, conv.bias.detach(), nbr, out, n, 0, c_in, c_out, 27, **BLOCK
        )
        return out

    w, nbr = ocnn_operands(conv.weight.detach(), nn_map)
    grad_in = torch.empty(n, c_in)
    launch = (triton.cdiv(c_in, BLOCK["B2"]) * triton.cdiv(n, BLOCK["B1"]),)
    conv_bwd_input_implicit_gemm_kernel.fn[launch](grad_out, w, nbr, grad_in, n, 0, c_in, c_out, 27, **BLOCK)
    # The same kernel fed a plausible wrong layout (the kernel's spatial axes reversed, z-major): must NOT agree.
    swapped = conv.weight.permute(0, 3, 2, 1, 4)
    result = {
        "forward": (forward(conv.weight) - ref).abs().max().item(),
        "input_grad": (grad_in - ref_grad).abs().max().item(),
        "swapped_layout": (forward(swapped) - ref).abs().max().item(),
        "scale": ref.abs().max().item(),
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
