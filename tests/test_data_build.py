"""Dataset building and reading: format, equality with direct encoding, resumability, fault isolation, CLI."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helix4d.cli import app
from helix4d.data import KINDS, build_frames, layout, sample_scene
from helix4d.data.build import CRASH_MESSAGE, build_assets, build_synthetic, over_white, run_isolated
from helix4d.data.dataset import FrameDataset, SequenceDataset, clip, collate
from helix4d.errors import ConfigError, InputError
from helix4d.io.video import read_video
from helix4d.ovoxel import mesh_to_ovoxel

TINY = dict(frames=4, resolution=32, image_size=64, views=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One sequence of every synthetic kind, built in this process."""
    root = tmp_path_factory.mktemp("synth")
    summary = build_synthetic(root, len(KINDS), seed=3, workers=0, progress=False, **TINY)
    assert (summary.done, summary.skipped, summary.failed) == (len(KINDS), 0, 0)
    return root


def test_manifest_and_folders(dataset: Path) -> None:
    manifest = layout.read_manifest(dataset)
    assert manifest["settings"] == {**TINY, "fps": 8.0, "look": "canonical", "renderer": "raster"}
    assert sorted(s["kind"] for s in manifest["sequences"]) == sorted(KINDS)
    assert manifest["failures"] == []
    seq = dataset / manifest["sequences"][0]["path"]
    assert seq.parent.name == "shard-000"
    meta = json.loads((seq / "meta.json").read_text())
    assert meta["source"]["type"] == "synthetic" and meta["source"]["spec"]["kind"] == meta["kind"]
    assert len(meta["times"]) == 4 and len(meta["cameras"]) == 2 and len(meta["voxels"]) == 4
    assert sorted(p.name for p in (seq / "views").iterdir()) == ["v00", "v01"]
    assert sorted(p.name for p in (seq / "views" / "v01").iterdir()) == [f"{f:04d}.png" for f in range(4)]
    video = read_video(seq / "video.mp4")
    assert video.frames.shape == (4, 64, 64, 4)
    corner = video.frames[:, :4, :4, :3].astype(int)
    assert (corner > 245).all()  # white background
    assert not list(dataset.glob("shard-*/.*.tmp"))


def test_view0_is_the_front_conditioning_camera() -> None:
    front, side = layout.dataset_cameras(4)[:2]
    assert front.fov_deg == 40.0
    eye = np.asarray(front.eye)
    np.testing.assert_allclose(np.degrees(np.arcsin(eye[1] / np.linalg.norm(eye))), 15.0)
    assert eye[0] == pytest.approx(0.0) and eye[2] > 0  # azimuth 0: in front (+z)
    # the unit cube's bounding sphere just fits: sin(fov / 2) * distance = sqrt(3) / 2
    assert np.sin(np.radians(20.0)) * np.linalg.norm(eye) == pytest.approx(np.sqrt(3) / 2)
    assert np.asarray(side.eye)[0] > 0 and np.linalg.norm(side.eye) == pytest.approx(np.linalg.norm(eye))


def test_sequences_read_back_and_match_direct_encoding(dataset: Path) -> None:
    data = SequenceDataset(dataset, crop=False)
    assert len(data) == len(KINDS)
    for entry, sample in zip(data.sequences, data):
        assert sample["images"].shape == (4, 4, 64, 64) and sample["images"].dtype == torch.float32
        rgb, alpha = sample["images"][:, :3], sample["images"][:, 3:]
        assert 0 <= sample["images"].min() and sample["images"].max() <= 1
        assert (rgb <= alpha + 1e-6).all()  # RGB premultiplied (over black)
        assert (alpha.flatten(1).amax(1) > 0.99).all()  # the object is visible in every frame
        meta = json.loads((dataset / entry["path"] / "meta.json").read_text())
        expected = build_frames(sample_scene(meta["source"]["spec"]["seed"], sample["kind"], frames=4))
        assert len(sample["ovoxels"]) == 4
        for ov, mesh in zip(sample["ovoxels"], expected):
            direct = mesh_to_ovoxel(mesh, 32)
            assert len(ov) > 0
            for name in ("coords", "dual", "edges", "edge_sign", "split", "attrs"):
                np.testing.assert_array_equal(getattr(ov, name), getattr(direct, name), err_msg=name)
            assert ov.resolution == 32 and ov.oriented == direct.oriented


