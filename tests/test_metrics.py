"""Evaluation metrics with known answers: zero for identical or merely re-posed sequences, the analytic Chamfer
distance of concentric spheres, zero jitter for a static sequence, CD-4D's sensitivity to frame order, image
metrics of identical images, and Fréchet distances of shifted Gaussians."""

import json

import numpy as np
import pytest
import torch
import trimesh
from typer.testing import CliRunner

from helix4d.cli import app
from helix4d.errors import InputError
from helix4d.eval import (
    ActionBenchProtocol,
    AffineMap,
    GradientICPConfig,
    OursProtocol,
    chamfer_distance,
    evaluate_sequence,
    fit_sequence_alignment,
    match_frames,
    normalisation,
    sample_sequence,
    space_time_chamfer,
    temporal_jitter,
)
from helix4d.eval.align import actionbench_rotations, axis_rotations, random_rotations
from helix4d.eval.evaluate import find_sequences, load_sequence_meshes, pair_sequences
from helix4d.eval.features import clip_similarity, frechet_distance, fvd, load_i3d_extractor
from helix4d.eval.images import image_metrics, psnr, silhouette_iou, ssim
from helix4d.eval.metrics import consecutive_chamfer
from helix4d.eval.protocols import actionbench_chamfer

FAST = OursProtocol(points=1500)


def sphere(radius: float = 0.3, subdivisions: int = 3) -> trimesh.Trimesh:
    return trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)


def growing_sequence(frames: int = 4) -> list[trimesh.Trimesh]:
    """Frame 0 is a plain sphere (every rotation fits it); later frames grow an arm and a fin off it."""
    out = [sphere()]
    for f in range(1, frames):
        arm = trimesh.creation.box(extents=(0.1, 0.1 + 0.4 * f / frames, 0.15))
        arm.apply_translation((0.3, 0.1 * f, 0.05))
        fin = trimesh.creation.cylinder(radius=0.05, height=0.4)
        fin.apply_translation((-0.1, 0.0, 0.3 + 0.02 * f))
        out.append(trimesh.util.concatenate([sphere(), arm, fin]))
    return out


def transformed(meshes: list[trimesh.Trimesh], m: AffineMap) -> list[trimesh.Trimesh]:
    return [trimesh.Trimesh(m(np.asarray(x.vertices)), x.faces, process=False) for x in meshes]


# ------------------------------------------------------------------------------------------------ geometry


def test_identical_sequences_score_zero() -> None:
    gt = growing_sequence(3)
    scores = evaluate_sequence(gt, gt, FAST)
    assert scores.protocol == "ours"
    m = scores.metrics
    assert m["cd_3d"] < 1e-9 and m["cd_4d"] < 1e-9
    assert m["f_score@0.01"] == 1.0 and m["f_score@0.02"] == 1.0
    assert m["normal_consistency"] == pytest.approx(1.0)
    assert m["jitter_abs"] < 1e-9 and m["jitter_ratio"] == pytest.approx(1.0)


def test_rotated_shifted_scaled_copy_aligns_to_zero_despite_symmetric_first_frame() -> None:
    gt = growing_sequence(4)
    pose = AffineMap.similarity(random_rotations(1, seed=7)[0], 2.5, np.array([0.4, -1.0, 0.3]))
    pred = transformed(gt, pose)
    unaligned = evaluate_sequence(pred, gt, OursProtocol(points=1500, align=False)).metrics["cd_3d"]
    scores = evaluate_sequence(pred, gt, FAST)
    assert unaligned > 0.5
    assert scores.metrics["cd_3d"] < 1e-6 and scores.metrics["cd_4d"] < 1e-6
    assert scores.metrics["f_score@0.01"] == 1.0
    # the returned map takes the prediction back onto the ground truth in the ground truth's own units
    back = scores.pred_to_gt(np.asarray(pred[2].vertices))
    np.testing.assert_allclose(back, gt[2].vertices, atol=1e-6)


