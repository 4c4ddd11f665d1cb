"""Pure-torch sparse convolution against dense Conv3d, the ×2 down/up maps, and the ocnn backend against the
reference (its weight mapping, its kernels under Triton's interpreter, and on a GPU)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from helix4d.errors import BackendUnavailableError, InputError
from helix4d.sparse.conv import (
    CONV_BACKEND_ENV,
    OFFSETS_3X3X3,
    Downsample,
    SubMConv3d,
    children_of,
    conv_backend,
    membership,
    neighbour_map,
    parent_index,
    resolve_conv_backend,
)
from helix4d.sparse.ocnn_conv import ocnn_operands, ocnn_unavailable

ROOT = Path(__file__).resolve().parent.parent


def _random_voxels(n_groups: int = 2, side: int = 6, p: float = 0.4, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    grid = torch.stack(torch.meshgrid(*(torch.arange(side),) * 3, indexing="ij"), -1).reshape(-1, 3)
    out = []
    for i in range(n_groups):
        keep = torch.rand(grid.shape[0], generator=g) < p
        out.append(torch.cat([torch.full((int(keep.sum()), 1), i), grid[keep]], 1))
    return torch.cat(out)


def test_submconv_equals_dense_conv_at_active_voxels() -> None:
    torch.manual_seed(0)
    coords = _random_voxels()
    feats = torch.randn(coords.shape[0], 5)
    conv = SubMConv3d(5, 7)
    out = conv(feats, neighbour_map(coords))
    dense = torch.zeros(2, 5, 6, 6, 6)
    dense[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]] = feats
    ref = F.conv3d(dense, conv.weight.permute(0, 4, 1, 2, 3), conv.bias, padding=1)
    ref = ref[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_groups_never_mix() -> None:
    coords = _random_voxels(n_groups=2, p=0.9)
    nbr = neighbour_map(coords)
    valid = nbr >= 0
    same_group = coords[nbr.clamp(min=0), 0] == coords[:, None, 0]
    assert bool(same_group[valid].all())
    assert bool((nbr[:, 13] == torch.arange(coords.shape[0])).all())  # centre offset is the voxel itself


def test_downsample_equals_strided_dense_conv() -> None:
    torch.manual_seed(1)
    coords = _random_voxels(n_groups=1)
    feats = torch.randn(coords.shape[0], 3)
    down = Downsample(3, 4)
    out, parents = down(feats, coords)
    dense = torch.zeros(1, 3, 6, 6, 6)
    dense[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]] = feats
    weight = down.weight.reshape(2, 2, 2, 3, 4).permute(4, 3, 0, 1, 2)  # (C_out, C_in, 2, 2, 2)
    ref = F.conv3d(dense, weight, down.bias, stride=2)
    ref = ref[parents[:, 0], :, parents[:, 1], parents[:, 2], parents[:, 3]]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_children_of_parents_cover_the_voxels() -> None:
    coords = _random_voxels()
    parents, inverse, slot = parent_index(coords)
    kids = children_of(parents)
    assert bool(membership(coords, kids).all())
    assert torch.equal(kids[inverse * 8 + slot], coords)


def _dense_reference(coords: torch.Tensor, feats: torch.Tensor, conv: SubMConv3d) -> torch.Tensor:
    """F.conv3d on the scattered grid, read back at the voxels: an oracle independent of our gather."""
    side = int(coords[:, 1:].max()) + 1
    dense = torch.zeros(int(coords[:, 0].max()) + 1, feats.shape[1], side, side, side, dtype=feats.dtype)
    dense[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]] = feats
    ref = F.conv3d(dense, conv.weight.permute(0, 4, 1, 2, 3), conv.bias, padding=1)
    return ref[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]]


def test_kernel_offsets_are_point_symmetric() -> None:
    """ocnn's input-gradient kernel reads column 26 − v as the offset opposite to column v (`ocnn_operands`)."""
    assert torch.equal(OFFSETS_3X3X3.flip(0), -OFFSETS_3X3X3)
    nbr = neighbour_map(_random_voxels(p=0.6))
    i, v = (nbr >= 0).nonzero(as_tuple=True)
    assert torch.equal(nbr[nbr[i, v], 26 - v], i)


