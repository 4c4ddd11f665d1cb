import warnings

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from trimesh.visual.material import PBRMaterial, SimpleMaterial

from helix4d.errors import InputError
from helix4d.ovoxel import (
    OVoxel,
    load_mesh,
    mesh_to_ovoxel,
    ovoxel_to_mesh,
    vertex_pbr,
)

R = 64


# ------------------------------------------------------------------------------------------------ helpers
def chamfer(a: trimesh.Trimesh, b: trimesh.Trimesh, n: int = 20000) -> float:
    """Mean of both directions' mean nearest-neighbour distance between surface samples (unit-cube units)."""
    pa = trimesh.sample.sample_surface(a, n, seed=0)[0]
    pb = trimesh.sample.sample_surface(b, n, seed=1)[0]
    return 0.5 * (cKDTree(pb).query(pa)[0].mean() + cKDTree(pa).query(pb)[0].mean())


def edge_use(mesh: trimesh.Trimesh) -> np.ndarray:
    """How many faces use each undirected edge."""
    return np.unique(np.sort(mesh.edges, axis=1), axis=0, return_counts=True)[1]


def components(mesh: trimesh.Trimesh) -> int:
    e = mesh.edges
    g = coo_matrix((np.ones(len(e)), (e[:, 0], e[:, 1])), shape=(len(mesh.vertices),) * 2)
    return connected_components(g, directed=False)[0]


def ray_hits(mesh: trimesh.Trimesh, origin, direction) -> int:
    """Möller–Trumbore hit count of a ray against all triangles."""
    t = mesh.triangles
    e1, e2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    p = np.cross(direction, e2)
    det = (e1 * p).sum(1)
    ok = np.abs(det) > 1e-12
    inv = 1.0 / np.where(ok, det, 1.0)
    s = origin - t[:, 0]
    u = (s * p).sum(1) * inv
    q = np.cross(s, e1)
    v = (direction * q).sum(1) * inv
    dist = (e2 * q).sum(1) * inv
    return int((ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (dist > 0)).sum())


def open_cylinder() -> trimesh.Trimesh:
    cyl = trimesh.creation.cylinder(radius=0.3, height=0.6, sections=64)
    side = np.abs(cyl.face_normals[:, 2]) < 0.5
    return trimesh.Trimesh(cyl.vertices, cyl.faces[side], process=False)


def sheet(z: float = 0.003, half: float = 0.3, n: int = 8) -> trimesh.Trimesh:
    """A single-sided square sheet in the plane z, far thinner than a voxel."""
    g = np.linspace(-half, half, n + 1)
    x, y = np.meshgrid(g, g, indexing="ij")
    v = np.stack([x.ravel(), y.ravel(), np.full(x.size, z)], 1)
    i = np.arange(n)[:, None] * (n + 1) + np.arange(n)[None, :]
    i = i.ravel()
    f = np.concatenate([np.stack([i, i + n + 1, i + 1], 1), np.stack([i + 1, i + n + 1, i + n + 2], 1)])
    return trimesh.Trimesh(v, f, process=False)


def roundtrip(mesh, resolution: int = R) -> tuple[OVoxel, trimesh.Trimesh]:
    vox = mesh_to_ovoxel(mesh, resolution)
    return vox, ovoxel_to_mesh(vox)


# ------------------------------------------------------------------------------------------------ geometry
def test_sphere_closed_and_accurate():
    mesh = trimesh.creation.icosphere(subdivisions=4, radius=0.4)
    vox, out = roundtrip(mesh)
    assert chamfer(mesh, out) < 1.0 / R
    use = edge_use(out)
    assert (use == 2).all(), "closed input must give a closed, manifold-edged output"
    assert out.volume == pytest.approx(mesh.volume, rel=0.03)  # positive: faces point outward
    assert vox.coords.dtype == np.int32 and (vox.dual >= 0).all() and (vox.dual <= 1).all()


