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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from helix4d.errors import InputError
from helix4d.export.bake import TexturedMesh
from helix4d.export.surface import Frame

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
) -> Path:
    """Render `meshes` (one per frame) and write the preview MP4 described in this module's docstring.

    input_frames: (F_in, H, W, 3|4) uint8 or None; RGBA frames are composited over white.
    """
    from helix4d.data.layout import CONDITION_ELEVATION_DEG, CONDITION_FOV_DEG, fit_radius
    from helix4d.io import write_video
    from helix4d.render import Renderer, orbit_cameras

    if len(meshes) == 0:
        raise InputError("render_preview needs at least one mesh")
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    if size < 16:
        raise InputError(f"preview size must be >= 16 pixels, got {size}")
    count = len(meshes)
    panels = None if input_frames is None else _input_panels(input_frames, size)
    orbit_len = preview_frame_count(count, fps) - count
    views = dict(radius=fit_radius(CONDITION_FOV_DEG), elevation_deg=CONDITION_ELEVATION_DEG, fov_deg=CONDITION_FOV_DEG)
    front = orbit_cameras(1, **views)[0]
    orbit = orbit_cameras(orbit_len, **views)
    shots = [(k, front) for k in range(count)] + [(j % count, cam) for j, cam in enumerate(orbit)]

    width = size * (1 if panels is None else 2)
    video = np.empty((len(shots), size, width, 3), np.uint8)  # (N, S, W, 3)
    renderer = Renderer(size, size)
    try:
        for i, (k, camera) in enumerate(shots):
            mesh = meshes[k].mesh if isinstance(meshes[k], TexturedMesh) else meshes[k]
            video[i, :, width - size :] = renderer.render(mesh, camera, _WHITE)[..., :3]
            if panels is not None:
                video[i, :, :size] = panels[k * len(panels) // count]
    finally:
        renderer.release()
    return write_video(out_path, video, fps)


def _input_panels(frames: np.ndarray, size: int) -> np.ndarray:
    """(F_in, size, size, 3) uint8: each frame over white, scaled to fit, centred on white."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] not in (3, 4) or frames.dtype != np.uint8 or len(frames) == 0:
        raise InputError(f"input_frames must be (F, H, W, 3|4) uint8 with F >= 1, got {frames.shape} {frames.dtype}")
    if frames.shape[-1] == 4:
        alpha = frames[..., 3:].astype(np.float32) / 255.0
        frames = np.rint(frames[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    h, w = frames.shape[1:3]
    scale = size / max(h, w)
    fit = (max(1, round(w * scale)), max(1, round(h * scale)))
    top, left = (size - fit[1]) // 2, (size - fit[0]) // 2
    out = np.full((len(frames), size, size, 3), 255, np.uint8)
    for i, frame in enumerate(frames):
        resized = Image.fromarray(frame).resize(fit, Image.BILINEAR)
        out[i, top : top + fit[1], left : left + fit[0]] = np.asarray(resized)
    return out
