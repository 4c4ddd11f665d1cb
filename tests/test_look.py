"""Domain randomisation (helix4d.data.look): the canonical look is the fixed renderer of old, random looks are
drawn per sequence from its seed, recorded, rebuilt exactly, and the ground truth carries the colours seen."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from helix4d.data import build_frames, layout, sample_scene
from helix4d.data.build import build_synthetic
from helix4d.data.look import Look, Recolour, Sensor, look_for
from helix4d.errors import InputError
from helix4d.eval.budget import ground_truth_meshes

TINY = dict(frames=3, resolution=32, image_size=48, views=2)


def test_canonical_look_is_the_dataset_camera_rig_and_changes_nothing() -> None:
    assert look_for("canonical", 5) == Look()
    for mine, rig in zip(Look().cameras(4), layout.dataset_cameras(4)):
        assert mine == rig
    meshes = build_frames(sample_scene(1, "rigid", frames=2))
    assert Look().recolour.apply(meshes) is meshes
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    assert Sensor().apply(image, np.random.default_rng(0)) is image


def test_random_looks_are_seeded_varied_and_json_round_trip() -> None:
    looks = [look_for("random", seed) for seed in range(20)]
    assert looks[3] == look_for("random", 3)  # same seed, same look
    assert len({look.fov_deg for look in looks}) == 20 and len({look.lighting for look in looks}) == 20
    assert all(25 <= look.fov_deg <= 60 and -5 <= look.elevation_deg <= 45 for look in looks)
    for look in looks:
        assert Look.from_dict(json.loads(json.dumps(look.to_dict()))) == look
    with pytest.raises(InputError, match="unknown look"):
        look_for("studio", 0)
    with pytest.raises(InputError, match="not a valid look"):
        Look.from_dict({"fov_deg": 30.0})


def test_mixed_looks_are_canonical_or_the_random_draw_of_the_same_seed() -> None:
    looks = {seed: look_for("mixed", seed) for seed in range(200)}
    canonical = [seed for seed, look in looks.items() if look == Look()]
    assert 70 <= len(canonical) <= 130  # about half
    assert all(looks[seed] == look_for("random", seed) for seed in looks if seed not in canonical)


def test_random_camera_keeps_the_unit_cube_in_view_and_rolls_about_its_axis() -> None:
    look = Look(fov_deg=30.0, elevation_deg=40.0, azimuth_deg=200.0, distance_scale=1.2, roll_deg=8.0)
    front = look.cameras(3)[0]
    eye = np.asarray(front.eye)
    assert np.linalg.norm(eye) * np.sin(np.radians(15.0)) == pytest.approx(1.2 * np.sqrt(3) / 2)
    assert np.degrees(np.arcsin(eye[1] / np.linalg.norm(eye))) == pytest.approx(40.0)
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    pixels = front.project(corners, 100, 100)
    assert (pixels > 0).all() and (pixels < 100).all()
    up = np.asarray(front.up)
    assert abs(up @ (eye / np.linalg.norm(eye))) < 1e-9  # still perpendicular to the viewing axis
    unrolled = Look(fov_deg=30.0, elevation_deg=40.0, azimuth_deg=200.0, distance_scale=1.2).cameras(1)[0]
    level = np.asarray(unrolled.rotation()[1])  # the unrolled camera's up axis
    assert np.degrees(np.arccos(np.clip(level @ front.rotation()[1], -1, 1))) == pytest.approx(8.0, abs=1e-6)


def test_recolour_remaps_colours_keeps_opaque_opaque_and_lays_a_moving_pattern() -> None:
    meshes = build_frames(sample_scene(2, "rigid", frames=3))
    recolour = Recolour(
        hue_shift=0.5,
        alpha_scale=0.5,
        pattern="stripes",
        pattern_cells=4.0,
        pattern_colour=(1.0, 1.0, 1.0),
        metallic_add=0.3,
    )
    out = recolour.apply(meshes)
    before, after = meshes[0].visual.vertex_colors, out[0].visual.vertex_colors
    assert (after[:, 3] == before[:, 3]).all()  # rigid kind: opaque, and alpha_scale only touches see-through
    white = (after[:, :3] == 255).all(1)
    assert 0.1 < white.mean() < 0.9  # the stripes cover part of the surface
    assert not np.array_equal(after[~white, :3], before[~white, :3])  # hue turned where no stripe is
    assert (out[0].vertex_attributes["metallic"] >= 0.3 - 1e-6).all()
    # the pattern is laid on frame 0's vertices, so it moves with a rigid object
    assert np.array_equal(white, (out[2].visual.vertex_colors[:, :3] == 255).all(1))
    glass = build_frames(sample_scene(4, "transparent", frames=1))
    see_through = glass[0].visual.vertex_colors[:, 3] < 255
    scaled = Recolour(alpha_scale=0.5).apply(glass)[0].visual.vertex_colors[:, 3]
    assert see_through.any() and (scaled[see_through] < glass[0].visual.vertex_colors[see_through, 3]).all()


def test_sensor_degrades_rgb_only() -> None:
    image = np.zeros((32, 32, 4), np.uint8)
    image[8:24, 8:24] = (200, 40, 40, 255)
    out = Sensor(blur_sigma=1.0, noise_std=0.02, jpeg_quality=40).apply(image, np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out[..., 3], image[..., 3])
    assert 1.0 < np.abs(out[..., :3].astype(int) - image[..., :3]).mean() < 30.0


@pytest.fixture(scope="module")
def random_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("looks")
    build_synthetic(root, 2, seed=11, workers=0, progress=False, kinds=["rigid", "transparent"], look="random", **TINY)
    return root


def test_random_look_is_recorded_rebuilt_exactly_and_in_the_ground_truth(random_dataset: Path, tmp_path: Path) -> None:
    manifest = layout.read_manifest(random_dataset)
    assert manifest["settings"]["look"] == "random"
    again = tmp_path / "again"
    build_synthetic(again, 2, seed=11, workers=0, progress=False, kinds=["rigid", "transparent"], look="random", **TINY)
    canonical = tmp_path / "canonical"
    build_synthetic(canonical, 2, seed=11, workers=0, progress=False, kinds=["rigid", "transparent"], **TINY)
    for entry in manifest["sequences"]:
        seq = random_dataset / entry["path"]
        meta = layout.read_json(seq / layout.META)
        look = Look.from_dict(meta["look"])
        assert look == look_for("random", meta["source"]["spec"]["seed"])
        assert meta["cameras"] == [layout.camera_to_dict(c) for c in look.cameras(2)]
        png = layout.view_png(seq, 0, 1)
        assert png.read_bytes() == layout.view_png(again / entry["path"], 0, 1).read_bytes()
        assert png.read_bytes() != layout.view_png(canonical / entry["path"], 0, 1).read_bytes()
        ovoxels = layout.load_ovoxels(seq / layout.OVOXELS)
        meshes, _ = ground_truth_meshes(seq, ovoxels)
        spec_meshes = build_frames(sample_scene(meta["source"]["spec"]["seed"], entry["kind"], frames=3))
        assert np.array_equal(meshes[0].visual.vertex_colors, look.recolour.apply(spec_meshes)[0].visual.vertex_colors)
    with pytest.raises(Exception, match="was built with"):  # a canonical rerun into a random dataset is refused
        build_synthetic(random_dataset, 2, seed=11, workers=0, progress=False, kinds=["rigid"], **TINY)


def test_unseen_looks_lie_outside_the_training_ranges() -> None:
    for seed in range(10):
        look = look_for("unseen", seed)
        assert not 25 <= look.fov_deg <= 60 and look.elevation_deg > 45 and abs(look.roll_deg) > 8
        assert look.lighting.key_dir[2] < 0  # the key light comes from behind the object


def test_bad_look_or_renderer_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from helix4d.cli import main

    for flag, value in (("--look", "studio"), ("--renderer", "povray")):
        out = tmp_path / value
        monkeypatch.setattr("sys.argv", ["helix4d", "data", "synth", "--out", str(out), "--count", "1", flag, value])
        with pytest.raises(SystemExit) as exit_info:
            main()
        err = capsys.readouterr().err
        assert (
            exit_info.value.code == 2 and value in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
        )
        assert not out.exists()


def test_cycles_renders_the_same_silhouette_as_the_raster_renderer(tmp_path: Path) -> None:
    pytest.importorskip("bpy")
    from helix4d.data.cycles import render_cycles
    from helix4d.render import Renderer

    meshes = build_frames(sample_scene(3, "rigid", frames=1))
    cameras = Look().cameras(2)
    traced = render_cycles(meshes, cameras, Look().lighting, 48, samples=4)
    assert traced.shape == (1, 2, 48, 48, 4) and traced.dtype == np.uint8
    raster = Renderer(48, 48).render_views(meshes[0], cameras)
    for view in range(2):
        a, b = traced[0, view, ..., 3] > 127, raster[view, ..., 3] > 127
        assert (a & b).sum() / (a | b).sum() > 0.9
        lit = traced[0, view][a][:, :3].astype(float).mean()
        assert 20 < lit < 250  # lit, not black or blown out
