"""Preview video: the 4D result rendered beside the input video, for a quick look at what was produced.

Layout of `preview.mp4` (each panel size x size, over white like the dataset's input videos):
    [ input frame | result ]
Part 1 (F frames): the result from the input camera (the dataset's conditioning camera: azimuth 0, elevation
15 deg, fov 40 deg, at the distance where the unit cube's bounding sphere fits). Part 2 (max(F, ceil(3 s * fps))
frames): one full slow orbit at the same elevation while the clip keeps playing (looping if it is shorter than the
orbit), so the back of the object is visible too. Without input frames the video is the result panel alone.
Input frames are matched to output frames proportionally (the model may sample a different number of frames).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import trimesh
from PIL import Image

from helix4d.errors import InputError
from helix4d.export.bake import TexturedMesh
from helix4d.export.surface import Frame

if TYPE_CHECKING:
    from helix4d.render import Camera

MIN_ORBIT_SECONDS = 3.0
_WHITE = (1.0, 1.0, 1.0, 1.0)


def preview_frame_count(frames: int, fps: float) -> int:
    """Frames in the preview of a `frames`-frame clip: the input-camera part plus the orbit part."""
    return frames + max(frames, math.ceil(MIN_ORBIT_SECONDS * fps))


def render_preview(
    meshes: Sequence[Frame],
    input_frames: np.ndarray | None,
    out_path: str | os.PathLike,
    fps: float,
    size: int = 384,
    input_box: tuple[int, int, int, int] | None = None,
) -> Path:
    """Render `meshes` (one per frame) and write the preview MP4 described in this module's docstring.

    input_frames: (F_in, H, W, 3|4) uint8 or None; RGBA frames are composited over white.
    input_box: (x0, y0, x1, y1) end-exclusive pixels of the object in the input frames, or None (the result is
    drawn as the conditioning camera frames the unit cube).
    """
    from helix4d.io import write_video
    from helix4d.render import Renderer, orbit_cameras
    from helix4d.render.camera import CONDITION_ELEVATION_DEG, CONDITION_FOV_DEG, fit_radius

    if len(meshes) == 0:
        raise InputError("render_preview needs at least one mesh")
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    if size < 16:
        raise InputError(f"preview size must be >= 16 pixels, got {size}")
    count = len(meshes)
    frames = None if input_frames is None else _checked_input(input_frames)
    orbit_len = preview_frame_count(count, fps) - count
    views = dict(radius=fit_radius(CONDITION_FOV_DEG), elevation_deg=CONDITION_ELEVATION_DEG, fov_deg=CONDITION_FOV_DEG)
    front = orbit_cameras(1, **views)[0]
    orbit = orbit_cameras(orbit_len, **views)
    shots = [(k, front) for k in range(count)] + [(j % count, cam) for j, cam in enumerate(orbit)]
    width = size * (1 if frames is None else 2)
    surfaces = [m.mesh if isinstance(m, TexturedMesh) else m for m in meshes]
    placed = None if frames is None or input_box is None else _placement(surfaces, front, size, frames, input_box)
    renderer = Renderer(size, size)

    def rendered() -> Iterator[np.ndarray]:
        """One (S, W, 3) preview frame at a time: the encoder takes each as it comes."""
        for i, (k, camera) in enumerate(shots):
            shot = np.empty((size, width, 3), np.uint8)
            image = renderer.render(surfaces[k], camera, _WHITE)[..., :3]
            if placed is not None and i < count:  # the input camera's part, at the input's scale
                image = np.asarray(
                    Image.fromarray(image).transform(
                        (size, size), Image.AFFINE, placed, Image.BILINEAR, fillcolor=(255, 255, 255)
                    )
                )
            shot[:, width - size :] = image
            if frames is not None:
                shot[:, :size] = _input_panel(frames[k * len(frames) // count], size)
            yield shot

    try:
        return write_video(out_path, rendered(), fps)
    finally:
        renderer.release()


def _placement(
    meshes: Sequence[trimesh.Trimesh],
    camera: Camera,
    size: int,
    frames: np.ndarray,
    input_box: tuple[int, int, int, int],
) -> tuple[float, ...] | None:
    """PIL's affine map (output pixel -> rendered pixel) that puts the front view's box of every frame's projection
    onto the input object's box in the input panel; None when there is nothing to place."""
    points = [np.asarray(m.vertices) for m in meshes if len(m.vertices)]
    x0, y0, x1, y1 = input_box
    if not points or x1 <= x0 or y1 <= y0:
        return None
    pix = camera.project(np.concatenate(points), size, size)  # (N, 2) rendered pixels
    (u0, v0), (u1, v1) = pix.min(axis=0), pix.max(axis=0)
    h, w = frames.shape[1:3]
    scale = size / max(h, w)  # input pixels -> panel pixels, as `_input_panel` draws them
    left, top = (size - round(w * scale)) // 2, (size - round(h * scale)) // 2
    target = np.array([x0, y0, x1, y1], np.float64) * scale + [left, top, left, top]
    factor = max(target[2] - target[0], target[3] - target[1]) / max(u1 - u0, v1 - v0, 1e-6)  # rendered -> panel
    (tx, ty), (ux, uy) = (target[:2] + target[2:]) / 2, ((u0 + u1) / 2, (v0 + v1) / 2)
    return (1 / factor, 0.0, ux - tx / factor, 0.0, 1 / factor, uy - ty / factor)


def _checked_input(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or frames.dtype != np.uint8 or len(frames) == 0:
        raise InputError(f"input_frames must be (F, H, W, 3|4) uint8 with F >= 1, got {frames.shape} {frames.dtype}")
    return frames


def _input_panel(frame: np.ndarray, size: int) -> np.ndarray:
    """(size, size, 3) uint8: the input frame over white, scaled to fit, centred on white."""
    if frame.shape[-1] == 4:
        alpha = frame[..., 3:].astype(np.float32) / 255.0
        frame = np.rint(frame[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    h, w = frame.shape[:2]
    scale = size / max(h, w)
    fit = (max(1, round(w * scale)), max(1, round(h * scale)))
    top, left = (size - fit[1]) // 2, (size - fit[0]) // 2
    panel = np.full((size, size, 3), 255, np.uint8)
    panel[top : top + fit[1], left : left + fit[0]] = np.asarray(Image.fromarray(frame).resize(fit, Image.BILINEAR))
    return panel