def test_crop_frames_images_like_inference(dataset: Path) -> None:
    raw, cropped = SequenceDataset(dataset, crop=False)[0], SequenceDataset(dataset)[0]

    def union_side(images: torch.Tensor) -> int:
        mask = (images[:, 3] > 0.5).any(0)  # (S, S)
        ys, xs = torch.nonzero(mask, as_tuple=True)
        return int(max(ys.max() - ys.min(), xs.max() - xs.min())) + 1

    # preprocess pads the clip's union box by 10 % on each side: the object spans ~1/1.2 of the image
    assert abs(union_side(cropped["images"]) - 64 / 1.2) <= 3
    assert union_side(raw["images"]) < union_side(cropped["images"])


def test_clips_frames_and_collate(dataset: Path) -> None:
    clips = SequenceDataset(dataset, clip_frames=2, crop=False)
    a, b = clips[1], clips[1]
    assert a["images"].shape[0] == 2 and len(a["ovoxels"]) == 2 and a["start"] == b["start"]
    assert 0 <= a["start"] <= 2
    full = SequenceDataset(dataset, crop=False)[1]
    part = clip(full, a["start"], 2)
    torch.testing.assert_close(part["images"], a["images"])
    np.testing.assert_array_equal(part["ovoxels"][1].coords, a["ovoxels"][1].coords)
    assert part["times"][0] == full["times"][a["start"]]
    with pytest.raises(InputError):
        clip(full, 3, 2)

    frames = FrameDataset(dataset, crop=False)
    assert len(frames) == 4 * len(KINDS)
    item = frames[5]  # sequence 1, frame 1
    assert item["id"] == full["id"] and item["frame"] == 1
    torch.testing.assert_close(item["image"], full["images"][1])
    np.testing.assert_array_equal(item["ovoxel"].coords, full["ovoxels"][1].coords)

    batch = collate([clips[0], clips[1]])
    assert batch["images"].shape == (2, 2, 4, 64, 64)
    assert isinstance(batch["ovoxels"], list) and len(batch["ovoxels"]) == 2


