"""PBR attributes on mesh surfaces: evaluate a trimesh material at surface points, and the per-vertex convention.

Per-vertex PBR (project convention): `mesh.visual.vertex_colors` RGBA uint8 = base colour + alpha,
`mesh.vertex_attributes["metallic"]` / `["roughness"]` float32 (V,) in [0, 1].

Defaults where a source says nothing: grey 102/255 colour (trimesh's default), metallic 0, roughness 1 (a matte
dielectric), alpha 1. glTF PBR materials follow the glTF spec (factors default to 1, alphaMode OPAQUE → alpha 1).
"""

from __future__ import annotations

import numpy as np
import trimesh
from trimesh.visual.material import PBRMaterial, SimpleMaterial

DEFAULT_METALLIC = 0.0
DEFAULT_ROUGHNESS = 1.0


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear (IEC 61966-2-1). Base colours here are sRGB-encoded;
    glTF/USD vertex colours and renderers' inputs are linear."""
    c = np.clip(np.asarray(c, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def surface_attributes(mesh: trimesh.Trimesh, face: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """(K, 6) float32 base colour RGB, metallic, roughness, alpha at points given by face (K,) and bary (K, 3)."""
    out = np.empty((face.shape[0], 6), np.float32)
    corners = np.asarray(mesh.faces)[face]  # (K, 3) vertex ids
    visual = mesh.visual
    metallic = roughness = None
    if isinstance(visual, trimesh.visual.TextureVisuals):
        rgba, metallic, roughness = _material_values(visual, corners, bary)
    elif visual.kind == "face":
        rgba = np.asarray(visual.face_colors, np.float32)[face] / 255.0
    elif visual.kind == "vertex":
        rgba = _interp(np.asarray(visual.vertex_colors, np.float32) / 255.0, corners, bary)
    else:  # no colours at all: trimesh's default grey
        rgba = np.tile(np.asarray(visual.main_color, np.float32) / 255.0, (face.shape[0], 1))
    out[:, 0:3], out[:, 5] = rgba[:, :3], rgba[:, 3]
    attrs = getattr(mesh, "vertex_attributes", {}) or {}
    for col, name, fallback, default in (
        (3, "metallic", metallic, DEFAULT_METALLIC),
        (4, "roughness", roughness, DEFAULT_ROUGHNESS),
    ):
        if name in attrs and len(attrs[name]) == len(mesh.vertices):
            out[:, col] = _interp(np.asarray(attrs[name], np.float32).reshape(-1, 1), corners, bary)[:, 0]
        else:
            out[:, col] = default if fallback is None else fallback
    return np.clip(out, 0.0, 1.0)


def set_vertex_pbr(mesh: trimesh.Trimesh, attrs: np.ndarray) -> trimesh.Trimesh:
    """Store (V, 6) float attributes on `mesh` in the project's per-vertex convention (in place; returns mesh)."""
    attrs = np.clip(np.asarray(attrs, np.float32), 0.0, 1.0)
    rgba = np.concatenate([attrs[:, 0:3], attrs[:, 5:6]], axis=1)
    mesh.visual = trimesh.visual.ColorVisuals(mesh, vertex_colors=np.rint(rgba * 255).astype(np.uint8))
    mesh.vertex_attributes["metallic"] = attrs[:, 3].copy()
    mesh.vertex_attributes["roughness"] = attrs[:, 4].copy()
    return mesh


def vertex_pbr(mesh: trimesh.Trimesh) -> np.ndarray:
    """(V, 6) float32 per-vertex attributes of a mesh in the project convention (defaults where missing)."""
    visual = mesh.visual if isinstance(mesh.visual, trimesh.visual.ColorVisuals) else mesh.visual.to_color()
    out = np.empty((len(mesh.vertices), 6), np.float32)
    rgba = np.asarray(visual.vertex_colors, np.float32) / 255.0  # (V, 4)
    out[:, 0:3], out[:, 5] = rgba[:, :3], rgba[:, 3]
    attrs = getattr(mesh, "vertex_attributes", {}) or {}
    out[:, 3] = attrs["metallic"] if "metallic" in attrs else DEFAULT_METALLIC
    out[:, 4] = attrs["roughness"] if "roughness" in attrs else DEFAULT_ROUGHNESS
    return out


# ---------------------------------------------------------------------------------------------- internals
def _material_values(visual: trimesh.visual.TextureVisuals, corners: np.ndarray, bary: np.ndarray):
    """RGBA (K, 4), metallic and roughness (K,) or scalars, from a textured/PBR material."""
    mat = visual.material
    simple = isinstance(mat, SimpleMaterial)
    if simple:
        mat = mat.to_pbr()
    if not isinstance(mat, PBRMaterial):
        return np.tile(np.float32([0.4, 0.4, 0.4, 1.0]), (len(corners), 1)), None, None
    uv = None
    if visual.uv is not None and len(visual.uv):
        uv = _interp(np.asarray(visual.uv, np.float64), corners, bary)  # (K, 2)
    factor = np.ones(4, np.float32)
    if mat.baseColorFactor is not None:
        factor = np.asarray(mat.baseColorFactor, np.float32) / 255  # trimesh stores it as RGBA uint8
    rgba = np.tile(factor, (len(corners), 1))
    if mat.baseColorTexture is not None and uv is not None:
        rgba = rgba * _sample_texture(mat.baseColorTexture, uv)
    mode = (mat.alphaMode or ("BLEND" if simple else "OPAQUE")).upper()
    if mode == "OPAQUE":
        rgba[:, 3] = 1.0
    elif mode == "MASK":
        cutoff = 0.5 if mat.alphaCutoff is None else float(mat.alphaCutoff)
        rgba[:, 3] = (rgba[:, 3] >= cutoff).astype(np.float32)
    if simple:
        return rgba, DEFAULT_METALLIC, mat.roughnessFactor
    metallic = 1.0 if mat.metallicFactor is None else float(mat.metallicFactor)
    roughness = 1.0 if mat.roughnessFactor is None else float(mat.roughnessFactor)
    if mat.metallicRoughnessTexture is not None and uv is not None:
        mr = _sample_texture(mat.metallicRoughnessTexture, uv)  # glTF: G = roughness, B = metallic
        return rgba, metallic * mr[:, 2], roughness * mr[:, 1]
    return rgba, metallic, roughness


def _sample_texture(image, uv: np.ndarray) -> np.ndarray:
    """(K, 4) float32 RGBA in [0, 1] of a PIL image at glTF UVs (origin top-left after the v flip), repeat-wrapped."""
    pixels = np.asarray(image.convert("RGBA"), np.float32) / 255.0  # (H, W, 4)
    h, w = pixels.shape[:2]
    x = np.floor(uv[:, 0] * w).astype(np.int64) % w
    y = np.floor((1.0 - uv[:, 1]) * h).astype(np.int64) % h
    return pixels[y, x]


def _interp(values: np.ndarray, corners: np.ndarray, bary: np.ndarray) -> np.ndarray:
    """Barycentric interpolation of per-vertex values (V, C) at (K,) points: (K, C)."""
    out = bary[:, 0:1] * values[corners[:, 0]]
    out += bary[:, 1:2] * values[corners[:, 1]]
    out += bary[:, 2:3] * values[corners[:, 2]]
    return out.astype(np.float32, copy=False)
