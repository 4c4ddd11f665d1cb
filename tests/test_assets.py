"""Production assets: surface clean-up, topology segments, tracked vertices (small meshes, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from helix4d.data.synthetic import build_frames, sample_scene
from helix4d.errors import InputError
from helix4d.export.cleanup import (
    CleanupConfig,
    boundary_edges,
    clean_mesh,
    fill_small_holes,
    odd_edges,
    remove_floaters,
    rim_loops,
    taubin_smooth,
)
from helix4d.export.segments import Segment, SegmentConfig, topology_segments, topology_signature
from helix4d.export.tracking import TrackingConfig, _DeformationGraph, _rodrigues, track_clip, track_segment
from helix4d.ovoxel import set_vertex_pbr, vertex_pbr


def coloured(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    attrs = np.zeros((len(mesh.vertices), 6), np.float32)
    attrs[:, :3] = np.clip(np.asarray(mesh.vertices) + 0.5, 0, 1)
    attrs[:, 3], attrs[:, 4], attrs[:, 5] = 0.2, 0.7, 1.0
    return set_vertex_pbr(mesh, attrs)


def punched_sphere(seed: int = 0, noise: float = 0.0) -> trimesh.Trimesh:
    """An icosphere (r = 0.3) with the faces around two vertices removed (two hexagonal pinholes)."""
    sphere = trimesh.creation.icosphere(3, radius=0.3)
    keep = ~np.isin(sphere.faces, [0, 7]).any(axis=1)
    mesh = trimesh.Trimesh(sphere.vertices, sphere.faces[keep], process=False)
    mesh.remove_unreferenced_vertices()
    rng = np.random.default_rng(seed)
    mesh.vertices = mesh.vertices + rng.normal(0, noise, mesh.vertices.shape)
    return coloured(mesh)


def grid_sheet(n: int = 12, size: float = 0.6) -> trimesh.Trimesh:
    """A flat open n x n quad grid in the z = 0 plane, triangulated."""
    xs = np.linspace(-size / 2, size / 2, n + 1)
    xx, yy = np.meshgrid(xs, xs, indexing="ij")
    vertices = np.stack([xx.ravel(), yy.ravel(), np.zeros(xx.size)], axis=1)
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    a = (i * (n + 1) + j).ravel()
    faces = np.concatenate([np.stack([a, a + n + 1, a + 1], 1), np.stack([a + 1, a + n + 1, a + n + 2], 1)])
    return coloured(trimesh.Trimesh(vertices, faces, process=False))


def merged(*meshes: trimesh.Trimesh) -> trimesh.Trimesh:
    out = trimesh.util.concatenate(list(meshes))
    return set_vertex_pbr(out, np.concatenate([vertex_pbr(m) for m in meshes]))


# ---------------------------------------------------------------------------------------------- clean-up
def test_pinholes_are_capped_and_floaters_removed():
    speck = coloured(trimesh.creation.icosphere(0, radius=0.01).apply_translation([0.4, 0, 0]))
    mesh = merged(punched_sphere(), speck)
    assert len(boundary_edges(mesh)) == 10  # two pentagonal pinholes
    clean = clean_mesh(mesh)
    assert len(boundary_edges(clean)) == 0 and len(odd_edges(clean)) == 0
    assert np.linalg.norm(clean.vertices, axis=1).max() < 0.31  # the speck at x = 0.4 is gone
    attrs = vertex_pbr(clean)
    assert attrs.shape == (len(clean.vertices), 6) and np.allclose(attrs[:, 3], 0.2, atol=0.01)  # caps keep material


def test_taubin_smoothing_removes_noise_without_shrinking():
    noisy = punched_sphere(seed=1, noise=0.01)
    smooth = taubin_smooth(noisy, iterations=10)
    before, after = np.linalg.norm(noisy.vertices, axis=1), np.linalg.norm(smooth.vertices, axis=1)
    assert after.std() < 0.5 * before.std()  # the bumps are gone
    assert abs(after.mean() - before.mean()) < 0.01 * before.mean()  # and the sphere did not shrink
    laplacian = trimesh.smoothing.filter_laplacian(noisy.copy(), lamb=0.5, iterations=10, volume_constraint=False)
    assert np.linalg.norm(laplacian.vertices, axis=1).mean() < 0.97 * before.mean()  # what Taubin avoids


def test_open_sheets_stay_open_and_keep_their_outline():
    sheet = grid_sheet()
    clean = clean_mesh(sheet, CleanupConfig(smooth_iterations=10))  # smoothing too: rims move along themselves
    assert len(boundary_edges(clean)) == len(boundary_edges(sheet)) == 48  # the outline is not capped
    assert np.allclose(clean.bounds, sheet.bounds, atol=0.01)  # rim vertices slide along the rim only
    assert np.allclose(clean.vertices[:, 2], 0.0)


def test_inner_surfaces_and_separate_parts_survive():
    outer, inner = punched_sphere(), coloured(trimesh.creation.icosphere(2, radius=0.1))
    clean = clean_mesh(merged(outer, inner))
    radii = np.linalg.norm(clean.vertices, axis=1)
    assert ((radii > 0.09) & (radii < 0.11)).sum() >= len(inner.vertices)  # the inner sphere is kept, in place
    assert len(remove_floaters(merged(outer, inner), 0.2).faces) == len(outer.faces)  # a big ratio drops it


def test_rim_loops_split_holes_that_touch_at_a_vertex():
    # two triangles' rims sharing vertex 0: a figure eight of 6 edges is two loops of 3
    edges = np.array([[0, 1], [1, 2], [2, 0], [0, 3], [3, 4], [4, 0]])
    loops = rim_loops(edges)
    assert sorted(len(loop) for loop in loops) == [3, 3]
    assert sorted(np.concatenate(loops).tolist()) == list(range(6))


def test_holes_larger_than_the_limit_stay_open():
    mesh = punched_sphere()
    assert len(boundary_edges(fill_small_holes(mesh, max_edges=4, pinhole_edges=4))) == 10
    assert len(boundary_edges(fill_small_holes(mesh, max_edges=5, pinhole_edges=0))) == 0  # hole-like: capped


def test_cleanup_config_is_checked_and_empty_meshes_pass():
    with pytest.raises(InputError, match="floater_ratio"):
        CleanupConfig(floater_ratio=1.5)
    with pytest.raises(InputError, match="lambda < -mu"):
        CleanupConfig(smooth_lambda=0.6, smooth_mu=-0.5)
    assert len(clean_mesh(trimesh.Trimesh()).faces) == 0
    with pytest.raises(InputError, match="trimesh.Trimesh"):
        clean_mesh("mesh.glb")


# ---------------------------------------------------------------------------------------------- segments
def spheres(*centres: float, radius: float = 0.1) -> trimesh.Trimesh:
    return merged(
        *[coloured(trimesh.creation.icosphere(2, radius=radius).apply_translation([c, 0, 0])) for c in centres]
    )


def test_segments_cut_where_parts_appear_and_ignore_blips():
    one, two = spheres(0.0), spheres(-0.2, 0.2)
    starts = lambda clip, **kw: [s.start for s in topology_segments(clip, SegmentConfig(**kw))]  # noqa: E731
    assert starts([one, one, two, two, two]) == [0, 2]
    assert starts([one, one, two, one, one]) == [0]  # a one-frame flicker is noise
    assert starts([one, one, two, one, one], blip_frames=0) == [0, 2, 3]
    assert starts([one, two, spheres(-0.3, 0.0, 0.3), spheres(-0.3, 0.0, 0.3)]) == [0, 1, 2]  # quick real events
    touching = spheres(-0.105, 0.105)  # 0.01 apart: closer than the gap, one part
    assert topology_signature(touching).parts == 1 and topology_signature(touching, gap=0.0).parts == 2


def test_specks_do_not_cut_a_segment():
    body = spheres(0.0, radius=0.2)
    speck = merged(body, coloured(trimesh.creation.icosphere(1, radius=0.015).apply_translation([0.4, 0, 0])))
    clip = [body, body, speck, speck, body, body]  # a speck of 0.6 % of the body's area, for two frames
    assert [s.start for s in topology_segments(clip)] == [0]
    assert [s.start for s in topology_segments(clip, SegmentConfig(min_part=0.0))] == [0, 2, 4]


def test_euler_characteristic_cuts_manifold_frames_only():
    sphere, torus = coloured(trimesh.creation.icosphere(2, radius=0.2)), coloured(trimesh.creation.torus(0.2, 0.06))
    assert topology_signature(sphere).euler == 2 and topology_signature(torus).euler == 0
    assert [s.start for s in topology_segments([sphere, sphere, torus, torus])] == [0, 2]


def test_segments_match_the_procedural_worlds_split_events():
    """Cuts land exactly where the source meshes of a `split` scene change their number of bodies."""
    meshes = build_frames(sample_scene(seed=4, kind="split", frames=10))
    bodies = [len(m.split(only_watertight=False)) for m in meshes]
    events = [k for k in range(1, len(bodies)) if bodies[k] != bodies[k - 1]]
    assert events, bodies  # the scene does split
    segments = topology_segments(meshes)
    assert [s.start for s in segments[1:]] == events
    assert [s.signature.parts for s in segments] == [bodies[s.start] for s in segments]


# ---------------------------------------------------------------------------------------------- tracking
def stretched(frame: int, subdivisions: int) -> trimesh.Trimesh:
    """An ellipsoid that stretches along x and drifts along y with `frame`, meshed at its own resolution."""
    mesh = trimesh.creation.icosphere(subdivisions, radius=0.2)
    mesh.vertices = mesh.vertices * [1.0 + 0.08 * frame, 1.0, 1.0 - 0.03 * frame] + [0.0, 0.02 * frame, 0.0]
    return coloured(mesh)


def test_tracking_moves_one_vertex_set_through_a_segment():
    clip = [stretched(k, 2 if k % 2 == 0 else 3) for k in range(5)]  # per-frame meshes share no vertices
    (segment,) = track_clip(clip, topology_segments(clip), TrackingConfig(iterations=30, samples=500))
    assert segment.start == 0 and segment.stop == 5
    assert segment.positions.shape == (5, len(clip[0].vertices), 3)
    assert max(segment.cd) <= 1.0 / 32  # each tracked frame lies on that frame's own surface
    last = segment.mesh(4)
    assert np.array_equal(last.faces, clip[0].faces) and last.bounds[1, 0] > clip[0].bounds[1, 0] + 0.05


def bumpy(frame: int, subdivisions: int) -> trimesh.Trimesh:
    """A sphere with bumps of 3 % of its radius that change from frame to frame, as a generated frame's do."""
    mesh = trimesh.creation.icosphere(subdivisions, radius=0.25)
    k = np.random.default_rng(frame).normal(size=(2, 3)) * 6
    mesh.vertices = mesh.vertices * (1.0 + 0.12 * np.sin(mesh.vertices @ k[0]) * np.cos(mesh.vertices @ k[1]))[:, None]
    return coloured(mesh)


