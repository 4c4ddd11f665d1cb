"""Renderer speed: milliseconds per 512x512 frame of a ~20k-face scene, opaque and depth-peeled.

Run: python -m helix4d.bench.render [--size 512] [--repeats 30]
"upload" columns include packing + uploading the meshes every frame (what `Renderer.render(meshes, cam)` does);
"cached" columns render meshes uploaded once (`Renderer.upload`, as in turntables). Each frame is timed on its own
(a render returns after the image is read back); median and best are printed because shared CPUs are noisy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import trimesh

from helix4d.render import Renderer, front_camera


def _painted(mesh: trimesh.Trimesh, rgba: tuple[int, ...], metallic: float, roughness: float) -> trimesh.Trimesh:
    mesh.visual.vertex_colors = np.tile(np.array(rgba, dtype=np.uint8), (len(mesh.vertices), 1))
    mesh.vertex_attributes["metallic"] = np.full(len(mesh.vertices), metallic, dtype=np.float32)
    mesh.vertex_attributes["roughness"] = np.full(len(mesh.vertices), roughness, dtype=np.float32)
    return mesh


def scenes() -> dict[str, list[trimesh.Trimesh]]:
    """Three 20480-face scenes: all opaque, all transparent, and an opaque core inside a transparent shell."""
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.45)  # 20480 faces
    shell = trimesh.creation.icosphere(subdivisions=4, radius=0.45)  # 5120 faces
    core = trimesh.creation.icosphere(subdivisions=5, radius=0.2)
    core.faces = core.faces[: 20480 - len(shell.faces)]
    return {
        "opaque": [_painted(sphere.copy(), (200, 60, 50, 255), 0.0, 0.5)],
        "transparent (alpha 0.5)": [_painted(sphere.copy(), (60, 120, 220, 128), 0.0, 0.3)],
        "opaque inside transparent": [
            _painted(shell, (60, 120, 220, 90), 0.0, 0.3),
            _painted(core, (230, 180, 40, 255), 1.0, 0.4),
        ],
    }


def _frame_ms(fn, repeats: int) -> tuple[float, float]:
    """(median, best) milliseconds of one call, after a warm-up call (shader compile, buffer growth)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1000.0 * (time.perf_counter() - start))
    return float(np.median(times)), float(np.min(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    renderer = Renderer(args.size, args.size)
    cam = front_camera()
    print(f"renderer: {renderer.ctx.info['GL_RENDERER']}, {args.size}x{args.size}, {args.repeats} repeats")
    print(f"{'scene':<28}{'faces':>7}{'upload med':>12}{'best':>8}{'cached med':>12}{'best':>8}   (ms per frame)")
    for name, meshes in scenes().items():
        faces = sum(len(m.faces) for m in meshes)
        with_upload = _frame_ms(lambda: renderer.render(meshes, cam), args.repeats)
        uploaded = renderer.upload(meshes)
        cached = _frame_ms(lambda: renderer.render(uploaded, cam), args.repeats)
        uploaded.release()
        print(f"{name:<28}{faces:>7}{with_upload[0]:>12.2f}{with_upload[1]:>8.2f}{cached[0]:>12.2f}{cached[1]:>8.2f}")
    renderer.release()


if __name__ == "__main__":
    main()
