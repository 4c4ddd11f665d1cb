"""Multi-view convenience: one mesh set seen from an orbit of cameras (the paper's 16-view renders)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import trimesh

from helix4d.render.camera import orbit_cameras
from helix4d.render.renderer import Color, Renderer


def render_turntable(
    meshes: trimesh.Trimesh | Sequence[trimesh.Trimesh],
    count: int = 16,
    size: int = 512,
    radius: float = 2.2,
    elevation_deg: float = 20.0,
    fov_deg: float = 40.0,
    background: Color = (0.0, 0.0, 0.0, 0.0),
    renderer: Renderer | None = None,
) -> np.ndarray:
    """Images (count, size, size, 4) uint8 of `meshes` from `orbit_cameras(count, ...)`, uploaded once.

    Pass a `renderer` of the right size to reuse its framebuffers across calls.
    """
    own = renderer is None
    renderer = renderer or Renderer(size, size)
    try:
        cams = orbit_cameras(count, radius=radius, elevation_deg=elevation_deg, fov_deg=fov_deg)
        return renderer.render_views(meshes, cams, background)
    finally:
        if own:
            renderer.release()