def test_first_frame_alone_cannot_fix_the_rotation_but_all_frames_can() -> None:
    gt = growing_sequence(4)
    pred = transformed(gt, AffineMap.similarity(random_rotations(1, seed=3)[0], 1.0, np.zeros(3)))
    # different sampling seeds: no exact point correspondences to lock onto, like a real prediction
    p, g = sample_sequence(pred, 1500, seed=1).points, sample_sequence(gt, 1500, seed=0).points
    norm_g = normalisation(g)
    p, g = normalisation(p)(p), norm_g(g)
    first_only, _ = fit_sequence_alignment(p[:1], g[:1])
    everything, _ = fit_sequence_alignment(p, g)
    floor = chamfer_distance(norm_g(sample_sequence(gt, 1500, seed=1).points[-1]), g[-1])  # sampling noise
    assert chamfer_distance(everything(p[-1]), g[-1]) < 1.1 * floor
    assert chamfer_distance(first_only(p[-1]), g[-1]) > 2 * floor  # a sphere fits any rotation


def test_concentric_spheres_without_alignment_give_analytic_chamfer() -> None:
    r, big_r = 0.3, 0.4
    scores = evaluate_sequence(
        [sphere(r, 5)], [sphere(big_r, 5)], OursProtocol(points=6000, align=False, f_score_taus=(0.01,))
    )
    assert scores.metrics["cd_3d"] == pytest.approx(2 * (big_r - r), rel=0.02)
    assert scores.metrics["f_score@0.01"] == 0.0  # every point is 0.1 away from the other surface
    assert scores.metrics["normal_consistency"] > 0.99  # radial normals on both


def test_static_sequence_has_zero_jitter() -> None:
    p = sample_sequence([sphere()] * 4, 1000).points  # the same seed every frame: identical samples
    assert np.all(consecutive_chamfer(p) == 0.0)
    assert temporal_jitter(p, p)[0] == 0.0
    moving = p + np.arange(4)[:, None, None] * 0.1
    jitter_abs, ratio = temporal_jitter(p, moving)
    assert ratio == 0.0  # a frozen prediction of a moving object: none of its motion
    assert jitter_abs == pytest.approx(consecutive_chamfer(moving).mean())


def _moving_sphere(frames: int = 6, step: float = 0.5) -> np.ndarray:
    points = sample_sequence([sphere(0.2)], 800).points[0]
    return np.stack([points + np.array([step * f, 0.0, 0.0]) for f in range(frames)])  # (F, N, 3)


def test_cd4d_charges_frame_order_that_a_pooled_chamfer_ignores() -> None:
    gt = _moving_sphere()
    reversed_pred = gt[::-1]
    swapped = gt[[0, 2, 1, 3, 4, 5]]
    assert space_time_chamfer(gt, gt, 0.1) == 0.0
    assert space_time_chamfer(reversed_pred, gt, 0.0) == 0.0  # pooled over time: order is invisible
    cd4_swap = space_time_chamfer(swapped, gt, 0.1)
    cd4_rev = space_time_chamfer(reversed_pred, gt, 0.1)
    assert cd4_swap > 0.05  # two frames one step off: ~0.1 on a third of the points, both ways
    assert cd4_rev > 2 * cd4_swap  # displaced further in time, charged more
    assert cd4_rev <= match_frames(reversed_pred, gt).chamfer().mean()  # never more than per-frame Chamfer


def test_cd3d_ignores_joint_frame_order_while_cd4d_sees_it() -> None:
    gt = _moving_sphere()
    lagged = gt[[0, 0, 1, 2, 3, 4]]  # plays one frame late: right shapes, slightly wrong times
    scramble = [0, 3, 1, 4, 2, 5]  # the same shuffle of both: neighbouring frames are no longer neighbours
    cd3 = match_frames(lagged, gt).chamfer().mean()
    cd3_scrambled = match_frames(lagged[scramble], gt[scramble]).chamfer().mean()
    assert cd3_scrambled == pytest.approx(cd3, rel=1e-12)
    cd4 = space_time_chamfer(lagged, gt, 0.1)
    assert space_time_chamfer(lagged[scramble], gt[scramble], 0.1) > 1.5 * cd4
    assert cd4 < cd3  # a one-frame lag costs at most one frame step, not the spatial gap


def test_frame_count_mismatch_is_a_clear_error() -> None:
    """More predicted frames than ground truth is a mistake; fewer are missing frames, scored (see below)."""
    with pytest.raises(InputError, match="frames"):
        evaluate_sequence([sphere()] * 3, [sphere()] * 2, FAST)


def test_empty_frame_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="frame 1"):
        sample_sequence([sphere(), trimesh.Trimesh()], 100)