def test_box_on_lattice_planes_stays_closed():
    # Faces exactly on lattice planes and corners on lattice points: the tie-breaking must stay consistent.
    mesh = trimesh.creation.box(extents=[0.5, 0.5, 0.5])
    _, out = roundtrip(mesh)
    assert (edge_use(out) == 2).all()
    assert out.volume == pytest.approx(0.125, rel=0.01)


def _lattice_cases():
    """Closed meshes whose faces, edges or vertices lie exactly (or within rounding) on the grid at R = 16."""
    filled = trimesh.creation.box(extents=[1.0, 1.0, 1.0])  # faces on the cube's own boundary
    cyl = trimesh.creation.cylinder(radius=0.3, height=0.9, sections=32)  # vertical edges in the plane x = 0
    snapped = trimesh.creation.icosphere(subdivisions=2, radius=0.4)
    snapped.vertices = np.round(snapped.vertices * 16) / 16  # vertices on lattice points
    noisy = trimesh.creation.box(extents=[0.5, 0.25, 0.375])
    noisy.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 4, [0, 0, 1]))
    noisy.vertices = np.round(noisy.vertices * 32) / 32 + np.where(np.arange(24).reshape(8, 3) % 2, 1e-16, -1e-16)
    return {
        "filled": filled,
        "cylinder": cyl,
        "snapped": trimesh.Trimesh(snapped.vertices, snapped.faces),
        "noisy": noisy,
    }


@pytest.mark.parametrize("name", ["filled", "cylinder", "snapped", "noisy"])
def test_lattice_aligned_closed_meshes_stay_closed(name):
    mesh = _lattice_cases()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # snapping may collapse faces
        _, out = roundtrip(mesh, 16)
    assert (edge_use(out) >= 2).all(), "a closed input must not gain boundary edges"
    assert out.volume == pytest.approx(mesh.volume, rel=0.1)


def test_open_cylinder_keeps_its_boundary():
    mesh = open_cylinder()
    _, out = roundtrip(mesh)
    assert chamfer(mesh, out) < 1.0 / R
    use = edge_use(out)
    assert (use == 1).sum() > 100 and (use <= 2).all()


def test_nested_spheres_keep_inner_surface():
    outer = trimesh.creation.icosphere(subdivisions=4, radius=0.4)
    inner = trimesh.creation.icosphere(subdivisions=3, radius=0.2)
    inner.invert()
    mesh = trimesh.util.concatenate([outer, inner])
    _, out = roundtrip(mesh)
    assert chamfer(mesh, out) < 1.0 / R
    assert ray_hits(out, np.array([-0.49, 0.0013, 0.0021]), np.array([1.0, 0.0, 0.0])) >= 4
    assert components(out) == 2


def test_thin_sheet_stays_one_sheet():
    mesh = sheet()
    _, out = roundtrip(mesh)
    assert chamfer(mesh, out) < 1.0 / R
    assert out.area == pytest.approx(mesh.area, rel=0.1)  # a doubled slab would have twice the area
    assert ray_hits(out, np.array([0.0013, 0.0021, 0.4]), np.array([0.0, 0.0, -1.0])) == 1


def test_separate_boxes_stay_separate():
    # Boxes that touch exactly share a face whose two sides cancel (crossing parity), so they would merge
    # into one box; a gap of 1.5 voxels keeps them apart.
    gap = 1.5 / R
    a = trimesh.creation.box(extents=[0.3, 0.3, 0.3])
    b = a.copy()
    a.apply_translation([-0.15 - gap / 2, 0, 0])
    b.apply_translation([0.15 + gap / 2, 0.013, 0])
    mesh = trimesh.util.concatenate([a, b])
    _, out = roundtrip(mesh)
    assert chamfer(mesh, out) < 1.0 / R
    assert components(out) == 2


def test_scene_transforms_are_applied():
    scene = trimesh.Scene()
    scene.add_geometry(
        trimesh.creation.icosphere(subdivisions=3, radius=0.15),
        transform=trimesh.transformations.translation_matrix([0.2, 0.0, 0.0]),
    )
    scene.add_geometry(
        trimesh.creation.box(extents=[0.2, 0.2, 0.2]),
        transform=trimesh.transformations.translation_matrix([-0.2, 0.0, 0.0]),
    )
    _, out = roundtrip(scene)
    assert chamfer(scene.to_mesh(), out) < 1.0 / R
    assert components(out) == 2


