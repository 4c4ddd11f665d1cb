"""UV unwrapping (xatlas) and PBR texture baking: a per-vertex-PBR mesh -> a mesh with UVs and two textures.

Textures are the glTF pair: base colour + alpha (RGBA, colour sRGB-encoded as the O-Voxel stores it) and
metallic-roughness (G = roughness, B = metallic, R = 255, unused). Each texel whose centre lies inside (or within
one texel of) a triangle in UV space gets the material at that triangle's 3D point: either from an attribute
function (e.g. the O-Voxel, so texture detail is not limited by vertex density) or by interpolating the vertex
attributes. Empty texels are then filled by push-pull so bilinear filtering and mipmaps never pull in black
across chart seams.

UV convention: glTF's (u, v) with (0, 0) at the first pixel of the image (its top-left): texel row = v * size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import trimesh

from helix4d.errors import InputError
from helix4d.export.files import png_bytes
from helix4d.export.sampling import AttributeFn
from helix4d.ovoxel import set_vertex_pbr, surface_attributes, vertex_pbr
from helix4d.settings import MIN_TEXTURE_SIZE

_MAX_CANDIDATES = 1 << 22  # texel candidates per rasterisation batch (bounds memory)
_MARGIN = 1.0  # texels up to this far (pixels) outside a triangle also take its (clamped) attributes


@dataclass(eq=False)
class TexturedMesh:
    """A mesh unwrapped and baked for export.

    mesh:               vertices split at UV seams; per-vertex PBR in the project convention (used for USD display
                        colours and previews).
    source_vertex:      (V,) int64 the vertex of the source mesh each vertex was copied from (so tracked positions
                        of the source mesh drive the unwrapped one).
    uv:                 (V, 2) float32 per-vertex texture coordinates, glTF convention.
    normals:            (V, 3) float32 smooth normals of the source mesh (no shading seams at UV seams).
    base_color:         (S, S, 4) uint8 RGBA: colour sRGB-encoded, alpha linear.
    metallic_roughness: (S, S, 3) uint8: R = 255, G = roughness, B = metallic (glTF layout).
    coverage:           (S, S) bool, texels whose centre lies inside a triangle.
    """

    mesh: trimesh.Trimesh
    source_vertex: np.ndarray
    uv: np.ndarray
    normals: np.ndarray
    base_color: np.ndarray
    metallic_roughness: np.ndarray
    coverage: np.ndarray

    @cached_property
    def base_color_png(self) -> bytes:
        return png_bytes(self.base_color)

    @cached_property
    def metallic_roughness_png(self) -> bytes:
        return png_bytes(self.metallic_roughness)


def bake_textures(
    mesh: trimesh.Trimesh, attribute_fn: AttributeFn | None = None, size: int = 512, padding: int = 4
) -> TexturedMesh:
    """Unwrap `mesh` with xatlas into one `size`² atlas and bake its material into textures.

    attribute_fn(points (M, 3)) -> (M, 6) base colour RGB, metallic, roughness, alpha in [0, 1]; default:
    barycentric interpolation of the mesh's own vertex attributes. `padding` is the requested gap between charts
    in texels. xatlas sizes its atlas from an estimated texel density, and that atlas (W x H texels) is mapped
    onto size²: the real gap shrinks by size / max(W, H) when xatlas overshoots (many small charts at a small
    size), so prefer a larger texture or a face budget for fragmented meshes.
    """
    if size < MIN_TEXTURE_SIZE:  # the generate front ends refuse it up front, by helix4d.settings' table
        raise InputError(f"texture size must be >= {MIN_TEXTURE_SIZE} texels, got {size}")
    if len(mesh.faces) == 0:
        raise InputError("cannot bake textures for a mesh with no faces")
    vmapping, faces, uv = unwrap(mesh, size, padding)
    face, bary, score = _rasterize(uv * size, faces, size)
    covered = score >= -_MARGIN  # (S, S): inside or near a triangle
    tri = face[covered]
    w = bary[covered]  # (M, 3)
    if attribute_fn is None:
        attrs = surface_attributes(mesh, tri, w)  # xatlas keeps the face order: face ids are the mesh's
        vertex_attrs = vertex_pbr(mesh)[vmapping]
    else:
        corners = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces)[tri]]  # (M, 3, 3)
        attrs = _checked(attribute_fn(np.einsum("mj,mjc->mc", w, corners)), len(tri))
        vertex_attrs = _checked(attribute_fn(np.asarray(mesh.vertices)[vmapping]), len(vmapping))
    image = np.zeros((size, size, 6), np.float32)
    image[covered] = attrs
    image = _push_pull(image, covered)
    base_color = _to_u8(image[..., [0, 1, 2, 5]])
    metallic_roughness = _to_u8(np.stack([np.ones_like(image[..., 0]), image[..., 4], image[..., 3]], axis=-1))

    unwrapped = trimesh.Trimesh(np.asarray(mesh.vertices)[vmapping], faces, process=False)
    set_vertex_pbr(unwrapped, vertex_attrs)
    return TexturedMesh(
        mesh=unwrapped,
        source_vertex=vmapping,
        uv=uv.astype(np.float32),
        normals=np.asarray(mesh.vertex_normals, dtype=np.float32)[vmapping],
        base_color=base_color,
        metallic_roughness=metallic_roughness,
        coverage=score >= 0.0,
    )


def _to_u8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _checked(attrs: np.ndarray, count: int) -> np.ndarray:
    attrs = np.asarray(attrs, dtype=np.float32)
    if attrs.shape != (count, 6):
        raise InputError(
            f"attribute_fn must return ({count}, 6) values (RGB, metallic, roughness, alpha), got {attrs.shape}"
        )
    return attrs


def unwrap(mesh: trimesh.Trimesh, size: int, padding: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """xatlas charts packed into one atlas for a size² texture: vmapping (V',) source vertex of each new vertex,
    faces (F, 3) in the mesh's face order, uv (V', 2) in [0, 1] (glTF convention)."""
    import xatlas

    atlas = xatlas.Atlas()
    atlas.add_mesh(np.asarray(mesh.vertices, dtype=np.float32), np.asarray(mesh.faces, dtype=np.uint32))
    pack = xatlas.PackOptions()
    pack.resolution = size
    pack.padding = padding
    pack.bilinear = True
    atlas.generate(pack_options=pack)
    if atlas.atlas_count != 1:
        raise RuntimeError(f"xatlas produced {atlas.atlas_count} atlases, expected one")
    vmapping, faces, uv = atlas[0]
    # xatlas normalises u by the atlas width and v by its height; both may exceed `size` a little (its texel
    # density is an estimate), so mapping [0, 1] onto `size` just rescales the atlas.
    return vmapping.astype(np.int64), faces.astype(np.int64), uv.astype(np.float64)


def _rasterize(uv_px: np.ndarray, faces: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every texel of a size² grid: the triangle covering its centre, barycentrics (clamped) and a score.

    uv_px: (V, 2) vertex positions in texels (x = column, y = row). Returns face (S, S) int64, bary (S, S, 3)
    float32 and score (S, S) float32 = signed distance in texels from the texel centre to the triangle's nearest
    edge line (>= 0 inside; -inf where no triangle is within _MARGIN). Where triangles overlap, the highest score
    wins, so a texel inside one triangle is never taken over by a neighbour's margin.
    """
    tri = uv_px[faces].astype(np.float32)  # (F, 3, 2); float32 is exact enough for texel positions
    a, e1, e2 = tri[:, 0], tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]  # (F,) twice the signed area
    # distance from a vertex's barycentric coordinate: |area2| / length of the opposite edge
    edges = np.stack([tri[:, 2] - tri[:, 1], tri[:, 0] - tri[:, 2], tri[:, 1] - tri[:, 0]], axis=1)  # (F, 3, 2)
    height = np.abs(area2)[:, None] / np.maximum(np.linalg.norm(edges, axis=-1), 1e-12)  # (F, 3)
    # texels whose centre (x + 0.5) lies within _MARGIN of the triangle's bounding box
    lo = np.clip(np.ceil(tri.min(axis=1) - _MARGIN - 0.5), 0, size - 1).astype(np.int64)  # (F, 2)
    hi = np.clip(np.floor(tri.max(axis=1) + _MARGIN - 0.5), 0, size - 1).astype(np.int64)
    span = np.maximum(hi - lo + 1, 0)  # (F, 2)
    counts = np.where(np.abs(area2) > 1e-12, span[:, 0] * span[:, 1], 0)
    inv_area2 = np.where(counts > 0, 1.0 / np.where(counts > 0, area2, 1.0), 0.0).astype(np.float32)

    face_img = np.full(size * size, -1, np.int64)
    bary_img = np.zeros((size * size, 3), np.float32)
    score_img = np.full(size * size, -np.inf, np.float32)
    ends = np.cumsum(counts)
    start = 0
    while start < len(faces):  # batches of faces with at most _MAX_CANDIDATES texel candidates
        stop = max(int(np.searchsorted(ends, ends[start] - counts[start] + _MAX_CANDIDATES, side="right")), start + 1)
        ids = np.arange(start, stop)
        n = counts[ids]
        t = np.repeat(ids, n)  # (K,) triangle per candidate texel
        offset = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)
        x = lo[t, 0] + offset % span[t, 0]
        y = lo[t, 1] + offset // span[t, 0]
        dx = (x + 0.5).astype(np.float32) - a[t, 0]  # texel centre relative to vertex 0
        dy = (y + 0.5).astype(np.float32) - a[t, 1]
        l1 = (dx * e2[t, 1] - dy * e2[t, 0]) * inv_area2[t]
        l2 = (e1[t, 0] * dy - e1[t, 1] * dx) * inv_area2[t]
        l0 = 1.0 - l1 - l2
        h = height[t]
        score = np.minimum(np.minimum(l0 * h[:, 0], l1 * h[:, 1]), l2 * h[:, 2])  # signed distance to edges, texels
        keep = np.flatnonzero(score >= -_MARGIN)
        t, score, pix = t[keep], score[keep], (y * size + x)[keep]
        lam = np.stack([l0[keep], l1[keep], l2[keep]], axis=1)  # (K', 3)
        order = np.lexsort((score, pix))  # per texel, best score last
        last = np.r_[pix[order][1:] != pix[order][:-1], True]
        best = order[last]
        best = best[score[best] > score_img[pix[best]]]
        lam = np.clip(lam[best], 0.0, None)
        face_img[pix[best]] = t[best]
        bary_img[pix[best]] = lam / lam.sum(axis=1, keepdims=True)
        score_img[pix[best]] = score[best]
        start = stop
    return face_img.reshape(size, size), bary_img.reshape(size, size, 3), score_img.reshape(size, size)


def _push_pull(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill texels outside `mask` from a pyramid of masked averages (push: 2x2 sums down; pull: coarsest
    available average up), leaving masked texels unchanged. image (H, W, C) float32, mask (H, W) bool."""
    if mask.all() or not mask.any():
        return image
    levels = []
    value, weight = image * mask[..., None], mask.astype(np.float32)
    while max(weight.shape) > 1:
        levels.append((value, weight))
        h, w = weight.shape
        pad = ((0, h % 2), (0, w % 2))
        value = np.pad(value, (*pad, (0, 0)))
        weight = np.pad(weight, pad)
        value = value.reshape(value.shape[0] // 2, 2, value.shape[1] // 2, 2, -1).sum(axis=(1, 3))
        weight = weight.reshape(weight.shape[0] // 2, 2, weight.shape[1] // 2, 2).sum(axis=(1, 3))
    filled = value / np.maximum(weight, 1e-12)[..., None]
    for value, weight in reversed(levels):
        h, w = weight.shape
        up = filled.repeat(2, axis=0).repeat(2, axis=1)[:h, :w]
        filled = np.where(weight[..., None] > 0, value / np.maximum(weight, 1e-12)[..., None], up)
    return np.where(mask[..., None], image, filled).astype(np.float32)