@pytest.mark.parametrize(
    "protocol", [OursProtocol(points=500, align=False), ActionBenchProtocol(samples=500, align=False)]
)
def test_empty_and_missing_frames_score_the_worst_error(protocol) -> None:
    """An empty frame and a missing last frame each cost EMPTY_FRAME_CD and F-score 0; the others score as usual."""
    from helix4d.eval.protocols import EMPTY_FRAME_CD

    gt = [sphere()] * 4
    whole = evaluate_sequence(gt, gt, protocol).metrics
    holed = evaluate_sequence([sphere(), trimesh.Trimesh(), sphere()], gt, protocol).metrics
    assert whole["empty_frames"] == 0 and holed["empty_frames"] == 2
    assert holed["cd_3d"] == pytest.approx(0.5 * whole["cd_3d"] + 0.5 * EMPTY_FRAME_CD)
    if isinstance(protocol, OursProtocol):
        assert holed["f_score@0.02"] == pytest.approx(0.5 * whole["f_score@0.02"])
    nothing = evaluate_sequence([trimesh.Trimesh()] * 4, gt, protocol).metrics
    assert nothing["cd_3d"] == EMPTY_FRAME_CD and nothing["empty_frames"] == 4


def test_actionbench_protocol_undoes_axis_rotation_and_per_axis_scale() -> None:
    gt = growing_sequence(2)
    pose = AffineMap(axis_rotations()[7] @ np.diag([1.2, 0.9, 1.0]), np.array([0.3, -0.2, 0.1]))
    pred = transformed(gt, pose)
    fast = dict(samples=800, icp_points=300, chamfer_points=300, icp=GradientICPConfig(iterations=40))
    aligned = evaluate_sequence(pred, gt, ActionBenchProtocol(**fast))
    raw = evaluate_sequence(pred, gt, ActionBenchProtocol(align=False, **fast))
    assert aligned.protocol == "actionbench" and set(aligned.metrics) == {"cd_3d", "cd_4d", "empty_frames"}
    resampled = [sample_sequence(gt, 800, seed=s).points[1] for s in (1, 2)]
    floor = actionbench_chamfer(*resampled)  # what sampling noise alone costs
    assert raw.metrics["cd_3d"] > 4 * floor
    assert aligned.metrics["cd_3d"] < 1.5 * floor
    # (its cd_4d reuses frame 0's fit, and frame 0 here is a sphere: that is the weakness our protocol avoids)


def test_actionbench_starts_are_the_reference_list() -> None:
    starts = actionbench_rotations()
    distinct = {tuple(m.astype(int).ravel()) for m in starts}
    assert len(starts) == 24 and len(distinct) == 22  # the reference list repeats two rotations
    assert distinct < {tuple(m.astype(int).ravel()) for m in axis_rotations()}


def test_actionbench_neighbours_on_cpu_trees_and_accelerator_cdist_agree() -> None:
    from scipy.spatial import cKDTree

    from helix4d.eval.align import _nearest_torch

    rng = np.random.default_rng(3)
    moved, gt = torch.from_numpy(rng.random((3, 500, 3))).float(), torch.from_numpy(rng.random((400, 3))).float()
    trees = _nearest_torch(moved, gt, cKDTree(gt.numpy().astype(np.float64)))
    dense = _nearest_torch(moved, gt, None, chunk=128)
    for a, b in zip(trees, dense):
        assert torch.equal(a, b.cpu())


def test_actionbench_chamfer_with_all_points_is_the_chamfer_distance() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 3)), rng.normal(size=(200, 3))
    assert actionbench_chamfer(a, b, queries=10_000) == pytest.approx(chamfer_distance(a, b))


# ------------------------------------------------------------------------------------------------ images


def test_identical_images_score_perfectly() -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(2, 32, 32, 4), dtype=np.uint8)
    scores = image_metrics(frames, frames.copy())
    assert scores == {"iou": 1.0, "psnr": float("inf"), "ssim": pytest.approx(1.0)}


