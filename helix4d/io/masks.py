"""Per-frame mask files: what `helix4d matte` writes and `--mask` reads back.

A mask folder holds one 8-bit greyscale PNG per frame (`0000.png`, `0001.png`, ... in frame order, the frames'
size; 255 = object), so a user can inspect or fix the masks in any image editor and pass the folder back. A mask
*video* is matched to the clip by timestamp, so it may have the source's frame rate while the clip was sampled
with --fps / --start / --end. Either way a mask that does not fit the clip is refused, never stretched or guessed;
so is a folder whose numbering has a gap (0000, 0001, 0003: a deleted mask would shift every later one a frame).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from helix4d.errors import InputError
from helix4d.io.video import IMAGE_SUFFIXES, Video, read_video


def read_masks(path: str | os.PathLike, video: Video) -> np.ndarray:
    """(F, H, W) float32 matte in [0, 1] for `video` from a mask folder, image or video at `path`.

    A mask is its alpha channel where it has one, otherwise its grey level. A folder (or one image) must hold
    exactly one mask per frame of the clip; a video's frames are taken at the clip's timestamps. Masks of the
    frames' aspect ratio at another resolution are resized; any other size is refused."""
    p = Path(path)
    h, w = video.frames.shape[1:3]
    if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES:
        if p.is_dir():
            _check_numbering(p)
        masks = read_video(p, max_side=max(h, w))
        if masks.num_frames != video.num_frames:
            raise InputError(
                f"mask {p} has {masks.num_frames} frame(s) but the clip has {video.num_frames} — give "
                "one mask per frame (e.g. `helix4d matte` with the same --frames/--fps/--start/--end)"
            )
        frames = masks.frames
    else:  # decode only around the clip's time span
        masks = read_video(p, max_side=max(h, w), start=max(0.0, video.times[0] - 1), end=video.times[-1] + 1)
        frames = masks.frames[_nearest_frames(masks, video, p)]
    alpha = frames[..., 3] if masks.has_alpha else frames[..., :3].max(axis=-1)  # (F, h, w) uint8
    return _fit(alpha, p, (h, w)).astype(np.float32) / 255


def write_masks(alpha: np.ndarray, folder: Path) -> list[Path]:
    """Write (F, H, W) float32 mattes as 8-bit greyscale PNGs `0000.png`... into the existing `folder`."""
    paths = []
    for i, a in enumerate(alpha):
        path = folder / f"{i:04d}.png"
        Image.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8), mode="L").save(path)
        paths.append(path)
    return paths


def _check_numbering(folder: Path) -> None:
    """Refuse a mask folder whose numbered images (a trailing number in the name: 0000.png, mask_12.png) skip a
    number: masks are taken in order, so a missing one would give every later frame its neighbour's mask."""
    numbered = []
    for f in folder.iterdir():
        found = re.search(r"(\d+)$", f.stem)
        if f.suffix.lower() in IMAGE_SUFFIXES and found:
            numbered.append((int(found.group(1)), f.name))
    numbered.sort()
    for (a, name_a), (b, name_b) in zip(numbered, numbered[1:]):
        if b != a + 1:
            what = "a gap" if b > a + 1 else "a repeated number"
            raise InputError(
                f"mask folder {folder} has {what} in its numbering: {name_a} is followed by {name_b} — give one "
                "mask per frame, numbered without gaps (as `helix4d matte` writes them)"
            )


def _nearest_frames(masks: Video, video: Video, p: Path) -> np.ndarray:
    """Index of the mask frame nearest each of the clip's times; refused when one is more than half a mask frame
    away (the mask video is shorter than the clip, or starts later)."""
    gap = np.abs(masks.times[None, :] - video.times[:, None])  # (F, M) seconds
    index = gap.argmin(axis=1)  # (F,)
    off = gap[np.arange(len(index)), index] > 0.5 / masks.fps + 1e-6
    if off.any():
        t = float(video.times[np.argmax(off)])
        raise InputError(
            f"mask video {p} has no frame at {t:.3f} s of the clip (it covers {masks.times[0]:.3f}-"
            f"{masks.times[-1]:.3f} s in {masks.num_frames} frames) — give a mask for every frame"
        )
    return index


def _fit(alpha: np.ndarray, p: Path, size: tuple[int, int]) -> np.ndarray:
    """(F, h, w) uint8 masks brought to the frames' (H, W): equal, or the same aspect within a pixel and resized."""
    h, w = size
    mh, mw = alpha.shape[1:]
    if (mh, mw) == (h, w):
        return alpha
    if abs(mw * h / mh - w) > 1 and abs(mh * w / mw - h) > 1:
        raise InputError(
            f"mask {p} is {mw}×{mh} but the video's frames are {w}×{h} — give masks of the frames' "
            "size (or at least their aspect ratio)"
        )
    return np.stack([np.asarray(Image.fromarray(a).resize((w, h), Image.Resampling.BILINEAR)) for a in alpha])
