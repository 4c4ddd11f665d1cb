"""Frame preprocessing: matte the object, crop one square box for the whole clip, resize for the image encoder.

Output images are RGB composited over black using the alpha, plus the alpha as a 4th channel. A constant
background keeps clutter and lighting around the object out of the conditioning (the static image-to-3D models
we build on, TRELLIS among them, are trained on object crops over black, i.e. `rgb * alpha`); the alpha channel
keeps the silhouette available for anything that needs it (previews, masks, losses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from helix4d.errors import InputError
from helix4d.io.video import Video


@dataclass
class Preprocessed:
    """Model-ready frames and where they came from.

    images: (F, 4, size, size) float32 in [0, 1]: RGB over black (premultiplied by alpha) + alpha.
    object_box: (x0, y0, x1, y1) source pixels, end-exclusive: union of the per-frame foreground boxes.
    box: (x0, y0, x1, y1) source pixels, end-exclusive: the square crop (object box + margin); it may extend
        past the frame, where the crop is transparent. Source pixel (x, y) maps to output pixel
        ((x - x0) * size / (x1 - x0), (y - y0) * size / (y1 - y0)).
    background_colour: RGB uint8 background estimated for the matte, or None when the video's alpha was used.
    """

    images: np.ndarray  # (F, 4, size, size) float32
    object_box: tuple[int, int, int, int]
    box: tuple[int, int, int, int]
    background_colour: tuple[int, int, int] | None


def preprocess_frames(
    video: Video,
    size: int = 518,
    pad_ratio: float = 0.1,
    threshold: float = 30.0,
    min_region: float = 0.02,
) -> Preprocessed:
    """Matte, crop and resize every frame of `video` to (F, 4, size, size) float32 in [0, 1].

    Matte: the video's own alpha when it has one; otherwise `border_matte` (see its limits there).
    Crop: ONE square box for the whole sequence, the union of the per-frame foreground boxes grown by
    `pad_ratio` of its longer side on each side. A per-frame crop would re-centre and re-scale the object every
    frame, hiding its real motion and size changes from the 4D model; one box keeps them coherent.
    `threshold` and `min_region` are passed to `border_matte`.
    """
    if size < 8:
        raise InputError(f"size must be >= 8 pixels, got {size}")
    if not 0 <= pad_ratio <= 1:
        raise InputError(f"pad_ratio must be in [0, 1], got {pad_ratio}")
    frames = video.frames  # (F, H, W, 4) uint8
    if video.has_alpha:
        alpha, background = frames[..., 3].astype(np.float32) / 255, None  # (F, H, W)
    else:
        alpha, background = border_matte(frames[..., :3], threshold, min_region)
    object_box = _union_box(alpha > 0.5)
    if object_box is None:
        raise InputError(
            f"no foreground object found in any frame of {video.source} — use a video with a plain background "
            "that differs from the object, or supply RGBA frames / a pre-matted video (e.g. webm with alpha)"
        )
    box = _square_box(object_box, pad_ratio)
    images = np.empty((len(frames), 4, size, size), np.float32)
    for i in range(len(frames)):
        a = alpha[i, ..., None]  # (H, W, 1)
        rgba = np.concatenate([frames[i, ..., :3].astype(np.float32) / 255 * a, a], -1)  # (H, W, 4)
        images[i] = _crop_resize(rgba, box, size).transpose(2, 0, 1)  # (4, size, size)
    return Preprocessed(images=images, object_box=object_box, box=box, background_colour=background)


def border_matte(
    rgb: np.ndarray, threshold: float = 30.0, min_region: float = 0.02
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Soft alpha (F, H, W) float32 for frames (F, H, W, 3) uint8 filmed against a plain background.

    The background colour is the median of the image-border pixels over all frames; a pixel is foreground when
    its RGB distance to it exceeds `threshold` (0-255 scale), with a soft ramp of +-threshold/2 around it for
    anti-aliased edges. Per frame, connected regions smaller than `min_region` of the largest one are dropped
    (compression noise, specks) and small enclosed holes (< 1 % of the frame) are filled.
    Limits: it needs a roughly uniform background that is distinct from the object and not touched by it at
    the border; it fails on cluttered or textured backgrounds, strong shadows, and object parts of the
    background's colour. For such footage supply RGBA frames or a pre-matted video instead.
    """
    h, w = rgb.shape[1:3]
    border = np.concatenate([rgb[:, 0], rgb[:, -1], rgb[:, :, 0], rgb[:, :, -1]], axis=1)  # (F, 2W + 2H, 3)
    background = np.median(border.reshape(-1, 3), axis=0)
    alpha = np.empty(rgb.shape[:3], np.float32)
    for i, frame in enumerate(rgb):
        dist = np.linalg.norm(frame.astype(np.float32) - background, axis=-1)  # (H, W)
        soft = np.clip((dist - threshold / 2) / threshold, 0, 1)
        alpha[i] = soft * _clean_mask(dist > threshold, min_region, max_hole=0.01 * h * w)
    return alpha, tuple(int(round(c)) for c in background)


def _clean_mask(mask: np.ndarray, min_region: float, max_hole: float) -> np.ndarray:
    """Drop specks, fill small holes, and grow by one pixel so the soft edge around the kept regions survives."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    areas = np.bincount(labels.ravel())[1:]
    keep = np.concatenate([[False], areas >= min_region * areas.max()])
    mask = keep[labels]
    holes, n_holes = ndimage.label(ndimage.binary_fill_holes(mask) & ~mask)
    if n_holes:
        small = np.concatenate([[False], np.bincount(holes.ravel())[1:] < max_hole])
        mask = mask | small[holes]
    return ndimage.binary_dilation(mask)


def _union_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), end-exclusive, of all True pixels over every frame of (F, H, W)."""
    any_frame = mask.any(axis=0)  # (H, W)
    ys, xs = np.nonzero(any_frame.any(axis=1))[0], np.nonzero(any_frame.any(axis=0))[0]
    if len(ys) == 0:
        return None
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


def _square_box(box: tuple[int, int, int, int], pad_ratio: float) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = box
    side = int(np.ceil(max(x1 - x0, y1 - y0) * (1 + 2 * pad_ratio)))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sx, sy = int(round(cx - side / 2)), int(round(cy - side / 2))
    return sx, sy, sx + side, sy + side


def _crop_resize(rgba: np.ndarray, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Crop (H, W, 4) float32 to `box` (transparent black outside the frame) and resize to (size, size, 4)."""
    h, w = rgba.shape[:2]
    x0, y0, x1, y1 = box
    canvas = np.zeros((y1 - y0, x1 - x0, 4), np.float32)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    canvas[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = rgba[sy0:sy1, sx0:sx1]
    # resample premultiplied channels one by one ("F" mode, no 8-bit rounding); Lanczos antialiases downscaling
    out = [np.asarray(Image.fromarray(canvas[..., c]).resize((size, size), Image.Resampling.LANCZOS)) for c in range(4)]
    return np.clip(np.stack(out, -1), 0, 1)
