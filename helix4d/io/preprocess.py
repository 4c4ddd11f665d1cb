"""Frame preprocessing: matte the object, undo the camera's motion, crop one square box for the whole clip, resize
for the image encoder.

Output images are RGB composited over black using the alpha, plus the alpha as a 4th channel. A constant
background keeps clutter and lighting around the object out of the conditioning (the static image-to-3D models
we build on, TRELLIS among them, are trained on object crops over black, i.e. `rgb * alpha`); the alpha channel
keeps the silhouette available for anything that needs it (previews, masks, losses). Which matte a clip gets is
`helix4d.io.matting`'s chain.

A hand-held camera moves the whole picture: cropped as it is, the object would shake, turn and zoom with the camera,
and the 4D model would generate motion the object never made. Where the matte measured the camera's motion against
the background (`Matte.camera`), every frame is first mapped into the first frame's camera (onto a canvas grown by
the largest shift, so nothing is cut off), and the crop is cut there. A camera that follows the object (a pan after
a walking subject) would spread the object over a box far larger than the frame it was filmed in; when the
stabilised box is more than `FOLLOWING` times the side of the unstabilised one, the camera's framing is kept, with a
warning.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from helix4d.errors import InputError
from helix4d.io.matting import Matte, MattingOptions, camera_shift, compute_matte
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
    stabilised: the frames were mapped into the first frame's camera before the crop (module docstring); the
        boxes are then in the first frame's pixels, and "source pixel" above means a pixel of it.
    """

    images: np.ndarray  # (F, 4, size, size) float32
    object_box: tuple[int, int, int, int]
    box: tuple[int, int, int, int]
    matte: Matte
    stabilised: bool = False

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
    steady = _Steadier(matte.camera, alpha.shape[1:]) if matte.camera is not None else None
    if steady is not None:
        steady_alpha = steady.alpha(alpha)  # (F, H', W') on the first frame's canvas
        if _follows(alpha, steady_alpha):
            matte.warnings.append(
                "the camera follows the object (undoing its motion would spread the object over a box more than "
                f"{FOLLOWING:g}x as large), so the camera's framing is kept and its motion stays in the result"
            )
            steady = None
        else:
            alpha = steady_alpha
    object_box = find_object(alpha, matte.method, video.source)
    box = _square_box(object_box, pad_ratio)
    images = np.empty((len(frames), 4, size, size), np.float32)
    for i in range(len(frames)):
        rgb = frames[i, ..., :3].astype(np.float32) / 255 * matte.alpha[i, ..., None]  # (H, W, 3) premultiplied
        if steady is not None:
            rgb = steady.frame(rgb, i)  # premultiplied, so edges do not take the background's colour
        rgba = np.concatenate([rgb, alpha[i, ..., None]], -1)  # (H, W, 4); alpha as the box was found on
        images[i] = _crop_resize(rgba, box, size).transpose(2, 0, 1)  # (4, size, size)
    if steady is not None:
        object_box, box = steady.to_first(object_box), steady.to_first(box)
    return Preprocessed(images=images, object_box=object_box, box=box, matte=matte, stabilised=steady is not None)


FOLLOWING = 1.5  # a stabilised object box this many times the side of the unstabilised one: the camera follows


class _Steadier:
    """Maps frames into the first frame's camera, on a canvas grown by `pad` pixels on each side (the largest
    shift of a frame corner), so an object the camera moved away from frame 0's picture is not cut off."""

    def __init__(self, camera: np.ndarray, shape: tuple[int, int]) -> None:
        """camera (F, 2, 3): each frame's pixels -> the first frame's; shape (H, W) of the frames."""
        self.pad = int(np.ceil(camera_shift(camera, shape)))
        self.size = (shape[1] + 2 * self.pad, shape[0] + 2 * self.pad)  # (w, h) for OpenCV
        self.maps = camera.astype(np.float64).copy()
        self.maps[:, :, 2] += self.pad  # onto the canvas

    def alpha(self, alpha: np.ndarray) -> np.ndarray:
        """(F, H, W) -> (F, H + 2 pad, W + 2 pad) float32, every frame in the first frame's camera."""
        return np.stack([self.frame(a, i) for i, a in enumerate(alpha)])

    def frame(self, image: np.ndarray, i: int) -> np.ndarray:
        """Frame i's (H, W[, C]) float32 image in the first frame's camera (transparent black where it saw nothing)."""
        return cv2.warpAffine(image, self.maps[i], self.size, flags=cv2.INTER_LINEAR, borderValue=0)

    def to_first(self, box: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """A canvas box in the first frame's pixels."""
        return tuple(v - self.pad for v in box)  # type: ignore[return-value]


def _follows(alpha: np.ndarray, steady_alpha: np.ndarray) -> bool:
    """Whether the stabilised object box (of `steady_alpha`) is over `FOLLOWING` times the side of the box of
    `alpha`: the camera followed the object."""
    plain, steady = _union_box(alpha > 0.5), _union_box(steady_alpha > 0.5)
    if plain is None or steady is None:
        return steady is None and plain is not None

    def side(b: tuple[int, int, int, int]) -> int:
        return max(b[2] - b[0], b[3] - b[1])

    return side(steady) > FOLLOWING * side(plain)


SEE_THROUGH = 0.05  # the least alpha that counts as the object, where a video's own alpha never reaches 0.5


def find_object(alpha: np.ndarray, method: str, source: str) -> tuple[int, int, int, int]:
    """The object's box over the whole clip, (x0, y0, x1, y1) end-exclusive: the union of where the (F, H, W)
    matte `alpha` (by `method`, of the video `source`) holds the object; an InputError when it holds none in any
    frame. `generate` and `helix4d matte` refuse such a clip alike: neither noise from the model nor all-black
    masks would be an answer."""
    object_box = _union_box(alpha > 0.5)
    if object_box is None and method == "alpha":  # an exact alpha of a see-through object (clear glass)
        object_box = _union_box(alpha > SEE_THROUGH)  # may stay below one half everywhere: frame what is seen
    if object_box is None:
        raise InputError(
            f"no foreground object found in any frame of {source} (matte: {method}) — use a video "
            "where the object stands out, supply masks with --mask, or RGBA frames / a pre-matted video"
        )
    return object_box


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
