"""Decoding, sampling and writing of videos and image folders (tiny clips written into tmp_path)."""

import av
import numpy as np
import pytest
from PIL import Image

from helix4d.errors import InputError
from helix4d.io.video import read_video, write_video

COLOUR = (200, 60, 120)


def clip(frames: int = 30, h: int = 32, w: int = 48, alpha: bool = False) -> np.ndarray:
    """(F, H, W, 3|4) uint8: a flat colour with a white bar that moves one pixel per frame."""
    out = np.zeros((frames, h, w, 4 if alpha else 3), np.uint8)
    out[..., :3] = COLOUR
    for i in range(frames):
        out[i, h - 6 : h - 2, i % (w - 4) : i % (w - 4) + 4, :3] = 255
    if alpha:
        out[..., 3] = 255
        out[:, 4:16, 4:20, 3] = 0  # a transparent hole
    return out


def test_mp4_round_trip(tmp_path):
    path = write_video(tmp_path / "a.mp4", clip(), fps=30)
    video = read_video(path)
    assert video.frames.shape == (30, 32, 48, 4) and video.frames.dtype == np.uint8
    assert video.fps == pytest.approx(30)
    np.testing.assert_allclose(video.times, np.arange(30) / 30, atol=1e-6)
    assert not video.has_alpha and (video.frames[..., 3] == 255).all()
    assert np.abs(video.frames[:, 8, 24, :3].astype(int) - COLOUR).max() <= 6
    assert video.source == str(path)


def test_odd_size_is_padded_to_even(tmp_path):
    video = read_video(write_video(tmp_path / "odd.mp4", clip(3, h=15, w=21), fps=10))
    assert video.frames.shape[1:3] == (16, 22)


def test_fps_resampling_keeps_a_third(tmp_path):
    video = read_video(write_video(tmp_path / "a.mp4", clip(), fps=30), fps=10)
    assert video.num_frames == 10 and video.fps == 10
    np.testing.assert_allclose(video.times, np.arange(10) / 10, atol=1e-6)


def test_fps_above_source_keeps_every_frame_once(tmp_path):
    video = read_video(write_video(tmp_path / "a.mp4", clip(), fps=30), fps=60)
    assert video.num_frames == 30 and video.fps == pytest.approx(30)


def test_start_end_and_max_frames(tmp_path):
    path = write_video(tmp_path / "a.mp4", clip(), fps=30)
    video = read_video(path, start=0.5, end=0.7)
    np.testing.assert_allclose(video.times, np.arange(15, 22) / 30, atol=1e-6)
    # the bar is at x = frame index: the frames really are the ones the times say
    assert video.frames[0, 28, 15:19, 0].min() > 240 and video.frames[0, 28, 14, 0] < 230
    capped = read_video(path, start=0.5, fps=10, max_frames=3)
    np.testing.assert_allclose(capped.times, [0.5, 0.6, 0.7], atol=1e-6)


def test_png_folder_with_alpha(tmp_path):
    frames = clip(5, alpha=True)
    for i, f in enumerate(frames):  # natural order: 2 before 10
        Image.fromarray(f).save(tmp_path / f"frame_{i * 4}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    video = read_video(tmp_path, fps=12)
    assert video.has_alpha and video.fps == 12 and video.frames.shape == (5, 32, 48, 4)
    np.testing.assert_array_equal(video.frames, frames)
    np.testing.assert_allclose(video.times, np.arange(5) / 12)
    assert read_video(tmp_path, max_frames=2, max_side=24).frames.shape == (2, 16, 24, 4)


def test_opaque_rgba_pngs_have_no_alpha(tmp_path):
    frames = clip(2, alpha=True)
    frames[..., 3] = 255
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"{i}.png")
    video = read_video(tmp_path)
    assert not video.has_alpha and video.fps == 24


def _has_vp9_alpha_encoder() -> bool:
    try:
        return "yuva420p" in {f.name for f in av.codec.Codec("libvpx-vp9", "w").video_formats}
    except Exception:
        return False


