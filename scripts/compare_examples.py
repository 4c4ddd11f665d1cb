"""Side-by-side comparison image of generated 4D assets and their input videos.

    python scripts/compare_examples.py OUT.png examples/split.mp4:out/split examples/sheet.mp4:out/sheet ...

One row per example: for 4 frames spread over the clip, the input frame and the generated mesh rendered from the
conditioning camera (front, 15° up). Meshes are read from the generate output's `frames/frame_XXXX.glb`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from helix4d.io.video import read_video
from helix4d.render import Renderer, front_camera
from helix4d.render.camera import CONDITION_ELEVATION_DEG, CONDITION_FOV_DEG, fit_radius

SIZE = 160


def tile(rgba: np.ndarray, size: int = SIZE) -> Image.Image:
    """RGBA (H, W, 4) over white, resized to a `size` square."""
    image = Image.fromarray(rgba, "RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    white.alpha_composite(image)
    return white.convert("RGB").resize((size, size), Image.LANCZOS)


def row(video: Path, result: Path, renderer: Renderer, columns: int = 4) -> list[Image.Image]:
    frames = read_video(video).frames
    glbs = sorted((result / "frames").glob("frame_*.glb"))
    picks = np.linspace(0, len(glbs) - 1, columns).round().astype(int)
    camera = front_camera(
        radius=fit_radius(CONDITION_FOV_DEG), elevation_deg=CONDITION_ELEVATION_DEG, fov_deg=CONDITION_FOV_DEG
    )
    tiles = []
    for k in picks:
        mesh = trimesh.load(glbs[k], force="mesh")
        tiles += [tile(frames[k]), tile(renderer.render([mesh], camera, background=(0, 0, 0, 0)))]
    return tiles


def main(out: str, pairs: list[str]) -> None:
    renderer = Renderer(256, 256)
    rows = [row(Path(v), Path(r), renderer) for v, r in (p.split(":") for p in pairs)]
    sheet = Image.new("RGB", (SIZE * len(rows[0]), SIZE * len(rows)), "white")
    for i, tiles in enumerate(rows):
        for j, t in enumerate(tiles):
            sheet.paste(t, (j * SIZE, i * SIZE))
    sheet.save(out)
    print(f"wrote {out}: rows = examples, columns = (input, result) for 4 frames")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
