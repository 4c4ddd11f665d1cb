"""Export speed for one frame: simplification, xatlas unwrap, texture bake and file writing.

Run: python -m helix4d.bench.export [--faces-level 5] [--sizes 512 1024]
The mesh is a bumpy sphere (icosphere level 5 = 20480 faces) with a position-dependent colour. "bake" is the whole
`bake_textures` call (it includes the unwrap); "unwrap" is xatlas alone.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import trimesh

from helix4d.export import bake_textures, simplify_mesh, write_animated_glb, write_glb, write_usd
from helix4d.export.bake import unwrap
from helix4d.ovoxel import set_vertex_pbr


def bumpy_sphere(level: int) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=level, radius=0.4)
    v = mesh.vertices
    mesh.vertices = v * (1.0 + 0.1 * np.sin(9 * v[:, :1]) * np.cos(7 * v[:, 1:2]))
    attrs = np.concatenate([np.clip(mesh.vertices + 0.5, 0, 1), np.full((len(v), 3), [0.1, 0.6, 1.0])], axis=1)
    return set_vertex_pbr(mesh, attrs)


def _seconds(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--faces-level", type=int, default=5, help="icosphere subdivision level (5 = 20480 faces)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024], help="texture sizes to bake")
    args = parser.parse_args()
    mesh = bumpy_sphere(args.faces_level)
    faces = len(mesh.faces)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: the first USD call loads usd-core's plugins (~0.5 s)
        write_usd([bumpy_sphere(1)], Path(tmp) / "warm.usdc", 10.0)
    for size in args.sizes:
        rows.append((f"unwrap (xatlas) {size}", faces, _seconds(lambda: unwrap(mesh, size))[0]))
        seconds, baked = _seconds(lambda: bake_textures(mesh, size=size))
        rows.append((f"bake {size} (unwrap + raster + fill)", faces, seconds))
        with tempfile.TemporaryDirectory() as tmp:
            glb_seconds = _seconds(lambda: write_glb(baked, Path(tmp) / "a.glb"))[0]
            rows.append((f"write_glb textured {size}", faces, glb_seconds))
            rows.append(
                (
                    f"write_usd textured {size} (+usdz)",
                    faces,
                    _seconds(lambda: write_usd([baked], Path(tmp) / "a.usdc", 10.0, usdz_path=Path(tmp) / "a.usdz"))[0],
                )
            )
    rows.append(("simplify to 5000 faces", faces, _seconds(lambda: simplify_mesh(mesh, 5000))[0]))
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(("write_glb vertex colours", faces, _seconds(lambda: write_glb(mesh, Path(tmp) / "a.glb"))[0]))
        rows.append(
            (
                "write_animated_glb 10 frames",
                10 * faces,
                _seconds(lambda: write_animated_glb([mesh] * 10, Path(tmp) / "b.glb", 10.0))[0],
            )
        )
        rows.append(
            (
                "write_usd 10 frames vertex colours",
                10 * faces,
                _seconds(lambda: write_usd([mesh] * 10, Path(tmp) / "a.usdc", 10.0))[0],
            )
        )
    print(f"{'step':<40}{'faces':>8}{'seconds':>10}")
    for name, n, seconds in rows:
        print(f"{name:<40}{n:>8}{seconds:>10.2f}")


if __name__ == "__main__":
    main()
