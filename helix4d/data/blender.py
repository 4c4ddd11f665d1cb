"""Import animated assets (glTF/GLB with skinning and morph targets, FBX, .blend) through Blender as per-frame meshes.

Blender runs as a Python module (`bpy`, the optional extra `helix4d[blender]`) in a child process for every asset:
bpy is neither fork- nor thread-safe, keeps global state between imports, and can crash on a bad file; a child
process turns all of that into an ordinary error for one asset. The child opens the file in a clean factory-settings
scene, samples F frames evenly over the animation range, evaluates the depsgraph at each (armatures, shape keys,
modifiers, constraints applied), and writes world-space triangles with per-vertex PBR to a temporary .npz; this
process turns them into trimesh meshes and normalises the whole sequence into the unit cube with one box.

Materials (kept simple): per material the Principled BSDF's Base Color (or the first image texture feeding it,
sampled at the vertices' UVs; a colour factor on a textured input is ignored), Metallic, Roughness and Alpha
constants, multiplied by the mesh's active colour attribute when it has one. Colours are sRGB-encoded like every
base colour in helix4d.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from helix4d.data.synthetic import MARGIN
from helix4d.errors import InputError
from helix4d.io.blender import TIMEOUT_S, last_error, require_bpy

SUFFIXES = (".glb", ".gltf", ".fbx", ".blend")


@dataclass
class AnimatedAsset:
    """Per-frame meshes of an animated asset, in the unit cube [-0.5, 0.5]^3 (y-up, front facing +z).

    meshes: F trimesh meshes with per-vertex PBR (vertex_colors RGBA uint8, vertex_attributes metallic/roughness).
    times: (F,) float64 seconds from the start of the animation range.
    fps: the source scene's frame rate.
    normalization: (4, 4) float64 mapping source coordinates (y-up, after Blender's import) to the unit cube.
    """

    meshes: list[trimesh.Trimesh]
    times: np.ndarray
    fps: float
    normalization: np.ndarray


def import_animated(path: str | Path, frames: int = 16, timeout: float = TIMEOUT_S) -> AnimatedAsset:
    """F frames sampled evenly over `path`'s animation range (first and last frame included), normalised together.

    Raises `InputError` for a missing, unsupported or unreadable file (including a Blender crash or a run longer
    than `timeout` seconds) and `BackendUnavailableError` without bpy.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"asset not found: {path} — check the path")
    if path.suffix.lower() not in SUFFIXES:
        raise InputError(f"cannot import {path.name}: use one of {', '.join(SUFFIXES)}")
    if frames < 1:
        raise InputError(f"frames must be >= 1, got {frames}")
    require_bpy("importing animated assets")
    with tempfile.TemporaryDirectory(prefix="helix4d-blender-") as tmp:
        out = Path(tmp) / "frames.npz"
        args = f"{str(path.resolve())!r}, {str(out)!r}, {frames}"
        code = f"from helix4d.data.blender import _child_main; _child_main({args})"
        try:
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise InputError(f"Blender took more than {timeout:.0f} s to import {path}; skipped") from None
        if run.returncode != 0 or not out.is_file():
            raise InputError(f"Blender could not import {path}: {last_error(run.stderr, run.returncode)}")
        with np.load(out) as z:
            times, fps = z["times"].astype(np.float64), float(z["fps"])
            meshes = [_mesh(z, i) for i in range(len(times))]
    meshes, matrix = normalize_sequence(meshes)
    return AnimatedAsset(meshes=meshes, times=times, fps=fps, normalization=matrix)


