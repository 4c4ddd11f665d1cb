"""Mesh ↔ O-Voxel conversion against the dense alternative, per resolution: time, peak memory, round-trip error.

    python -m helix4d.bench.ovoxel                   # R = 64, 256, 512 on a ~100k-face mesh
    python -m helix4d.bench.ovoxel --resolutions 64 256

Each measurement runs in a fresh process and reports its wall time and its peak resident memory above what the
process held just before the measured call (covers numpy, torch and scikit-image alike). Dense alternative:
trimesh surface voxelisation (`mesh.voxelized(pitch)`, no fill) written into a dense R³ grid, and
`skimage.measure.marching_cubes` on that grid. Needs the `bench` extra (scikit-image).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh


def bench_mesh() -> trimesh.Trimesh:
    """~100k faces: a bumpy sphere (81,920 faces) and a tilted torus (20,000 faces) that cuts through it."""
    sphere = trimesh.creation.icosphere(subdivisions=6, radius=0.33)
    d = sphere.vertices / np.linalg.norm(sphere.vertices, axis=1, keepdims=True)
    sphere.vertices = (
        sphere.vertices * (1 + 0.08 * np.sin(7 * d[:, 0]) * np.sin(6 * d[:, 1]) * np.sin(5 * d[:, 2]))[:, None]
    )
    torus = trimesh.creation.torus(0.3, 0.06, major_sections=200, minor_sections=50)
    torus.apply_transform(trimesh.transformations.rotation_matrix(0.4, [1, 0, 0]))
    return trimesh.util.concatenate([sphere, torus])


def chamfer(a: trimesh.Trimesh, b: trimesh.Trimesh, n: int = 50_000, reference: int = 2_000_000) -> float:
    """Symmetric mean surface distance: n samples of each mesh against a dense sampling of the other.

    The dense side (2M points) keeps the sampling bias (~half its point spacing) well below a voxel at R = 512.
    """
    from scipy.spatial import cKDTree

    def one_way(x: trimesh.Trimesh, y: trimesh.Trimesh) -> float:
        query = trimesh.sample.sample_surface(x, n, seed=0)[0]
        dense = trimesh.sample.sample_surface(y, reference, seed=1)[0]
        return float(cKDTree(dense).query(query)[0].mean())

    return 0.5 * (one_way(a, b) + one_way(b, a))


# ------------------------------------------------------------------------------------------------ the four jobs
def ovoxel_encode(mesh_path: str, r: int, out: str) -> str:
    from helix4d.ovoxel import mesh_to_ovoxel

    mesh = trimesh.load(mesh_path, process=False)
    mesh_to_ovoxel(trimesh.creation.icosphere(subdivisions=1, radius=0.3), 8)  # warm-up (lazy imports)
    vox = _measured(lambda: mesh_to_ovoxel(mesh, r))
    vox.save(out)
    return f"{len(vox):,} voxels"


def ovoxel_decode(mesh_path: str, r: int, out: str) -> str:
    from helix4d.ovoxel import OVoxel, ovoxel_to_mesh

    vox = OVoxel.load(out)
    ovoxel_to_mesh(OVoxel.load(out))  # warm-up (torch's first-call set-up), same size so it is not timed cold
    result = _measured(lambda: ovoxel_to_mesh(vox))
    return f"{len(result.faces):,} faces, chamfer {chamfer(trimesh.load(mesh_path, process=False), result) * r:.2f}/R"


def dense_encode(mesh_path: str, r: int, out: str) -> str:
    mesh = trimesh.load(mesh_path, process=False)
    trimesh.creation.icosphere(subdivisions=1, radius=0.3).voxelized(pitch=0.125)  # warm-up

    def run() -> np.ndarray:
        grid = mesh.voxelized(pitch=1.0 / r)  # surface voxels only (no fill); centres on multiples of 1/R
        idx = grid.sparse_indices + np.rint((grid.translation + 0.5) * r).astype(np.int64)
        dense = np.zeros((r, r, r), bool)
        idx = np.clip(idx, 0, r - 1)
        dense[idx[:, 0], idx[:, 1], idx[:, 2]] = True
        return dense

    dense = _measured(run)
    np.save(out + ".npy", dense)
    return f"{int(dense.sum()):,} voxels"


def dense_decode(mesh_path: str, r: int, out: str) -> str:
    from skimage.measure import marching_cubes

    dense = np.load(out + ".npy")
    marching_cubes(np.zeros((4, 4, 4), np.float32) + np.arange(4)[:, None, None], 1.5)  # warm-up
    verts, faces, _, _ = _measured(lambda: marching_cubes(dense.astype(np.float32), 0.5))
    result = trimesh.Trimesh(verts / r - 0.5, faces, process=False)  # index i ↔ voxel centre at (i + 0.5)/R - 0.5
    return f"{len(faces):,} faces, chamfer {chamfer(trimesh.load(mesh_path, process=False), result) * r:.2f}/R"


# ------------------------------------------------------------------------------------------------ measurement
_RESULT: dict[str, float] = {}
REPEAT = 1


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _measured(fn):
    """Call fn `REPEAT` times; record the fastest wall time (robust to a busy machine) and the peak RSS growth
    (MiB) over the RSS right before the first call."""
    before = _rss_mib()
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t0)
    _RESULT["seconds"] = min(times)
    _RESULT["peak_mib"] = max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before)
    return value


def _child(job: str, mesh_path: str, r: int, out: str, repeat: int) -> tuple[float, float, str]:
    import torch

    global REPEAT
    REPEAT = repeat
    torch.set_num_threads(2)
    note = globals()[job](mesh_path, r, out)
    return _RESULT["seconds"], _RESULT["peak_mib"], note


def measure(job: str, mesh_path: str, r: int, out: str, repeat: int) -> tuple[float, float, str]:
    with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_child, (job, mesh_path, r, out, repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 256, 512], help="grid resolutions R")
    parser.add_argument("--no-dense", action="store_true", help="skip the dense voxelisation + marching cubes")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is reported")
    args = parser.parse_args()

    mesh = bench_mesh()
    print(f"mesh: {len(mesh.faces):,} faces, {len(mesh.vertices):,} vertices")
    header = (
        f"{'R':>4}  {'direction':<14} {'method':<8} {'time s':>8} {'peak MiB':>9}  "
        f"{'ratio t':>7} {'ratio mem':>9}  result"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        mesh_path = str(Path(tmp) / "mesh.ply")
        mesh.export(mesh_path)
        for r in args.resolutions:
            out = str(Path(tmp) / f"r{r}")
            for direction, ours, dense in (
                ("mesh->grid", "ovoxel_encode", "dense_encode"),
                ("grid->mesh", "ovoxel_decode", "dense_decode"),
            ):
                t_o, m_o, note_o = measure(ours, mesh_path, r, out + ".npz", args.repeat)
                print(
                    f"{r:>4}  {direction:<14} {'O-Voxel':<8} {t_o:>8.2f} {m_o:>9.0f}  {'':>7} {'':>9}  {note_o}",
                    flush=True,
                )
                if args.no_dense:
                    continue
                t_d, m_d, note_d = measure(dense, mesh_path, r, out, args.repeat)
                print(
                    f"{r:>4}  {direction:<14} {'dense':<8} {t_d:>8.2f} {m_d:>9.0f}  "
                    f"{t_d / t_o:>6.1f}x {m_d / max(m_o, 1.0):>8.1f}x  {note_d}",
                    flush=True,
                )
    print("ratio = dense / O-Voxel (> 1: O-Voxel is faster / smaller)")


if __name__ == "__main__":
    main()