def test_not_a_dataset(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a helix4d dataset"):
        SequenceDataset(tmp_path)
    (tmp_path / "manifest.json").write_text('{"format": "something-else"}')
    with pytest.raises(InputError, match="not a helix4d dataset"):
        FrameDataset(tmp_path)


def test_ovoxel_packing_round_trip(dataset: Path) -> None:
    seq = next(dataset.glob("shard-000/*"))
    ovs = layout.load_ovoxels(seq / "ovoxels.npz")
    packed = layout.pack_ovoxels(ovs)
    assert packed["offsets"].tolist() == np.concatenate([[0], np.cumsum([len(o) for o in ovs])]).tolist()
    again = layout.unpack_ovoxels(packed, range(2, 4))
    np.testing.assert_array_equal(again[1].attrs, ovs[3].attrs)
    assert layout.shard_name(999) == "shard-000" and layout.shard_name(1000) == "shard-001"


def test_rerun_skips_finished_and_resumes_interrupted(tmp_path: Path) -> None:
    kinds = list(KINDS[:2])
    first = build_synthetic(tmp_path, 2, kinds=kinds, workers=0, progress=False, **TINY)
    assert first.done == 2
    metas = sorted(tmp_path.glob("shard-000/*/meta.json"))
    stamps = {p: p.stat().st_mtime_ns for p in metas + sorted(tmp_path.glob("shard-000/*/ovoxels.npz"))}

    second = build_synthetic(tmp_path, 2, kinds=kinds, workers=0, progress=False, **TINY)
    assert (second.done, second.skipped, second.failed) == (0, 2, 0)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # nothing rebuilt

    # an interrupted run: one sequence half-written (temp folder), the manifest not yet written
    victim = metas[1].parent
    shutil.rmtree(victim)
    (tmp_path / "manifest.json").unlink()
    layout.temp_dir(victim).mkdir()
    (layout.temp_dir(victim) / "junk").write_text("half a sequence")
    third = build_synthetic(tmp_path, 2, kinds=kinds, workers=0, progress=False, **TINY)
    assert (third.done, third.skipped) == (1, 1)
    assert metas[0].stat().st_mtime_ns == stamps[metas[0]]
    assert not layout.temp_dir(victim).exists() and layout.is_finished(victim)
    assert len(layout.read_manifest(tmp_path)["sequences"]) == 2

    for _ in range(2):  # other settings are refused, with or without a manifest (interrupted run)
        with pytest.raises(ConfigError, match="built with"):
            build_synthetic(tmp_path, 2, kinds=kinds, workers=0, progress=False, **{**TINY, "resolution": 16})
        (tmp_path / "manifest.json").unlink(missing_ok=True)


def test_a_bad_item_is_a_failure_not_the_end(tmp_path: Path) -> None:
    summary = build_synthetic(tmp_path, 2, kinds=[KINDS[0], "no-such-kind"], workers=0, progress=False, **TINY)
    assert (summary.done, summary.failed) == (1, 1)
    manifest = layout.read_manifest(tmp_path)
    assert len(manifest["sequences"]) == 1
    assert manifest["failures"][0]["item"] == "no-such-kind-000001"
    assert "unknown scene kind" in manifest["failures"][0]["error"]


def crash_on_one(item: int) -> int:
    """Worker task for the crash test: item 1 kills its process the way a native crash would."""
    if item == 1:
        os._exit(1)
    return item * 10


def test_a_dying_worker_fails_only_its_item() -> None:
    results = {}
    run_isolated(crash_on_one, [0, 1, 2, 3], 2, lambda item, ok, value: results.setdefault(item, (ok, value)))
    assert results == {0: (True, 0), 1: (False, CRASH_MESSAGE), 2: (True, 20), 3: (True, 30)}


def test_asset_build_isolates_corrupt_and_missing_files(tmp_path: Path) -> None:
    pytest.importorskip("bpy")
    from test_blender_import import write_morph_cube

    good = write_morph_cube(tmp_path / "cube.gltf")
    corrupt = tmp_path / "corrupt.glb"
    corrupt.write_bytes(np.random.default_rng(1).bytes(4096))
    summary = build_assets(
        [corrupt, tmp_path / "missing.glb", good], tmp_path / "ds", workers=0, progress=False, **TINY
    )
    assert (summary.done, summary.failed) == (1, 2)
    failed = {Path(f["item"]).name: f["error"] for f in layout.read_manifest(tmp_path / "ds")["failures"]}
    assert set(failed) == {"corrupt.glb", "missing.glb"}
    assert "not found" in failed["missing.glb"] and "Blender could not import" in failed["corrupt.glb"]
    sample = SequenceDataset(tmp_path / "ds", crop=False)[0]
    assert sample["kind"] == "asset" and all(len(ov) > 0 for ov in sample["ovoxels"])
    # the cube moves +x: the dual vertices' mean x grows frame by frame
    xs = [ov.positions()[:, 0].mean() for ov in sample["ovoxels"]]
    assert all(b > a + 0.05 for a, b in zip(xs, xs[1:]))


def test_cli_synth_and_all_failed_exit_code(tmp_path: Path) -> None:
    runner = CliRunner()
    args = ["--frames", "2", "--resolution", "16", "--image-size", "32", "--views", "1", "--workers", "0"]
    result = runner.invoke(
        app, ["data", "synth", "--count", "1", "--out", str(tmp_path / "a"), "--kinds", KINDS[0], *args]
    )
    assert result.exit_code == 0, result.output
    assert "1 done, 0 skipped, 0 failed" in result.output
    result = runner.invoke(
        app, ["data", "synth", "--count", "1", "--out", str(tmp_path / "b"), "--kinds", "no-such-kind", *args]
    )
    assert result.exit_code == 2 and "0 done, 0 skipped, 1 failed" in result.output


def test_over_white() -> None:
    rgba = np.array([[[255, 0, 0, 255], [0, 0, 0, 0], [0, 0, 255, 128]]], np.uint8)
    np.testing.assert_array_equal(over_white(rgba), [[[255, 0, 0], [255, 255, 255], [127, 127, 255]]])
