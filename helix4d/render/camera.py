"""Look-at pinhole cameras and the standard view sets used for conditioning and previews.

Conventions (fixed for the project): world is y-up and objects live in [-0.5, 0.5]^3; the front of an object faces
+z. `view`/`projection` are OpenGL matrices (camera looks along its -z). `intrinsics`/`extrinsics`/`project` use
the OpenCV pixel convention (+x right, +y down, pixel (i, j) covers [j, j+1) x [i, i+1), so the principal point is
(W/2, H/2)) which is what rendered images use: row 0 is the top of the image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from helix4d.errors import InputError

Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class Camera:
    """A pinhole camera looking from `eye` at `target`; `fov_deg` is the vertical field of view."""

    eye: Vec3 = (0.0, 0.0, 2.2)
    target: Vec3 = (0.0, 0.0, 0.0)
    up: Vec3 = (0.0, 1.0, 0.0)
    fov_deg: float = 40.0
    near: float = 0.05
    far: float = 20.0

    def __post_init__(self) -> None:
        if not 0.0 < self.fov_deg < 180.0:
            raise InputError(f"Camera fov_deg must be in (0, 180), got {self.fov_deg}.")
        if not 0.0 < self.near < self.far:
            raise InputError(f"Camera needs 0 < near < far, got near={self.near}, far={self.far}.")
        forward = np.subtract(self.target, self.eye, dtype=np.float64)
        if np.linalg.norm(forward) < 1e-9:
            raise InputError("Camera eye and target coincide: move the eye away from the target.")
        if np.linalg.norm(np.cross(forward, self.up)) < 1e-9 * np.linalg.norm(forward):
            raise InputError("Camera up vector is parallel to the viewing direction: pick another up vector.")

    def rotation(self) -> np.ndarray:
        """World-to-camera rotation (3, 3), rows = camera x (right), y (up), z (backwards), OpenGL style."""
        back = np.subtract(self.eye, self.target, dtype=np.float64)
        back /= np.linalg.norm(back)
        right = np.cross(self.up, back)
        right /= np.linalg.norm(right)
        return np.stack([right, np.cross(back, right), back])

    def view(self) -> np.ndarray:
        """World-to-camera matrix (4, 4), OpenGL convention (camera looks along -z)."""
        rot = self.rotation()
        view = np.eye(4)
        view[:3, :3] = rot
        view[:3, 3] = -rot @ np.asarray(self.eye, dtype=np.float64)
        return view

    def projection(self, aspect: float = 1.0) -> np.ndarray:
        """OpenGL perspective matrix (4, 4) for width / height = `aspect`; depth maps near..far to NDC -1..1."""
        f = 1.0 / math.tan(math.radians(self.fov_deg) / 2.0)
        n, fa = self.near, self.far
        proj = np.zeros((4, 4))
        proj[0, 0] = f / aspect
        proj[1, 1] = f
        proj[2, 2] = (fa + n) / (n - fa)
        proj[2, 3] = 2.0 * fa * n / (n - fa)
        proj[3, 2] = -1.0
        return proj

    def intrinsics(self, width: int, height: int) -> np.ndarray:
        """Pixel intrinsics K (3, 3), OpenCV convention, square pixels, principal point at the image centre."""
        fy = (height / 2.0) / math.tan(math.radians(self.fov_deg) / 2.0)
        return np.array([[fy, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]])

    def extrinsics(self) -> np.ndarray:
        """World-to-camera [R | t] (3, 4) in the OpenCV convention (+x right, +y down, +z forward)."""
        flip = np.diag([1.0, -1.0, -1.0])
        return flip @ self.view()[:3, :]

    def project(self, points: np.ndarray, width: int, height: int) -> np.ndarray:
        """Pixel coordinates (N, 2) as (x, y) of world points (N, 3); row 0 of an image is its top."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        cam = pts @ self.extrinsics()[:, :3].T + self.extrinsics()[:, 3]  # (N, 3)
        pix = cam @ self.intrinsics(width, height).T  # (N, 3)
        return pix[:, :2] / pix[:, 2:3]


# the conditioning camera: the dataset's renders are seen from it, and the preview shows the result from it
CONDITION_ELEVATION_DEG = 15.0
CONDITION_FOV_DEG = 40.0


def fit_radius(fov_deg: float = CONDITION_FOV_DEG) -> float:
    """Camera distance at which the unit cube's bounding sphere (radius sqrt(3)/2) just fits a `fov_deg` view,
    so the object stays in frame however it moves or turns inside the cube."""
    return math.sqrt(3.0) / 2.0 / math.sin(math.radians(fov_deg) / 2.0)


def orbit_cameras(
    count: int = 16,
    radius: float = 2.2,
    elevation_deg: float = 20.0,
    fov_deg: float = 40.0,
    target: Vec3 = (0.0, 0.0, 0.0),
) -> list[Camera]:
    """`count` cameras evenly spaced in azimuth on a circle around `target` (view 0 is the front, +z).

    These are the multi-view renders of the paper (16 views by default); the default radius and field of view
    keep the whole unit cube in frame.
    """
    if count < 1:
        raise InputError(f"orbit_cameras needs count >= 1, got {count}.")
    if radius <= 0:
        raise InputError(f"orbit_cameras needs a positive radius, got {radius}.")
    elev = math.radians(elevation_deg)
    cams = []
    for k in range(count):
        azim = 2.0 * math.pi * k / count
        offset = radius * np.array([math.cos(elev) * math.sin(azim), math.sin(elev), math.cos(elev) * math.cos(azim)])
        eye = tuple(float(v) for v in np.asarray(target) + offset)
        cams.append(Camera(eye=eye, target=tuple(float(v) for v in target), fov_deg=fov_deg))
    return cams


def front_camera(radius: float = 2.2, elevation_deg: float = 15.0, fov_deg: float = 40.0) -> Camera:
    """The default view: in front of the object (+z), slightly above, looking at the origin."""
    return orbit_cameras(1, radius=radius, elevation_deg=elevation_deg, fov_deg=fov_deg)[0]
