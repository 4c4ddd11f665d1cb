"""The procedural 4D world: every kind builds, stays in the unit cube, is deterministic and shows its phenomenon."""

import json

import numpy as np
import pytest
import trimesh

from helix4d.data import KINDS, SceneSpec, build_frames, sample_scene
from helix4d.errors import InputError


def components(mesh: trimesh.Trimesh) -> int:
    return len(mesh.split(only_watertight=False))


def spec_with(kind: str, **wanted) -> SceneSpec:
    """The first seeded scene of `kind` whose params match `wanted` (e.g. a variant)."""
    for seed in range(200):
        spec = sample_scene(seed, kind, frames=4)
        if all(spec.params.get(k) == v for k, v in wanted.items()):
            return spec
    raise AssertionError(f"no {kind} scene with {wanted}")


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_frames_in_unit_cube_with_pbr(kind):
    frames = build_frames(sample_scene(KINDS.index(kind), kind, frames=4))
    assert len(frames) == 4
    lo = np.min([m.bounds[0] for m in frames], axis=0)
    hi = np.max([m.bounds[1] for m in frames], axis=0)
    assert lo.min() >= -0.5 and hi.max() <= 0.5
    assert np.max(hi - lo) == pytest.approx(0.9)  # one normalisation for the whole sequence, with a margin
    for mesh in frames:
        count = len(mesh.vertices)
        assert 0 < len(mesh.faces) <= 5000
        assert np.isfinite(mesh.vertices).all()
        assert mesh.visual.vertex_colors.shape == (count, 4) and mesh.visual.vertex_colors.dtype == np.uint8
        for name in ("metallic", "roughness"):
            values = mesh.vertex_attributes[name]
            assert values.dtype == np.float32 and values.shape == (count,)
            assert values.min() >= 0.0 and values.max() <= 1.0


def test_spec_round_trips_through_json_and_rebuilds_identically():
    for kind in ("split", "articulated", "grow"):
        spec = sample_scene(11, kind, frames=4)
        again = SceneSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
        assert again == spec and sample_scene(11, kind, frames=4) == spec
        for a, b in zip(build_frames(spec), build_frames(again)):
            assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)
            assert np.array_equal(a.visual.vertex_colors, b.visual.vertex_colors)
            assert np.array_equal(a.vertex_attributes["roughness"], b.vertex_attributes["roughness"])
    assert sample_scene(1, "rigid").to_dict() != sample_scene(2, "rigid").to_dict()


def test_kind_none_is_picked_by_seed_and_covers_all_kinds():
    kinds = [sample_scene(seed).kind for seed in range(60)]
    assert set(kinds) == set(KINDS)
    assert [sample_scene(seed).kind for seed in range(60)] == kinds


def test_bad_input_raises_input_error():
    with pytest.raises(InputError, match="choose one of"):
        sample_scene(0, "explode")
    with pytest.raises(InputError, match="frames"):
        sample_scene(0, "rigid", frames=0)
    with pytest.raises(InputError, match="missing"):
        SceneSpec.from_dict({"kind": "rigid", "seed": 0})


def test_split_goes_from_one_body_to_several_and_merge_back():
    split = [components(m) for m in build_frames(sample_scene(3, "split", frames=4))]
    merge = [components(m) for m in build_frames(sample_scene(3, "merge", frames=4))]
    assert split[0] == 1 and split[-1] >= 2
    assert merge[0] >= 2 and merge[-1] == 1


