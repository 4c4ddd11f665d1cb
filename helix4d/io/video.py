"""Video decoding and writing: any video or image folder -> RGBA frames sampled by timestamp.

Decoding goes through PyAV (FFmpeg). Frames are downscaled while decoding (FFmpeg's swscale, area filter), so
a 4K video never holds full-resolution frames in memory: only the sampled, resized RGBA frames are kept.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from helix4d.errors import InputError
from helix4d.io.files import atomic_path
from helix4d.settings import check_settings

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
DEFAULT_FOLDER_FPS = 24.0


@dataclass
class Video:
    """Decoded, sampled frames of one video.

    frames: (F, H, W, 4) uint8 RGBA; alpha is 255 everywhere unless `has_alpha`.
    fps: frame rate of the sampled frames (the source rate when no resampling happened).
    times: (F,) float64 seconds of each frame, measured from the start of the source.
    has_alpha: True only when the source carries an alpha channel that is not fully opaque.
    source: the path the frames came from.
    """

    frames: np.ndarray  # (F, H, W, 4) uint8
    fps: float
    times: np.ndarray  # (F,) float64
    has_alpha: bool
    source: str

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def read_video(
    path: str | os.PathLike,
    fps: float | None = None,
    max_frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
    max_side: int = 1024,
) -> Video:
    """Decode a video file (mp4/mov/webm/mkv/gif/...) or a folder of images into RGBA frames.

    Sampling: frames are first restricted to `start <= t <= end` (seconds); then, if `fps` is given and lower
    than the source rate, the frame nearest each target time `t0 + k / fps` is kept (frames are never
    duplicated, so a higher `fps` keeps every frame); finally only the *first* `max_frames` are kept, so a cap
    shortens the clip rather than spreading the frames thinner (motion speed stays as sampled).
    For a folder, every image (png/jpg/webp, natural name order) is one frame and `fps` is the folder's frame
    rate (default 24), not a resampling target; its images must share one size (a folder of mixed sizes is
    refused rather than stretched).
    Each frame is resized on decode so its longest side is at most `max_side` (aspect kept).
    Alpha is kept where the codec carries it (png, VP8/VP9 with alpha, gif transparency, qtrle, ProRes 4444).
    """
    check_settings({"fps": fps, "max_frames": max_frames, "start": start, "end": end, "max_side": max_side})
    p = Path(path)
    if not p.exists():
        raise InputError(f"input not found: {p} — check the path (a video file or a folder of images)")
    if p.is_dir():
        return _read_folder(p, fps, max_frames, start, end, max_side)
    if p.stat().st_size == 0:
        raise InputError(f"input file is empty: {p} — re-export or re-download the video")
    return _read_file(p, fps, max_frames, start, end, max_side)


def write_video(path: str | os.PathLike, frames: np.ndarray | Iterable[np.ndarray], fps: float) -> Path:
    """Write (F, H, W, 3|4) uint8 frames to .mp4 (H.264), .webm (VP9, with alpha for 4 channels) or .gif.

    `frames` may also be any iterable of (H, W, 3|4) uint8 frames of one shape: mp4 and webm encode them as they
    come, so a long video is never held whole. mp4 has no alpha: a 4th channel is dropped (RGB kept as is). Odd
    sizes are padded to even ones by repeating the last row/column (yuv420p needs even sizes). The file is written
    to a temporary name and renamed at the end, so a failed run never leaves a half-written file behind.
    """
    p = Path(path)
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    suffix = p.suffix.lower()
    if suffix not in (".mp4", ".webm", ".gif"):
        raise InputError(f"cannot write {p.name}: use a .mp4, .webm or .gif file name")
    stream = _checked_frames(frames)
    first = next(stream)
    with atomic_path(p) as tmp:
        if suffix == ".gif":
            _write_gif(tmp, np.stack([first, *stream]), fps)
        else:
            _write_av(tmp, first, stream, fps, suffix)
    return p


def _checked_frames(frames: np.ndarray | Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The frames one at a time, each (H, W, 3|4) uint8 of the first one's shape; at least one frame (checked
    before the first is yielded)."""
    hint = "convert with np.clip(x * 255, 0, 255).astype(np.uint8)"
    if isinstance(frames, np.ndarray) and (frames.ndim != 4 or len(frames) == 0):
        raise InputError(
            f"write_video needs frames of shape (F, H, W, 3|4) uint8 with F >= 1, got {frames.shape} "
            f"{frames.dtype} — {hint}"
        )
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise InputError("write_video needs at least one frame")
    first = np.asarray(first)
    if first.ndim != 3 or first.shape[-1] not in (3, 4) or first.dtype != np.uint8:
        raise InputError(f"write_video needs (H, W, 3|4) uint8 frames, got {first.shape} {first.dtype} — {hint}")

    def frames_of_one_shape() -> Iterator[np.ndarray]:
        yield first
        for i, frame in enumerate(it, start=1):
            frame = np.asarray(frame)
            if frame.shape != first.shape or frame.dtype != np.uint8:
                raise InputError(f"frame {i} is {frame.shape} {frame.dtype}, the first was {first.shape} uint8")
            yield frame

    return frames_of_one_shape()