def test_ocnn_operands_follow_the_neighbour_map() -> None:
    """ocnn's forward kernel, out[i] = b + Σ_v W[:, v, :] · x[nbr[i, v]], written in PyTorch on the operands we hand
    it, equals dense Conv3d; a permuted kernel (z-major) does not."""
    torch.manual_seed(2)
    coords = _random_voxels(p=0.5)
    feats = torch.randn(coords.shape[0], 4, dtype=torch.float64)
    conv = SubMConv3d(4, 3).double()
    ref = _dense_reference(coords, feats, conv)

    def kernel_formula(weight: torch.Tensor) -> torch.Tensor:
        w, nbr = ocnn_operands(weight, neighbour_map(coords))  # (3, 27, 4), (N, 27)
        x = torch.cat([feats, feats.new_zeros(1, 4)])[torch.where(nbr < 0, feats.shape[0], nbr)]  # (N, 27, 4)
        return torch.einsum("nvc,ovc->no", x, w) + conv.bias

    torch.testing.assert_close(kernel_formula(conv.weight), ref)
    assert not torch.allclose(kernel_formula(conv.weight.permute(0, 3, 2, 1, 4)), ref, atol=1e-3)


def test_backend_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    monkeypatch.delenv(CONV_BACKEND_ENV, raising=False)
    assert resolve_conv_backend(cpu) == "reference"  # auto: the CPU path never imports ocnn
    with conv_backend("ocnn"), pytest.raises(BackendUnavailableError, match="CUDA or ROCm"):
        resolve_conv_backend(cpu)
    monkeypatch.setenv(CONV_BACKEND_ENV, "reference")
    assert resolve_conv_backend(torch.device("cuda")) == "reference"  # forced, whatever the device
    with conv_backend("auto"):
        assert resolve_conv_backend(cpu) == "reference"
    monkeypatch.setenv(CONV_BACKEND_ENV, "spconv")
    with pytest.raises(InputError, match=CONV_BACKEND_ENV):
        resolve_conv_backend(cpu)
    with pytest.raises(InputError, match="auto, reference, ocnn"), conv_backend("fast"):
        pass


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ValueError:
        return False


@pytest.mark.skipif(
    not (_importable("triton") and _importable("ocnn")),
    reason="needs triton and ocnn (the gpu extra; with the CPU build of torch, install them without torchvision's "
    "CUDA wheel: ocnn imports torchvision); the GPU test below covers the same ground where a GPU is",
)
def test_ocnn_kernels_equal_the_reference_under_the_triton_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "ocnn_interpreter_check.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    err = json.loads(run.stdout.strip().splitlines()[-1])
    assert err["forward"] < 1e-4 * err["scale"] and err["input_grad"] < 1e-4 * err["scale"], err
    assert err["swapped_layout"] > 1e-2 * err["scale"], err  # the check can tell a wrong layout


@pytest.mark.skipif(
    not torch.cuda.is_available() or ocnn_unavailable() is not None,
    reason="needs a CUDA/ROCm GPU and ocnn's Triton kernels (the gpu extra)",
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ocnn_backend_equals_the_reference_on_the_gpu(dtype: torch.dtype) -> None:
    torch.manual_seed(3)
    coords = _random_voxels(n_groups=3, side=12, p=0.3).cuda()
    nbr = neighbour_map(coords)
    conv = SubMConv3d(48, 40).cuda().to(dtype)
    feats = torch.randn(coords.shape[0], 48, device="cuda", dtype=dtype)
    grad_out = torch.randn(coords.shape[0], 40, device="cuda", dtype=dtype)
    results = {}
    for backend in ("reference", "ocnn"):
        x = feats.clone().requires_grad_()
        conv.zero_grad()
        with conv_backend(backend):
            out = conv(x, nbr)
        out.backward(grad_out)
        results[backend] = [out, x.grad, conv.weight.grad, conv.bias.grad]
    tol = dict(rtol=2e-2, atol=5e-2) if dtype == torch.bfloat16 else dict(rtol=1e-4, atol=1e-4)
    for got, want in zip(results["ocnn"], results["reference"]):
        torch.testing.assert_close(got.float(), want.float(), **tol)