# ------------------------------------------------------------------------------------------------ attributes
def test_constant_vertex_pbr_roundtrip():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.35)
    mesh.visual.vertex_colors = np.tile([200, 30, 90, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    mesh.vertex_attributes["metallic"] = np.full(len(mesh.vertices), 0.7, np.float32)
    mesh.vertex_attributes["roughness"] = np.full(len(mesh.vertices), 0.2, np.float32)
    vox, out = roundtrip(mesh, 32)
    want = np.array([200 / 255, 30 / 255, 90 / 255, 0.7, 0.2, 1.0])
    assert np.abs(vox.attrs - want).max() <= 2 / 255
    assert np.abs(vertex_pbr(out) - want).max() <= 2 / 255
    assert out.visual.vertex_colors.dtype == np.uint8 and out.vertex_attributes["metallic"].dtype == np.float32


@pytest.mark.parametrize(
    "mode, cutoff, alpha", [("BLEND", None, 0.5), ("OPAQUE", None, 1.0), ("MASK", 0.6, 0.0), ("MASK", 0.4, 1.0)]
)
def test_material_factors_and_alpha(mode, cutoff, alpha):
    mesh = trimesh.creation.box(extents=[0.4, 0.4, 0.4])
    mat = PBRMaterial(
        baseColorFactor=[0.2, 0.6, 0.8, 0.5],
        metallicFactor=0.3,
        roughnessFactor=0.9,
        alphaMode=mode,
        alphaCutoff=cutoff,
    )
    mesh.visual = trimesh.visual.TextureVisuals(material=mat)
    vox = mesh_to_ovoxel(mesh, 32)
    want = np.array([0.2, 0.6, 0.8, 0.3, 0.9, alpha])
    assert np.abs(vox.attrs - want).max() <= 2 / 255


def test_defaults_and_face_colours():
    plain = mesh_to_ovoxel(trimesh.creation.box(extents=[0.4, 0.4, 0.4]), 16)
    assert np.allclose(plain.attrs, [102 / 255, 102 / 255, 102 / 255, 0.0, 1.0, 1.0], atol=1e-6)
    painted = trimesh.creation.box(extents=[0.4, 0.4, 0.4])
    painted.visual.face_colors = np.tile([10, 250, 30, 128], (12, 1)).astype(np.uint8)
    vox = mesh_to_ovoxel(painted, 16)
    assert np.abs(vox.attrs[:, [0, 1, 2, 5]] - np.array([10, 250, 30, 128]) / 255).max() <= 2 / 255


def _half_textured_quad(material_kind: str) -> trimesh.Trimesh:
    """A quad in z = 0.1 textured red left and blue right of x = 1/64 (the middle of voxel 16 at R = 32)."""
    lo, hi = -0.4, 0.4 + 1 / 32
    v = np.array([[lo, -0.4, 0.1], [hi, -0.4, 0.1], [hi, 0.4, 0.1], [lo, 0.4, 0.1]])
    f = np.array([[0, 1, 2], [0, 2, 3]])
    uv = (v[:, :2] - [lo, -0.4]) / [hi - lo, 0.8]
    image = Image.fromarray(np.array([[[255, 0, 0, 255], [0, 0, 255, 255]]], np.uint8))  # 2×1 texels
    if material_kind == "pbr":
        mat = PBRMaterial(baseColorTexture=image, baseColorFactor=[1.0, 1.0, 1.0, 1.0])
    else:
        mat = SimpleMaterial(image=image, diffuse=[255, 255, 255, 255])
    return trimesh.Trimesh(v, f, visual=trimesh.visual.TextureVisuals(uv=uv, material=mat), process=False)


@pytest.mark.parametrize("material_kind", ["pbr", "simple"])
def test_texture_colour_sampling(material_kind):
    vox = mesh_to_ovoxel(_half_textured_quad(material_kind), 32)
    x = vox.coords[:, 0]
    left, right, middle = vox.attrs[x < 16], vox.attrs[x > 16], vox.attrs[x == 16]
    assert len(left) > 50 and len(right) > 50
    assert np.abs(left[:, :3] - [1, 0, 0]).max() <= 2 / 255
    assert np.abs(right[:, :3] - [0, 0, 1]).max() <= 2 / 255
    assert (np.abs(middle[:, [0, 2]] - 0.5) < 0.2).all()  # voxels across the seam average both halves


# ------------------------------------------------------------------------------------------------ type and files
def test_save_load_lossless(tmp_path):
    vox = mesh_to_ovoxel(open_cylinder(), 32)
    vox.save(tmp_path / "v.npz")
    back = OVoxel.load(tmp_path / "v.npz")
    assert back.resolution == vox.resolution and back.oriented == vox.oriented
    for name in ("coords", "dual", "edges", "edge_sign", "split", "attrs"):
        a, b = getattr(vox, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), name


def test_features_roundtrip_and_unoriented_mesh():
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    vox = mesh_to_ovoxel(mesh, 32)
    geo, mat = vox.geometry_features(), vox.material_features()
    assert geo.shape == (len(vox), 7) and mat.shape == (len(vox), 6)
    oriented = OVoxel.from_features(32, vox.coords, vox.geometry_features(oriented=True), mat)
    a, b = ovoxel_to_mesh(vox), ovoxel_to_mesh(oriented)
    assert np.array_equal(a.faces, b.faces) and np.allclose(a.vertices, b.vertices)
    # Without signs, the winding is made consistent by propagation: still closed and consistently wound.
    plain = ovoxel_to_mesh(OVoxel.from_features(32, torch.from_numpy(vox.coords), torch.from_numpy(geo), mat))
    assert plain.is_winding_consistent and (edge_use(plain) == 2).all()
    assert abs(plain.volume) == pytest.approx(a.volume, rel=1e-4)


# ------------------------------------------------------------------------------------------------ bad input
def test_bad_meshes_raise_input_error():
    with pytest.raises(InputError, match="no faces"):
        mesh_to_ovoxel(trimesh.Trimesh(), R)
    v = np.array([[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0]], float)
    with pytest.raises(InputError, match="NaN"):
        mesh_to_ovoxel(trimesh.Trimesh(v * np.array([np.nan, 1, 1]), [[0, 1, 2]], process=False), R)
    with pytest.raises(InputError, match="face indices"):
        mesh_to_ovoxel(trimesh.Trimesh(v, [[0, 1, 5]], process=False, validate=False), R)
    with pytest.raises(InputError, match="unit cube"):
        mesh_to_ovoxel(trimesh.Trimesh(v * 20, [[0, 1, 2]], process=False), R)
    with pytest.raises(InputError, match="resolution"):
        mesh_to_ovoxel(trimesh.Trimesh(v, [[0, 1, 2]], process=False), 1)


def test_degenerate_faces_warn_and_are_dropped():
    mesh = trimesh.creation.icosphere(subdivisions=2, radius=0.3)
    faces = np.concatenate([mesh.faces, [[0, 0, 1], [2, 2, 2]]])
    bad = trimesh.Trimesh(mesh.vertices, faces, process=False)
    with pytest.warns(UserWarning, match="degenerate"):
        vox = mesh_to_ovoxel(bad, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clean = mesh_to_ovoxel(mesh, 32)
    assert np.array_equal(vox.coords, clean.coords) and np.array_equal(vox.edges, clean.edges)


def test_load_mesh_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_mesh(tmp_path / "missing.glb")
    junk = tmp_path / "junk.glb"
    junk.write_bytes(b"this is not a mesh")
    with pytest.raises(InputError):
        load_mesh(junk)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError):
        load_mesh(text)
    good = tmp_path / "sphere.ply"
    trimesh.creation.icosphere(subdivisions=1, radius=0.3).export(good)
    assert len(load_mesh(good).faces) == 80
    with pytest.raises(InputError, match="O-Voxel"):
        OVoxel.load(junk)