# ---------------------------------------------------------------------------------------------- reading


def _fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size with the longest side at most `max_side`, aspect kept (never upscales)."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


class _Sampler:
    """Keeps frames inside [start, end], nearest to the target times t0 + k / fps, up to max_frames."""

    def __init__(self, fps, max_frames, start, end, source_fps):
        self.step = 1.0 / fps if fps is not None else None
        self.max_frames = max_frames
        self.start = start if start is not None else 0.0
        self.end = end
        # half a source frame: a frame is "nearest" to a target when it is at most this much before it
        self.tol = 0.5 / source_fps if source_fps else 1e-6
        self.t0: float | None = None
        self.next_k = 0
        self.kept = 0

    def done(self, t: float) -> bool:
        full = self.max_frames is not None and self.kept >= self.max_frames
        return full or (self.end is not None and t > self.end + 1e-6)

    def keep(self, t: float) -> bool:
        if t < self.start - 1e-6 or (self.end is not None and t > self.end + 1e-6):
            return False
        if self.t0 is None:
            self.t0 = t
        if self.step is not None:
            if t < self.t0 + self.next_k * self.step - self.tol:
                return False
            self.next_k = int(np.floor((t - self.t0 + self.tol) / self.step)) + 1
        self.kept += 1
        return True


def _read_file(p: Path, fps, max_frames, start, end, max_side) -> Video:
    try:
        container = av.open(str(p))
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise InputError(f"not a readable video: {p} ({e}) — use an mp4/mov/webm/mkv/gif file") from None
    with container:
        if not container.streams.video:
            raise InputError(f"no video frames in {p} — the file holds no video stream (audio/data only, or empty)")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        source_fps = float(stream.average_rate or stream.guessed_rate or 0) or None
        rate = source_fps or DEFAULT_FOLDER_FPS  # for frames without timestamps
        sampler = _Sampler(fps, max_frames, start, end, source_fps)
        t_offset = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        frames, times, alpha_format = [], [], False
        try:
            if start:
                _seek(container, stream, start + t_offset)
            for i, frame in enumerate(_decode(container, stream)):
                t = frame.time - t_offset if frame.time is not None else i / rate
                if sampler.done(t):
                    break
                if not sampler.keep(t):
                    continue
                alpha_format |= _format_has_alpha(frame.format)
                w, h = _fit_size(frame.width, frame.height, max_side)
                frames.append(frame.to_ndarray(width=w, height=h, format="rgba", interpolation="AREA"))
                times.append(t)
        except av.error.FFmpegError as e:
            raise InputError(f"cannot decode {p} ({e}) — the file is damaged; re-export it") from None
    if not frames and start is None and end is None:
        raise InputError(f"no video frames in {p} — the video stream is empty; re-export the video")
    if not frames:
        where = f"[{start or 0}, {end if end is not None else 'end'}] s"
        raise InputError(f"no frames in {where} of {p} — check start/end against the video's length")
    resampled = fps is not None and (source_fps is None or fps < source_fps)
    out_fps = fps if resampled else (source_fps or DEFAULT_FOLDER_FPS)
    return _make_video(frames, np.asarray(times), out_fps, alpha_format, p)


def _seek(container, stream, t: float) -> None:
    """Jump to the keyframe before t; decoding from there is exact because earlier frames are skipped."""
    try:
        container.seek(int(t / stream.time_base), stream=stream, backward=True)
    except av.error.FFmpegError:
        container.seek(0, stream=stream)