def ray_hits(mesh: trimesh.Trimesh, origin: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances along the ray and face ids of every triangle it crosses (Moller-Trumbore, all hits)."""
    v0, v1, v2 = (mesh.vertices[mesh.faces[:, k]] for k in range(3))
    e1, e2 = v1 - v0, v2 - v0
    p = np.cross(direction, e2)
    det = np.einsum("fc,fc->f", e1, p)
    ok = np.abs(det) > 1e-12
    inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
    t_vec = origin - v0
    u = np.einsum("fc,fc->f", t_vec, p) * inv
    q = np.cross(t_vec, e1)
    v = (q @ direction) * inv
    t = np.einsum("fc,fc->f", e2, q) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    return t[hit], np.nonzero(hit)[0]


def test_container_ray_through_centre_hits_several_surfaces_and_glass_is_transparent():
    spec = sample_scene(0, "container", frames=4)
    for mesh in build_frames(spec):
        dist, faces = ray_hits(mesh, np.array([0.013, 0.011, 2.0]), np.array([0.0, 0.0, -1.0]))
        assert len(dist) >= 3  # outer wall, inner wall, (object), inner wall, outer wall
        first = faces[np.argmin(dist)]
        assert mesh.visual.vertex_colors[mesh.faces[first], 3].max() < 255  # the outermost surface is see-through
    assert spec.params["glass"]["alpha"] < 1.0


def test_sheet_is_open_single_surface():
    for variant in ("flag", "banner"):
        mesh = build_frames(spec_with("sheet", variant=variant, pole=False))[0]
        boundary = trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)
        assert len(boundary) > 0 and components(mesh) == 1
        assert not mesh.is_watertight


def _pairwise(points: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points[:, None] - points[None], axis=-1)


def test_rigid_keeps_shape_and_deform_does_not():
    specs = (sample_scene(seed, "rigid", frames=4) for seed in range(50))
    spec = next(s for s in specs if len(s.params["bodies"]) == 1)
    frames = build_frames(spec)
    picks = np.linspace(0, len(frames[0].vertices) - 1, 40).astype(int)
    a, b = frames[0].vertices[picks], frames[-1].vertices[picks]
    assert np.abs(a - b).max() > 0.05  # it moves ...
    assert np.allclose(_pairwise(a), _pairwise(b), atol=1e-9)  # ... without changing shape
    deform = build_frames(spec_with("deform", variant="bend", schedule="ramp"))
    picks = np.linspace(0, len(deform[0].vertices) - 1, 40).astype(int)
    change = np.abs(_pairwise(deform[0].vertices[picks]) - _pairwise(deform[-1].vertices[picks])).max()
    assert change > 0.05


def test_grow_and_melt_change_size_over_time():
    def extent(mesh: trimesh.Trimesh) -> np.ndarray:
        body = mesh.vertices[mesh.vertices[:, 1] > mesh.bounds[0, 1] + 0.05]  # above the floor disc
        return body.max(axis=0) - body.min(axis=0)

    for variant in ("plant", "inflate"):
        frames = build_frames(spec_with("grow", variant=variant))
        assert extent(frames[-1])[1] > 1.5 * extent(frames[0])[1]  # taller at the end
    frames = build_frames(spec_with("grow", variant="melt"))
    assert extent(frames[-1])[1] < 0.7 * extent(frames[0])[1]  # flatter at the end


def test_articulated_panel_moves_while_body_stays():
    for variant in ("lid", "door"):
        spec = spec_with("articulated", variant=variant, schedule="open")
        first, last = build_frames(spec)[0], build_frames(spec)[-1]
        moved = np.linalg.norm(first.vertices - last.vertices, axis=1)
        assert (moved < 1e-9).mean() > 0.5 and moved.max() > 0.1


def test_container_inner_object_visible_through_glass_in_render():
    from helix4d.render import Renderer, front_camera

    mesh = build_frames(sample_scene(0, "container", frames=4))[1]
    opaque = mesh.visual.vertex_colors[mesh.faces][:, :, 3].min(axis=1) == 255  # (F,) the inner object
    glass_only = mesh.submesh([np.nonzero(~opaque)[0]], append=True)
    renderer = Renderer(96, 96)
    try:
        full = renderer.render(mesh, front_camera()).astype(int)
        glass = renderer.render(glass_only, front_camera()).astype(int)
    finally:
        renderer.release()
    differs = np.abs(full[..., :3] - glass[..., :3]).max(axis=-1) > 12
    assert differs.sum() >= 10
    seen_through = (glass[..., 3] > 0) & (glass[..., 3] < 255)
    assert seen_through[differs].mean() > 0.9  # those pixels are covered by the transparent container


# The container's inner wall faces into the cavity on purpose; a sheet is open.
@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("container", "sheet")])
def test_closed_parts_face_outwards(kind):
    mesh = build_frames(sample_scene(KINDS.index(kind), kind, frames=2))[0]
    closed = [part for part in mesh.split(only_watertight=False) if part.is_watertight]
    assert closed and all(part.volume > 0 for part in closed)
