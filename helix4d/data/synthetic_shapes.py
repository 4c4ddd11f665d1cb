"""Geometry and materials for the synthetic 4D world: primitives, swept bars, sheets, implicit (metaball) surfaces.

Everything returns plain arrays (`Part`: vertices, faces, per-vertex PBR) so the scene builders can move them
with 4x4 matrices and combine a frame into one trimesh at the end. Pure numpy/trimesh/scikit-image, deterministic.
"""

from __future__ import annotations

import colorsys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh
from skimage.measure import marching_cubes

Params = dict[str, Any]


@dataclass
class Part:
    """One piece of a frame: vertices (V, 3), faces (F, 3) and per-vertex PBR (V, 6) = RGB, metallic, roughness,
    alpha (the column order of `helix4d.ovoxel.vertex_pbr`)."""

    vertices: np.ndarray
    faces: np.ndarray
    pbr: np.ndarray

    def transformed(self, matrix: np.ndarray) -> Part:
        """This part moved by a 4x4 matrix (faces are flipped if the matrix mirrors)."""
        verts = self.vertices @ matrix[:3, :3].T + matrix[:3, 3]
        faces = self.faces if np.linalg.det(matrix[:3, :3]) > 0 else self.faces[:, ::-1]
        return Part(verts, faces, self.pbr)


Frames = list[list[Part]]  # per frame, the parts that make it up


# ---------------------------------------------------------------------------------------------- materials


def sample_material(rng: np.random.Generator, alpha: float = 1.0, metal_chance: float = 0.25) -> Params:
    """A random PBR material: saturated colour, mostly dielectric, sometimes metal; JSON-ready floats."""
    hue, sat, val = rng.random(), rng.uniform(0.45, 0.9), rng.uniform(0.55, 0.95)
    metal = rng.random() < metal_chance
    return {
        "color": [float(c) for c in colorsys.hsv_to_rgb(hue, sat, val)],
        "metallic": float(rng.uniform(0.75, 1.0) if metal else rng.uniform(0.0, 0.1)),
        "roughness": float(rng.uniform(0.2, 0.6) if metal else rng.uniform(0.3, 0.9)),
        "alpha": float(alpha),
    }


def material_pbr(material: Params, count: int) -> np.ndarray:
    """(count, 6) per-vertex PBR of a uniform material."""
    row = [*material["color"], material["metallic"], material["roughness"], material["alpha"]]
    return np.tile(np.asarray(row, dtype=np.float64), (count, 1))


def painted(mesh: trimesh.Trimesh, material: Params) -> Part:
    """A mesh as a `Part` with one uniform material."""
    verts = np.asarray(mesh.vertices, dtype=np.float64)
    return Part(verts, np.asarray(mesh.faces), material_pbr(material, len(verts)))


def to_trimesh(parts: Sequence[Part]) -> trimesh.Trimesh:
    """One trimesh for a frame, with per-vertex PBR in the project convention (vertex_colors RGBA uint8 +
    vertex_attributes metallic / roughness float32)."""
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts])
    vertices = np.concatenate([p.vertices for p in parts])
    faces = np.concatenate([p.faces + off for p, off in zip(parts, offsets)])
    pbr = np.clip(np.concatenate([p.pbr for p in parts]), 0.0, 1.0)  # (V, 6)
    rgba = np.rint(np.concatenate([pbr[:, 0:3], pbr[:, 5:6]], axis=1) * 255.0).astype(np.uint8)
    mesh = trimesh.Trimesh(vertices, faces, vertex_colors=rgba, process=False)
    mesh.vertex_attributes["metallic"] = pbr[:, 3].astype(np.float32)
    mesh.vertex_attributes["roughness"] = pbr[:, 4].astype(np.float32)
    return mesh


# ---------------------------------------------------------------------------------------------- transforms