def normalize_sequence(
    meshes: list[trimesh.Trimesh], margin: float = MARGIN
) -> tuple[list[trimesh.Trimesh], np.ndarray]:
    """Centre and scale all frames with ONE box (the union of their bounds): its longest side becomes 1 - 2 * margin.

    One box for the sequence keeps real motion and size changes; a per-frame box would erase them. The default
    margin is the synthetic world's, so both sources put objects at the same scale.
    Returns the moved copies and the (4, 4) matrix applied.
    """
    points = np.concatenate([np.asarray(m.vertices) for m in meshes])  # (sum V, 3)
    lo, hi = points.min(axis=0), points.max(axis=0)
    scale = (1.0 - 2.0 * margin) / max(float((hi - lo).max()), 1e-12)
    matrix = np.eye(4)
    matrix[:3, :3] *= scale
    matrix[:3, 3] = -(lo + hi) / 2 * scale
    moved = []
    for mesh in meshes:
        mesh = mesh.copy()
        mesh.vertices = np.clip(np.asarray(mesh.vertices) @ matrix[:3, :3].T + matrix[:3, 3], -0.5, 0.5)
        moved.append(mesh)
    return moved, matrix


def _mesh(z, i: int) -> trimesh.Trimesh:
    mesh = trimesh.Trimesh(z[f"vertices{i}"], z[f"faces{i}"], vertex_colors=z[f"colors{i}"], process=False)
    mesh.vertex_attributes["metallic"] = z[f"metallic{i}"]
    mesh.vertex_attributes["roughness"] = z[f"roughness{i}"]
    return mesh


# ---------------------------------------------------------------------------------------------- child process


def _child_main(path: str, out: str, frames: int) -> None:
    """Runs in the child process: import `path`, sample `frames` frames, save the arrays to `out` (.npz)."""
    import bpy

    scene = _load_scene(bpy, Path(path))
    start, end = _animation_range(scene, is_blend=path.lower().endswith(".blend"))
    fps = scene.render.fps / scene.render.fps_base
    samples = np.linspace(start, end, frames) if frames > 1 else np.array([start], np.float64)
    arrays, materials = {}, _MaterialCache()
    for i, frame in enumerate(samples):
        scene.frame_set(int(np.floor(frame)), subframe=float(frame - np.floor(frame)))
        parts = _evaluated_parts(bpy.context.evaluated_depsgraph_get(), materials)
        if not parts:
            raise RuntimeError(f"no visible mesh geometry at frame {frame:g}")
        offsets = np.cumsum([0] + [len(p[0]) for p in parts[:-1]])
        for k, name in enumerate(("vertices", "faces", "colors", "metallic", "roughness")):
            blocks = [p[k] + off if name == "faces" else p[k] for p, off in zip(parts, offsets)]
            arrays[f"{name}{i}"] = np.concatenate(blocks)
    np.savez(out, times=(samples - start) / fps, fps=np.float64(fps), **arrays)


def _load_scene(bpy, path: Path):
    """A clean scene holding only `path`'s content."""
    suffix = path.suffix.lower()
    if suffix == ".blend":
        bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False)
        return bpy.context.scene
    bpy.ops.wm.read_factory_settings(use_empty=True)
    if suffix in (".glb", ".gltf"):
        bpy.ops.import_scene.gltf(filepath=str(path))
    else:
        bpy.ops.import_scene.fbx(filepath=str(path))
    return bpy.context.scene


def _animation_range(scene, is_blend: bool) -> tuple[float, float]:
    """A .blend's own scene range; for imports (which leave the default 1-250) the union of the keyframe ranges of
    the active actions on objects and shape keys (armature actions drive skinned meshes)."""
    if is_blend:
        return float(scene.frame_start), float(scene.frame_end)
    ranges = []
    for obj in scene.objects:
        owners = [obj, getattr(getattr(obj, "data", None), "shape_keys", None)]
        for owner in owners:
            action = owner.animation_data.action if owner is not None and owner.animation_data else None
            if action is not None:
                ranges.append(tuple(action.frame_range))
    if not ranges:
        return float(scene.frame_start), float(scene.frame_end)
    return float(min(r[0] for r in ranges)), float(max(r[1] for r in ranges))


