"""Frame preprocessing: matte the object, crop one square box for the whole clip, resize for the image encoder.

Output images are RGB composited over black using the alpha, plus the alpha as a 4th channel. A constant
background keeps clutter and lighting around the object out of the conditioning (the static image-to-3D models
we build on, TRELLIS among them, are trained on object crops over black, i.e. `rgb * alpha`); the alpha channel
keeps the silhouette available for anything that needs it (previews, masks, losses). Which matte a clip gets is
`helix4d.io.matting`'s chain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from helix4d.errors import InputError
from helix4d.io.matting import Matte, MattingOptions, compute_matte
from helix4d.io.video import Video


@dataclass
class Preprocessed:
    """Model-ready frames and where they came from.

    images: (F, 4, size, size) float32 in [0, 1]: RGB over black (premultiplied by alpha) + alpha.
    object_box: (x0, y0, x1, y1) source pixels, end-exclusive: union of the per-frame foreground boxes.
    box: (x0, y0, x1, y1) source pixels, end-exclusive: the square crop (object box + margin); it may extend
        past the frame, where the crop is transparent. Source pixel (x, y) maps to output pixel
        ((x - x0) * size / (x1 - x0), (y - y0) * size / (y1 - y0)).
    matte: the full-frame matte the crop was cut with (its method, confidence and warnings).
    """

    images: np.ndarray  # (F, 4, size, size) float32
    object_box: tuple[int, int, int, int]
    box: tuple[int, int, int, int]
    matte: Matte

    @property
    def background_colour(self) -> tuple[int, int, int] | None:
        """RGB uint8 background estimated by the border matte, or None when another matte was used."""
        return self.matte.background_colour


def preprocess_frames(
    video: Video,
    size: int = 518,
    pad_ratio: float = 0.1,
    matting: MattingOptions | Matte = MattingOptions(),
) -> Preprocessed:
    """Matte, crop and resize every frame of `video` to (F, 4, size, size) float32 in [0, 1].

    Matte: `matting` options for `helix4d.io.matting.compute_matte` (default `auto`), or a matte computed already.
    Crop: ONE square box for the whole sequence, the union of the per-frame foreground boxes grown by
    `pad_ratio` of its longer side on each side. A per-frame crop would re-centre and re-scale the object every
    frame, hiding its real motion and size changes from the 4D model; one box keeps them coherent.
    """
    if size < 8:
        raise InputError(f"size must be >= 8 pixels, got {size}")
    if not 0 <= pad_ratio <= 1:
        raise InputError(f"pad_ratio must be in [0, 1], got {pad_ratio}")
    frames = video.frames  # (F, H, W, 4) uint8
    matte = matting if isinstance(matting, Matte) else compute_matte(video, matting)
    alpha = matte.alpha  # (F, H, W)
    if alpha.shape != frames.shape[:3]:
        raise InputError(f"matte of shape {alpha.shape} does not fit frames of shape {frames.shape[:3]}")
    object_box = _union_box(alpha > 0.5)
    if object_box is None and matte.method == "alpha":  # an exact alpha of a see-through object (clear glass)
        object_box = _union_box(alpha > SEE_THROUGH)  # may stay below one half everywhere: frame what is seen
    if object_box is None:
        raise InputError(
            f"no foreground object found in any frame of {video.source} (matte: {matte.method}) — use a video "
            "where the object stands out, supply masks with --mask, or RGBA frames / a pre-matted video"
        )
    box = _square_box(object_box, pad_ratio)
    images = np.empty((len(frames), 4, size, size), np.float32)
    for i in range(len(frames)):
        a = alpha[i, ..., None]  # (H, W, 1)
        rgba = np.concatenate([frames[i, ..., :3].astype(np.float32) / 255 * a, a], -1)  # (H, W, 4)
        images[i] = _crop_resize(rgba, box, size).transpose(2, 0, 1)  # (4, size, size)
    return Preprocessed(images=images, object_box=object_box, box=box, matte=matte)


SEE_THROUGH = 0.05  # the least alpha that counts as the object, where a video's own alpha never reaches 0.5


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