def rotation(axis: Sequence[float], angle: float, point: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 rotation by `angle` radians about `axis` through `point`."""
    return trimesh.transformations.rotation_matrix(angle, np.asarray(axis, dtype=np.float64), point)


def translation(offset: Sequence[float]) -> np.ndarray:
    return trimesh.transformations.translation_matrix(np.asarray(offset, dtype=np.float64))


def random_axis(rng: np.random.Generator) -> list[float]:
    v = rng.normal(size=3)
    return [float(c) for c in v / np.linalg.norm(v)]


def smoothstep(s: float | np.ndarray) -> float | np.ndarray:
    s = np.clip(s, 0.0, 1.0)
    return s * s * (3.0 - 2.0 * s)


# ---------------------------------------------------------------------------------------------- primitives

SHAPES = ("sphere", "box", "cylinder", "capsule", "cone", "torus")


def sample_shape(rng: np.random.Generator, scale: float = 1.0, shapes: Sequence[str] = SHAPES) -> Params:
    """A primitive with random proportions; `size` is roughly its extent along x, y, z."""
    shape = str(rng.choice(list(shapes)))
    size = [float(scale * rng.uniform(0.6, 1.2)) for _ in range(3)]
    if shape in ("sphere", "torus", "capsule"):
        size[2] = size[0]  # round cross-sections stay round
    return {"shape": shape, "size": size}


def primitive(shape: Params) -> trimesh.Trimesh:
    """The mesh of a sampled primitive, centred at the origin, its axis (cylinder, cone, capsule, torus) along y."""
    sx, sy, sz = shape["size"]
    kind = shape["shape"]
    y_up = rotation([1.0, 0.0, 0.0], -np.pi / 2)  # trimesh builds these along z
    if kind == "sphere":
        mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.5)
        mesh.apply_scale([sx, sy, sz])
    elif kind == "box":
        mesh = trimesh.creation.box(extents=[sx, sy, sz])
    elif kind == "cylinder":
        mesh = trimesh.creation.cylinder(radius=0.5, height=1.0, sections=32).apply_transform(y_up)
        mesh.apply_scale([sx, sy, sz])
    elif kind == "cone":
        mesh = trimesh.creation.cone(radius=0.5, height=1.0, sections=32).apply_transform(y_up)
        mesh.apply_translation([0.0, -0.5, 0.0])
        mesh.apply_scale([sx, sy, sz])
    elif kind == "capsule":
        radius = sx / 2.0
        mesh = trimesh.creation.capsule(height=max(sy - sx, 0.05 * sx), radius=radius, count=[16, 16])
        mesh.apply_transform(y_up)
    elif kind == "torus":
        minor = 0.25 * min(sx, sy)
        mesh = trimesh.creation.torus(sx / 2.0 - minor, minor, major_sections=32, minor_sections=16)
        mesh.apply_transform(y_up)
    else:
        raise ValueError(f"unknown primitive {kind!r}")
    return mesh


def slab(extents: Sequence[float], center: Sequence[float]) -> trimesh.Trimesh:
    """An axis-aligned box of `extents` centred at `center` (walls, lids, links)."""
    return trimesh.creation.box(extents=extents, transform=translation(center))


# ---------------------------------------------------------------------------------------------- swept bars and sheets


def profile(name: str, radius: float, points: int = 16) -> np.ndarray:
    """A closed 2D cross-section (P, 2), counter-clockwise: 'round', 'square' or 'star'."""
    if name == "round":
        ang = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
        return radius * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    if name == "square":
        t = np.linspace(-1.0, 1.0, 4, endpoint=False)  # 4 points per side keep edges straight under bending
        side = np.stack([np.ones_like(t), t], axis=1)
        sides = [side @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]]) for a in np.arange(4) * np.pi / 2]
        return radius * np.concatenate(sides)
    if name == "star":
        ang = np.linspace(0.0, 2.0 * np.pi, 10, endpoint=False)
        rad = np.where(np.arange(10) % 2 == 0, radius, 0.5 * radius)
        return np.stack([rad * np.cos(ang), rad * np.sin(ang)], axis=1)
    raise ValueError(f"unknown profile {name!r}")


def swept_bar(section: np.ndarray, length: float, rings: int) -> trimesh.Trimesh:
    """A closed prism along x from -length/2 to length/2 with `rings` cross-sections (so it can bend and twist)."""
    count = len(section)
    xs = np.linspace(-length / 2.0, length / 2.0, rings)
    verts = np.concatenate([np.column_stack([np.full(count, x), section[:, 0], section[:, 1]]) for x in xs])
    ring = np.arange(count)
    nxt = (ring + 1) % count
    faces = []
    for r in range(rings - 1):
        a, b = r * count + ring, (r + 1) * count + ring
        c, d = r * count + nxt, (r + 1) * count + nxt
        faces += [np.stack([a, c, b], axis=1), np.stack([c, d, b], axis=1)]
    # Caps: a centre vertex each.
    start, end = len(verts), len(verts) + 1
    verts = np.concatenate([verts, [[xs[0], 0.0, 0.0], [xs[-1], 0.0, 0.0]]])
    last = (rings - 1) * count
    faces += [np.stack([np.full(count, start), nxt, ring], axis=1)]
    faces += [np.stack([np.full(count, end), last + ring, last + nxt], axis=1)]
    mesh = trimesh.Trimesh(verts, np.concatenate(faces), process=False)
    if mesh.volume < 0:
        mesh.invert()
    return mesh


def grid_sheet(width: float, height: float, nu: int, nv: int) -> trimesh.Trimesh:
    """An open rectangle in the x-y plane, x in [0, width], y in [-height/2, height/2], (nu x nv) vertices."""
    u, v = np.meshgrid(np.linspace(0.0, width, nu), np.linspace(-height / 2.0, height / 2.0, nv), indexing="ij")
    verts = np.column_stack([u.ravel(), v.ravel(), np.zeros(u.size)])
    idx = np.arange(nu * nv).reshape(nu, nv)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return trimesh.Trimesh(verts, faces, process=False)


# ---------------------------------------------------------------------------------------------- implicit surfaces


def gaussian_blobs(points: np.ndarray, centers: np.ndarray, radii: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-blob fields (N, B): weight * exp(-sum(((p - c) / radius)^2)), anisotropic radii (B, 3)."""
    out = np.empty((len(points), len(centers)))
    for b, (center, radius, weight) in enumerate(zip(centers, radii, weights)):
        q = np.zeros(len(points))
        for axis in range(3):  # per-axis columns: no (N, B, 3) temporaries on ~100k grid points
            q += ((points[:, axis] - center[axis]) / radius[axis]) ** 2
        out[:, b] = weight * np.exp(-q)
    return out


def implicit_part(
    field: Callable[[np.ndarray], np.ndarray],
    lo: Sequence[float],
    hi: Sequence[float],
    spacing: float,
    colour: Callable[[np.ndarray], np.ndarray],
    iso: float = 0.5,
) -> Part:
    """Mesh the level set field = iso inside the box [lo, hi] (marching cubes, outward normals).

    `field` maps points (N, 3) to values (N,), larger inside; `colour` maps surface vertices (V, 3) to PBR (V, 6).
    The box is padded by one cell so surfaces are closed; the same box for every frame keeps sampling stable.
    """
    lo = np.asarray(lo, dtype=np.float64) - spacing
    hi = np.asarray(hi, dtype=np.float64) + spacing
    shape = np.maximum(np.ceil((hi - lo) / spacing).astype(int) + 1, 2)
    axes = [lo[i] + spacing * np.arange(shape[i]) for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    values = field(grid).reshape(shape)
    values[[0, -1], :, :] = values[:, [0, -1], :] = values[:, :, [0, -1]] = 0.0  # close the surface at the box
    if values.max() <= iso:
        raise ValueError("implicit surface is empty: the field never exceeds the iso level")
    verts, faces, _, _ = marching_cubes(values, level=iso, spacing=(spacing,) * 3, gradient_direction="ascent")
    verts = verts + lo
    return Part(verts, faces.astype(np.int64), colour(verts))
