"""Union crop box and resize of `preprocess_frames`, on the border matte and on a video's own alpha."""

import numpy as np
import pytest

from helix4d.errors import InputError
from helix4d.io.matting import MattingOptions, border_matte, compute_matte
from helix4d.io.preprocess import preprocess_frames
from helix4d.io.video import Video, read_video, write_video


def video_of(frames: np.ndarray, has_alpha: bool = False) -> Video:
    return Video(frames=frames, fps=10.0, times=np.arange(len(frames)) / 10, has_alpha=has_alpha, source="test")


def square_on_white(positions, h=60, w=80, side=20) -> tuple[np.ndarray, np.ndarray]:
    """Frames (F, H, W, 4) with a red square at each (x, y) on white, and the true masks (F, H, W)."""
    frames = np.full((len(positions), h, w, 4), 255, np.uint8)
    masks = np.zeros((len(positions), h, w), bool)
    for i, (x, y) in enumerate(positions):
        frames[i, y : y + side, x : x + side, :3] = (220, 30, 40)
        masks[i, y : y + side, x : x + side] = True
    return frames, masks


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


BORDER = MattingOptions(method="border")


def test_border_matte_finds_the_square():
    frames, masks = square_on_white([(10, 10), (30, 20)])
    frames[0, 50, 5, :3] = 0  # a one-pixel speck is cleaned away
    matte = compute_matte(video_of(frames), BORDER)
    assert matte.method == "border" and matte.background_colour == (255, 255, 255)
    assert iou(matte.alpha > 0.5, masks) > 0.95 and matte.alpha[0, 50, 5] == 0
    assert matte.confidence > 0.9 and matte.warnings == []


def test_matte_survives_compression(tmp_path):
    frames, masks = square_on_white([(10, 10), (12, 10), (14, 12)], h=64, w=80)
    video = read_video(write_video(tmp_path / "sq.mp4", frames[..., :3], fps=10))
    alpha, _, uniformity = border_matte(video.frames[..., :3])
    assert iou(alpha > 0.5, masks) > 0.95 and uniformity > 0.99


def test_crop_box_is_the_union_of_a_moving_square():
    frames, _ = square_on_white([(5, 8), (25, 14), (50, 30)])
    out = preprocess_frames(video_of(frames), size=64, pad_ratio=0.1, matting=BORDER)
    assert out.object_box == (5, 8, 70, 50)
    x0, y0, x1, y1 = out.box
    assert x1 - x0 == y1 - y0 == 78  # ceil(65 * 1.2), one square for every frame
    assert out.background_colour == (255, 255, 255)
    assert out.images.shape == (3, 4, 64, 64) and out.images.dtype == np.float32
    assert out.images.min() >= 0 and out.images.max() <= 1
    # the object keeps its motion inside the shared crop: its centre moves right and down
    centres = [np.argwhere(a > 0.5).mean(0) for a in out.images[:, 3]]  # (y, x) per frame
    assert centres[0][1] < centres[1][1] < centres[2][1] and centres[0][0] < centres[2][0]
    # RGB is composited over black: zero where alpha is zero, the object's red inside
    assert out.images[:, :3][np.broadcast_to(out.images[:, 3:] == 0, (3, 3, 64, 64))].max() == 0
    assert out.images[0, 0, :, :][out.images[0, 3] > 0.99].mean() > 0.8


def test_rgba_input_uses_its_alpha():
    frames = np.zeros((2, 40, 40, 4), np.uint8)
    frames[..., :3] = 90  # the colour is uniform: a border matte would find nothing
    frames[:, 10:30, 15:25, 3] = 255
    out = preprocess_frames(video_of(frames, has_alpha=True), size=32, pad_ratio=0.0)  # auto picks the alpha
    assert out.matte.method == "alpha" and out.matte.confidence == 1.0
    assert out.background_colour is None and out.object_box == (15, 10, 25, 30)
    assert out.box == (10, 10, 30, 30)
    alpha = out.images[:, 3]
    expected = np.zeros((2, 32, 32), bool)
    expected[:, :, 8:24] = True  # source columns 15..25 of the 20-pixel box, scaled by 32 / 20
    np.testing.assert_array_equal(alpha > 0.5, expected)
    assert alpha[:, :, 10:22].min() > 0.95 and alpha[:, :, :4].max() < 0.01
    np.testing.assert_allclose(out.images[:, 0, 16, 16], 90 / 255, atol=1e-3)


def test_a_see_through_object_in_rgba_is_framed_by_its_own_alpha():
    """Clear glass rendered alone never reaches alpha 0.5; its exact alpha still frames it (a matte model's faint
    probabilities would not, so only the video's own alpha does this)."""
    frames = np.zeros((2, 40, 40, 4), np.uint8)
    frames[:, 10:30, 12:28] = (120, 160, 200, 90)  # alpha 0.35
    out = preprocess_frames(video_of(frames, has_alpha=True), size=32, pad_ratio=0.0)
    assert out.matte.method == "alpha" and out.object_box == (12, 10, 28, 30)
    assert 0.3 < out.images[:, 3].max() < 0.4


def test_no_foreground_is_an_input_error():
    frames = np.full((2, 32, 32, 4), 255, np.uint8)
    with pytest.raises(InputError, match="no foreground"):
        preprocess_frames(video_of(frames), matting=BORDER)


@pytest.mark.parametrize("kwargs", [{"size": 4}, {"pad_ratio": -0.1}])
def test_bad_options(kwargs):
    frames, _ = square_on_white([(10, 10)])
    with pytest.raises(InputError):
        preprocess_frames(video_of(frames), matting=BORDER, **kwargs)