def test_image_metrics_known_values() -> None:
    a = np.full((16, 16, 3), 100, np.uint8)
    assert psnr(a + 10, a) == pytest.approx(20 * np.log10(255 / 10))
    mask = np.zeros((4, 4), bool)
    mask[:2] = True
    assert silhouette_iou(mask, np.ones((4, 4), bool)) == 0.5
    rng = np.random.default_rng(1)
    noisy = np.clip(a + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    assert ssim(noisy, a) < 0.9


def test_ssim_matches_scikit_image() -> None:
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(2)
    a = rng.random((24, 28, 3))
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1)
    ref = metrics.structural_similarity(
        a, b, data_range=1.0, channel_axis=-1, gaussian_weights=True, use_sample_covariance=False, sigma=1.5
    )
    assert ssim(a, b) == pytest.approx(ref, abs=1e-9)


# ------------------------------------------------------------------------------------------------ features


def test_frechet_distance_known_answers() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 8))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    shift = np.array([3.0, 0, 0, 0, 4.0, 0, 0, 0])
    assert frechet_distance(x, x + shift) == pytest.approx(25.0, rel=1e-6)  # equal covariances: |Δμ|²
    assert frechet_distance(x, 2 * x) > 1.0  # same mean, wider spread


class TinyVideoNet(torch.nn.Module):
    """A random 3D conv net standing in for I3D: videos (B, T, H, W, 3) uint8 -> (B, 16)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(3, 16, kernel_size=3, padding=1)

    def forward(
        self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = True
    ) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0  # (B, 3, T, H, W)
        return torch.tanh(self.conv(x)).mean(dim=(2, 3, 4))


def _videos(seed: int, count: int = 12) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 200, size=(count, 4, 16, 16, 3), dtype=np.uint8)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the real I3D file is TorchScript, so is this one
def test_fvd_with_a_tiny_extractor(tmp_path) -> None:
    path = tmp_path / "i3d.pt"
    torch.jit.script(TinyVideoNet()).save(str(path))
    extractor = load_i3d_extractor(path)
    videos = _videos(0)
    assert fvd(videos, videos, extractor) == pytest.approx(0.0, abs=1e-6)
    small, large = fvd(videos, videos + 20, extractor), fvd(videos, videos + 50, extractor)
    assert 0.0 < small < large


def test_clip_similarity_with_a_tiny_extractor() -> None:
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, 3)

    def extractor(images: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(images).float().permute(0, 3, 1, 2) / 255  # (B, 3, H, W)
        with torch.no_grad():
            return torch.relu(conv(x)).mean(dim=(2, 3)).numpy() + 1e-3

    images = _videos(1)[:, 0]  # (N, H, W, 3)
    assert clip_similarity(images, images, extractor) == pytest.approx(1.0)
    assert clip_similarity(images, 255 - images, extractor) < 0.999


def test_clip_loader_reads_a_local_transformers_folder(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    from helix4d.eval.features import load_clip_extractor

    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, vocab_size=100)
    config = transformers.CLIPConfig(vision_config=vision, text_config=text, projection_dim=16)
    transformers.CLIPModel(config).save_pretrained(tmp_path)
    transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path
    )
    extractor = load_clip_extractor(tmp_path)
    images = _videos(2, count=3)[:, 0]
    assert extractor(images).shape == (3, 16)
    assert clip_similarity(images, images, extractor) == pytest.approx(1.0, abs=1e-5)


# ------------------------------------------------------------------------------------------------ folders and CLI


def _write_frames(folder, meshes, pattern: str = "frame_{:d}.ply") -> None:
    folder.mkdir(parents=True)
    for i, mesh in enumerate(meshes):
        mesh.export(folder / pattern.format(i))


def test_load_sequence_meshes_from_mesh_generate_and_dataset_folders(tmp_path) -> None:
    from helix4d.data.layout import save_ovoxels
    from helix4d.ovoxel import mesh_to_ovoxel

    meshes = [sphere(0.1 + 0.02 * i, 1) for i in range(11)]
    _write_frames(tmp_path / "plain", meshes)  # frame_10 must come after frame_9
    loaded = load_sequence_meshes(tmp_path / "plain")
    assert [round(float(m.bounding_box.extents[0]), 3) for m in loaded] == [
        round(float(m.bounding_box.extents[0]), 3) for m in meshes
    ]
    _write_frames(tmp_path / "generated" / "frames", meshes[:2], "frame_{:04d}.glb")
    assert len(load_sequence_meshes(tmp_path / "generated")) == 2
    seq = tmp_path / "dataset_seq"
    seq.mkdir()
    save_ovoxels(seq / "ovoxels.npz", [mesh_to_ovoxel(sphere(0.3, 2), resolution=16)] * 2)
    from_ovoxels = load_sequence_meshes(seq)
    assert len(from_ovoxels) == 2 and len(from_ovoxels[0].faces) > 0
    assert chamfer_distance(from_ovoxels[0].sample(2000), sphere(0.3, 3).sample(2000)) < 0.05
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no sequence"):
        load_sequence_meshes(tmp_path / "empty")


def test_sequences_pair_by_name(tmp_path) -> None:
    for root in ("pred", "gt"):
        for name in ("a", "b"):
            _write_frames(tmp_path / root / name, [sphere()])
    _write_frames(tmp_path / "pred" / "c", [sphere()])
    pairs, unmatched = pair_sequences(tmp_path / "pred", tmp_path / "gt")
    assert [p[0] for p in pairs] == ["a", "b"] and unmatched == ["c"]
    assert list(find_sequences(tmp_path / "pred" / "a")) == ["a"]


def test_cli_evaluate_prints_json_and_table(tmp_path) -> None:
    gt = growing_sequence(2)
    _write_frames(tmp_path / "gt", gt)
    _write_frames(
        tmp_path / "pred" / "frames",
        transformed(gt, AffineMap.similarity(np.eye(3), 2.0, np.ones(3))),
        "frame_{:04d}.glb",
    )
    runner = CliRunner()
    result = runner.invoke(
        app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--json", "--points", "1000"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["protocol"] == "ours" and report["align"] is True
    assert report["mean"]["cd_3d"] < 1e-6 and report["sequences"][0]["frames"] == 2
    table = runner.invoke(
        app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--no-align", "--points", "500"]
    )
    assert table.exit_code == 0 and "protocol: ours" in table.output and "| mean (1)" in table.output
    bad = runner.invoke(app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--protocol", "nope"])
    assert isinstance(bad.exception, InputError)
    from helix4d.export.glb import write_glb

    write_glb(
        trimesh.Trimesh(), tmp_path / "pred" / "frames" / "frame_0001.glb"
    )  # what generate writes for an empty frame
    holed = runner.invoke(app, ["evaluate", str(tmp_path / "pred"), str(tmp_path / "gt"), "--json", "--points", "1000"])
    assert holed.exit_code == 0, holed.output
    assert json.loads(holed.output)["sequences"][0]["empty_frames"] == 1


def _dataset_sequence(folder, meshes, size: int = 32) -> None:
    """A dataset-style sequence folder: per-frame meshes, meta.json with the conditioning camera, view-0 renders."""
    from PIL import Image

    from helix4d.data.layout import META, camera_to_dict, dataset_cameras, view_png, write_json_atomic
    from helix4d.eval.images import render_frames
    from helix4d.render import Renderer

    _write_frames(folder / "meshes", meshes)
    camera = dataset_cameras(1)[0]
    write_json_atomic(folder / META, {"cameras": [camera_to_dict(camera)]})
    loaded = load_sequence_meshes(folder)  # render what the evaluation will load (PLY round trip)
    for f, image in enumerate(render_frames(Renderer(size, size), camera, loaded)):
        view_png(folder, 0, f).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(view_png(folder, 0, f))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_image_and_video_metrics_of_a_prediction_rendered_from_the_input_camera(tmp_path) -> None:
    from helix4d.errors import BackendUnavailableError
    from helix4d.eval.evaluate import run_evaluation
    from helix4d.eval.protocols import make_protocol

    try:
        for name in ("a", "b"):
            _dataset_sequence(tmp_path / "gt" / name, growing_sequence(3))
    except BackendUnavailableError as exc:
        pytest.skip(f"no headless OpenGL here: {exc}")
    torch.jit.script(TinyVideoNet()).save(str(tmp_path / "i3d.pt"))
    report = run_evaluation(
        tmp_path / "gt",
        tmp_path / "gt",
        make_protocol("ours", align=False, points=500),
        images=True,
        i3d=tmp_path / "i3d.pt",
    )
    for seq in report.sequences:
        assert seq.images["iou"] == 1.0 and seq.images["psnr"] == float("inf") and seq.images["ssim"] == 1.0
    assert report.fvd == pytest.approx(0.0, abs=1e-6)
    assert report.to_json()["mean"]["psnr"] is None  # infinite: JSON has no inf