_GEOMETRY_TYPES = {"MESH", "CURVE", "SURFACE", "FONT"}
# Blender is z-up with the front facing -y; helix4d is y-up with the front facing +z: (x, y, z) -> (x, z, -y).
_TO_Y_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _evaluated_parts(depsgraph, materials: _MaterialCache) -> list[tuple[np.ndarray, ...]]:
    """(vertices (V, 3), faces (T, 3), colors (V, 4) uint8, metallic (V,), roughness (V,)) per visible object."""
    parts = []
    for inst in depsgraph.object_instances:
        obj = inst.object
        if obj.type not in _GEOMETRY_TYPES or obj.original.hide_render:
            continue
        mesh = obj.to_mesh()
        try:
            part = _mesh_arrays(mesh, np.array(inst.matrix_world), obj, materials)
        finally:
            obj.to_mesh_clear()
        if part is not None:
            parts.append(part)
    return parts


def _mesh_arrays(mesh, world: np.ndarray, obj, materials: _MaterialCache) -> tuple[np.ndarray, ...] | None:
    mesh.calc_loop_triangles()
    n_vert, n_tri = len(mesh.vertices), len(mesh.loop_triangles)
    if n_vert == 0 or n_tri == 0:
        return None
    co = _get(mesh.vertices, "co", n_vert * 3, np.float64).reshape(-1, 3)
    co = (co @ world[:3, :3].T + world[:3, 3]) @ _TO_Y_UP.T  # (V, 3)
    faces = _get(mesh.loop_triangles, "vertices", n_tri * 3, np.int64).reshape(-1, 3)
    corners = _get(mesh.loop_triangles, "loops", n_tri * 3, np.int64).reshape(-1, 3)
    slot = _get(mesh.loop_triangles, "material_index", n_tri, np.int64)
    if np.linalg.det(world[:3, :3]) < 0:  # mirrored object: keep outward winding
        faces, corners = faces[:, ::-1], corners[:, ::-1]
    uv_layer = mesh.uv_layers.active
    uv = _get(uv_layer.data, "uv", len(mesh.loops) * 2, np.float64).reshape(-1, 2) if uv_layer else None  # (L, 2)

    # per-corner PBR from each triangle's material, then averaged onto vertices
    rgba = np.empty((n_tri, 3, 4))
    scalars = np.empty((n_tri, 3, 2))  # metallic, roughness
    slots = obj.material_slots
    for s in np.unique(slot):
        mat = slots[s].material if s < len(slots) else None
        colour, metallic, roughness, image = materials.get(mat)
        sel = slot == s
        rgba[sel] = colour
        if image is not None and uv is not None:
            rgba[sel, :, :3] = image.sample(uv[corners[sel]])
        scalars[sel] = (metallic, roughness)
    colour_attr = _vertex_colours(mesh, n_vert)
    if colour_attr is not None:
        rgba *= colour_attr[faces]
    per_vertex = _corner_mean(np.concatenate([rgba, scalars], axis=2), faces, n_vert)  # (V, 6)
    colors = np.round(np.clip(per_vertex[:, :4], 0, 1) * 255).astype(np.uint8)
    metallic, roughness = per_vertex[:, 4].astype(np.float32), per_vertex[:, 5].astype(np.float32)
    return co.astype(np.float32), faces.astype(np.int32), colors, metallic, roughness


def _get(collection, attr: str, size: int, dtype) -> np.ndarray:
    out = np.empty(size, dtype=np.float32 if dtype == np.float64 else np.int32)
    collection.foreach_get(attr, out)
    return out.astype(dtype)


def _corner_mean(values: np.ndarray, faces: np.ndarray, n_vert: int) -> np.ndarray:
    """Average (T, 3, C) per-corner values onto (V, C) vertices (unused vertices get 0)."""
    sums = np.zeros((n_vert, values.shape[-1]))
    np.add.at(sums, faces.reshape(-1), values.reshape(-1, values.shape[-1]))
    counts = np.bincount(faces.reshape(-1), minlength=n_vert)[:, None]
    return sums / np.maximum(counts, 1)