def _decode(container, stream) -> Iterator[av.VideoFrame]:
    """Decoded frames; VP8/VP9 with alpha go through libvpx, since FFmpeg's own decoders drop the alpha plane."""
    name = stream.codec_context.name
    if name in ("vp8", "vp9") and stream.metadata.get("alpha_mode") == "1":
        try:
            ctx = av.CodecContext.create("libvpx-vp9" if name == "vp9" else "libvpx", "r")
        except (av.error.FFmpegError, ValueError):
            ctx = None
        if ctx is not None:
            for packet in container.demux(stream):
                yield from ctx.decode(packet)  # demux ends with an empty packet, which flushes
            return
    yield from container.decode(stream)


def _format_has_alpha(fmt: av.VideoFormat) -> bool:
    return fmt.has_palette or any(c.is_alpha for c in fmt.components)


def _make_video(frames: list[np.ndarray], times: np.ndarray, fps: float, alpha_format: bool, p: Path) -> Video:
    if len({f.shape for f in frames}) > 1:  # the size changed mid-stream: bring every frame to the first size
        h, w = frames[0].shape[:2]
        frames = [f if f.shape[:2] == (h, w) else np.asarray(Image.fromarray(f).resize((w, h))) for f in frames]
    stacked = np.stack(frames)  # (F, H, W, 4)
    has_alpha = bool(alpha_format and (stacked[..., 3] < 255).any())
    if not has_alpha:
        stacked[..., 3] = 255
    return Video(frames=stacked, fps=float(fps), times=times.astype(np.float64), has_alpha=has_alpha, source=str(p))


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def _natural_key(name: str) -> list:
    return [int(s) if s.isdigit() else s.lower() for s in re.split(r"(\d+)", name)]


def _read_folder(p: Path, fps, max_frames, start, end, max_side) -> Video:
    files = sorted((f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES), key=lambda f: _natural_key(f.name))
    if not files:
        raise InputError(f"no images in folder {p} — put frames there as .png/.jpg/.webp files")
    rate = fps if fps is not None else DEFAULT_FOLDER_FPS
    sampler = _Sampler(None, max_frames, start, end, rate)
    frames, times, alpha_format, first = [], [], False, None
    for i, f in enumerate(files):
        t = i / rate
        if sampler.done(t):
            break
        if not sampler.keep(t):
            continue
        try:
            with Image.open(f) as im:
                alpha_format |= im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
                rgba = im.convert("RGBA")
        except OSError as e:
            raise InputError(f"cannot read image {f} ({e}) — remove or re-export it") from None
        size = _fit_size(rgba.width, rgba.height, max_side)
        first = first or (f, size)
        if size != first[1]:  # stretching would distort the object, padding would move it between frames
            raise InputError(
                f"images in folder {p} differ in size: {first[0].name} is {_size_text(first[1])}, {f.name} is "
                f"{_size_text(size)} (after fitting into {max_side} px) — bring every frame to one size"
            )
        if size != rgba.size:
            rgba = rgba.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        frames.append(np.asarray(rgba))
        times.append(t)
    if not frames:
        raise InputError(f"no frames in [{start or 0}, {end}] s of folder {p} ({len(files)} images at {rate} fps)")
    return _make_video(frames, np.asarray(times), rate, alpha_format, p)


# ---------------------------------------------------------------------------------------------- writing


def _pad_even(frame: np.ndarray) -> np.ndarray:
    h, w, _ = frame.shape
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def _write_av(path: Path, first: np.ndarray, rest: Iterator[np.ndarray], fps: float, suffix: str) -> None:
    """Encode `first` and then every frame of `rest` as they come."""
    alpha = suffix == ".webm" and first.shape[-1] == 4
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w") as container:
        if suffix == ".mp4":
            stream = container.add_stream("libx264", rate=rate, options={"crf": "18", "preset": "veryfast"})
            stream.pix_fmt = "yuv420p"
        else:
            stream = container.add_stream("libvpx-vp9", rate=rate, options={"crf": "20", "b": "0"})
            stream.pix_fmt = "yuva420p" if alpha else "yuv420p"
        stream.height, stream.width = _pad_even(first).shape[:2]
        for i, arr in enumerate(itertools.chain([first], rest)):
            arr = _pad_even(arr if alpha else arr[..., :3])
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgba" if alpha else "rgb24")
            frame.pts = i
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    """GIF through Pillow: it quantises each frame to a palette and keeps binary transparency."""
    images = [Image.fromarray(f) for f in frames]
    if frames.shape[-1] == 4:  # GIF alpha is on/off: one palette entry is fully transparent
        images = [im.convert("RGBA") for im in images]
    images[0].save(
        path,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, round(1000 / fps)),
        loop=0,
        disposal=2,
    )