@pytest.mark.skipif(not _has_vp9_alpha_encoder(), reason="this FFmpeg build has no libvpx-vp9 yuva420p encoder")
def test_webm_with_alpha(tmp_path):
    frames = clip(6, alpha=True)
    video = read_video(write_video(tmp_path / "a.webm", frames, fps=12))
    assert video.has_alpha and video.frames.shape == (6, 32, 48, 4)
    assert video.frames[:, 8, 10, 3].max() < 10 and video.frames[:, 24, 30, 3].min() > 245
    assert not read_video(write_video(tmp_path / "b.webm", frames[..., :3], fps=12)).has_alpha


def test_gif_with_transparency(tmp_path):
    video = read_video(write_video(tmp_path / "a.gif", clip(10, alpha=True), fps=10))
    assert video.num_frames == 10 and video.has_alpha
    assert video.frames[0, 8, 10, 3] == 0 and video.frames[0, 24, 30, 3] == 255
    assert np.abs(video.frames[0, 24, 30, :3].astype(int) - COLOUR).max() <= 8


def test_mov_qtrle_alpha(tmp_path):
    path = tmp_path / "a.mov"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("qtrle", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "argb"
        for f in clip(3, alpha=True):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgba")))
        container.mux(stream.encode())
    video = read_video(path)
    assert video.has_alpha and video.num_frames == 3 and video.frames[0, 8, 10, 3] == 0


def test_4k_is_downscaled_on_decode(tmp_path):
    frames = np.zeros((2, 2160, 3840, 3), np.uint8)
    frames[:, 1080:] = 255
    video = read_video(write_video(tmp_path / "4k.mp4", frames, fps=24), max_side=256)
    assert video.frames.shape == (2, 144, 256, 4)
    assert video.frames[:, 30, 100, 0].max() < 10 and video.frames[:, 120, 100, 0].min() > 245


def test_one_frame_video_is_valid(tmp_path):
    assert read_video(write_video(tmp_path / "one.mp4", clip(1), fps=5)).num_frames == 1


def test_write_is_atomic(tmp_path):
    with pytest.raises(InputError):
        write_video(tmp_path / "x.mp4", np.zeros((2, 8, 8, 3), np.float32), fps=5)
    with pytest.raises(InputError):
        write_video(tmp_path / "x.avi", clip(2), fps=5)
    assert list(tmp_path.iterdir()) == []


def test_frames_stream_into_the_encoder_and_a_bad_one_leaves_no_file(tmp_path):
    frames = clip(12)
    streamed = read_video(write_video(tmp_path / "s.mp4", (f for f in frames), fps=12))
    whole = read_video(write_video(tmp_path / "w.mp4", frames, fps=12))
    assert np.array_equal(streamed.frames, whole.frames)  # the same encoder settings, frame by frame
    bad = [*frames[:3], np.zeros((8, 8, 3), np.uint8)]
    with pytest.raises(InputError, match="frame 3 is"):
        write_video(tmp_path / "bad.mp4", iter(bad), fps=12)
    with pytest.raises(InputError, match="at least one frame"):
        write_video(tmp_path / "none.mp4", iter([]), fps=12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.mp4", "w.mp4"]


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    "make, kwargs, message",
    [
        (lambda d: d / "missing.mp4", {}, "not found"),
        (lambda d: _file(d / "empty.mp4", b""), {}, "empty"),
        (lambda d: _file(d / "text.mp4", b"hello, not a video\n" * 20), {}, "not a readable video"),
        (lambda d: (d / "imgs").mkdir() or d / "imgs", {}, "no images"),
        (lambda d: write_video(d / "a.mp4", clip(), 30), {"start": 5.0}, "no frames in [5.0"),
        (lambda d: write_video(d / "a.mp4", clip(), 30), {"fps": 0}, "fps must be > 0"),
        (lambda d: write_video(d / "a.mp4", clip(), 30), {"max_frames": 0}, "max_frames"),
        (lambda d: write_video(d / "a.mp4", clip(), 30), {"start": 2.0, "end": 1.0}, "before start"),
        (lambda d: write_video(d / "a.mp4", clip(), 30), {"max_side": 0}, "max_side"),
    ],
)
def test_bad_inputs_raise_input_error(tmp_path, make, kwargs, message):
    with pytest.raises(InputError, match=message.replace("[", r"\[")) as info:
        read_video(make(tmp_path), **kwargs)
    assert "\n" not in str(info.value)


def test_zero_frame_video(tmp_path):
    path = tmp_path / "zero.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()  # header only, no frames
    with pytest.raises(InputError, match="no video frames"):
        read_video(path)