def _vertex_colours(mesh, n_vert: int) -> np.ndarray | None:
    """(V, 4) sRGB colours of the active colour attribute (corner colours averaged), or None."""
    attr = mesh.color_attributes.active_color
    if attr is None or attr.domain not in ("POINT", "CORNER"):
        return None
    values = _get(attr.data, "color_srgb", len(attr.data) * 4, np.float64).reshape(-1, 4)
    if attr.domain == "POINT":
        return values
    loop_vertex = _get(mesh.loops, "vertex_index", len(mesh.loops), np.int64)
    return _corner_mean(values[:, None], loop_vertex[:, None], n_vert)


class _Image:
    """An image's pixels for nearest-texel lookups at UVs (repeat wrapping, v up as in Blender)."""

    def __init__(self, image) -> None:
        w, h = image.size
        self.pixels = None
        if w and h:
            pixels = np.empty(w * h * 4, np.float32)
            image.pixels.foreach_get(pixels)
            self.pixels = pixels.reshape(h, w, 4)  # row 0 is the bottom of the image

    def sample(self, uv: np.ndarray) -> np.ndarray:
        """(..., 2) UVs -> (..., 3) RGB (as stored: sRGB for 8-bit images)."""
        if self.pixels is None:
            return np.ones(uv.shape[:-1] + (3,))
        h, w = self.pixels.shape[:2]
        x = np.floor(uv[..., 0] % 1.0 * w).astype(np.int64).clip(0, w - 1)
        y = np.floor(uv[..., 1] % 1.0 * h).astype(np.int64).clip(0, h - 1)
        return self.pixels[y, x, :3]


class _MaterialCache:
    """(sRGB RGBA (4,), metallic, roughness, base-colour image or None) per material, read once per asset."""

    def __init__(self) -> None:
        self._cache: dict = {}

    def get(self, mat):
        key = mat.name if mat is not None else None
        if key not in self._cache:
            self._cache[key] = self._read(mat)
        return self._cache[key]

    @staticmethod
    def _read(mat):
        bsdf = None
        if mat is not None and mat.use_nodes and mat.node_tree is not None:
            bsdf = next((n for n in mat.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
        if bsdf is None:
            base = tuple(mat.diffuse_color) if mat is not None else (0.8, 0.8, 0.8, 1.0)
            metallic = float(mat.metallic) if mat is not None else 0.0
            roughness = float(mat.roughness) if mat is not None else 0.5
            return _srgb(base), metallic, roughness, None
        inputs = bsdf.inputs
        colour = _srgb(tuple(inputs["Base Color"].default_value))
        colour[3] = float(inputs["Alpha"].default_value)
        image = _upstream_image(inputs["Base Color"])
        return colour, float(inputs["Metallic"].default_value), float(inputs["Roughness"].default_value), image


def _upstream_image(socket) -> _Image | None:
    """The first image texture node feeding `socket` (through mix/multiply nodes), as an `_Image`."""
    stack = [link.from_node for link in socket.links]
    seen = set()
    while stack:
        node = stack.pop()
        if node.name in seen:
            continue
        seen.add(node.name)
        if node.type == "TEX_IMAGE" and node.image is not None:
            return _Image(node.image)
        stack.extend(link.from_node for inp in node.inputs for link in inp.links)
    return None


def _srgb(linear_rgba: tuple[float, ...]) -> np.ndarray:
    """Blender's linear RGBA -> sRGB-encoded RGB + unchanged alpha, (4,) float64."""
    c = np.clip(np.asarray(linear_rgba[:3], np.float64), 0, 1)
    rgb = np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)
    return np.append(rgb, linear_rgba[3] if len(linear_rgba) > 3 else 1.0)