def test_refinement_follows_each_frames_own_bumps():
    clip = [bumpy(k, 3 if k % 2 == 0 else 4) for k in range(4)]
    tight = dict(iterations=30, samples=500, max_cd=0.004)  # the graph alone cannot follow bumps this closely
    assert track_segment(clip, TrackingConfig(refine=0, **tight)).stop == 2
    refined = track_segment(clip, TrackingConfig(**tight))
    assert refined.stop == 4 and max(refined.cd) < 0.003


def test_tracking_falls_back_where_the_fit_fails():
    box = coloured(trimesh.creation.box((0.1, 0.5, 0.1)).apply_translation([0.3, 0.0, 0.0]))
    clip = [stretched(0, 2), stretched(1, 2), box]
    tracked = track_clip(clip, [Segment(0, 3, topology_signature(clip[0]))], TrackingConfig(iterations=10, samples=500))
    assert [(t.start, t.stop) for t in tracked] == [(0, 2), (2, 3)]  # the box could not be reached: own mesh
    assert len(tracked[1].template.vertices) == len(box.vertices)


def test_deformation_graph_blends_its_nodes_as_embedded_deformation_does():
    """The blend-matrix form equals the textbook sum over each vertex's nodes: Σ_k w_k (R_k (v - g_k) + g_k + t_k)."""
    mesh = stretched(1, 2)
    graph = _DeformationGraph(np.asarray(mesh.vertices), np.asarray(mesh.vertex_normals), TrackingConfig(nodes=12))
    rng = np.random.default_rng(0)
    rotation, translation = _rodrigues(rng.normal(size=(12, 3)) * 0.3), rng.normal(size=(12, 3))
    assert np.allclose(rotation @ rotation.transpose(0, 2, 1), np.eye(3)) and np.allclose(np.linalg.det(rotation), 1)
    r, g, v = rotation, graph.nodes, graph.vertices
    index = np.argsort(-graph.blend, axis=1)[:, : TrackingConfig().neighbours]  # (V, k) each vertex's nodes
    weight = np.take_along_axis(graph.blend, index, axis=1)
    local = np.einsum("vkij,vkj->vki", r[index], v[:, None] - g[index]) + g[index] + translation[index]
    expected = (weight[..., None] * local).sum(1)
    assert np.allclose(graph.deform(rotation, translation), expected)
    rows = np.array([0, 5, 7])
    assert np.allclose(graph.deform(rotation, translation, rows), expected[rows])
