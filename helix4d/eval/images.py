"""Image metrics between renders of a prediction and the input frames: silhouette IoU, PSNR and SSIM.

Images are arrays: (H, W, C) or a stack (F, H, W, C), uint8 (range 255) or float (range 1). RGBA images are
compared as RGB composited over one background colour (straight alpha), so pixels outside both silhouettes
agree and the silhouettes themselves are judged by IoU. `render_metrics` renders the prediction through
`helix4d.render` from the input camera and scores it against the input frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy.ndimage import gaussian_filter

from helix4d.errors import InputError

if TYPE_CHECKING:
    import trimesh

    from helix4d.render import Camera, Renderer

# SSIM constants of Wang et al. 2004: an 11-tap Gaussian window (sigma 1.5, truncated at 3.5 sigma), K1, K2.
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _range(image: np.ndarray) -> float:
    return 255.0 if image.dtype == np.uint8 else 1.0


def _check_pair(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise InputError(f"images must have the same shape, got {a.shape} and {b.shape}")


def silhouette_iou(pred_mask: np.ndarray, gt_mask: np.ndarray) -> float:
    """Intersection over union of two boolean masks (any shape, e.g. (H, W) or (F, H, W)); 1 when both are empty."""
    pred_mask, gt_mask = np.asarray(pred_mask, bool), np.asarray(gt_mask, bool)
    _check_pair(pred_mask, gt_mask)
    union = np.logical_or(pred_mask, gt_mask).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred_mask, gt_mask).sum() / union)


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB over all pixels and channels; inf for identical images."""
    _check_pair(pred, gt)
    peak = _range(gt)
    mse = np.mean((np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak**2 / mse))


def ssim(pred: np.ndarray, gt: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004: Gaussian window, population covariances), averaged over
    channels and frames; the border where the window does not fit is left out. 1 for identical images.

    pred, gt: (H, W), (H, W, C) or (F, H, W, C). Matches `skimage.metrics.structural_similarity` with
    `gaussian_weights=True, use_sample_covariance=False`.
    """
    _check_pair(pred, gt)
    peak = _range(gt)
    x, y = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    if x.ndim == 3:
        x, y = x[None], y[None]
    if x.ndim != 4:
        raise InputError(f"SSIM takes (H, W), (H, W, C) or (F, H, W, C) images, got shape {pred.shape}")
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    if min(x.shape[1:3]) < 2 * radius + 1:
        raise InputError(f"SSIM needs images of at least {2 * radius + 1}x{2 * radius + 1} pixels")
    sigma = (0, SSIM_SIGMA, SSIM_SIGMA, 0)  # blur the two image axes only

    def blur(image: np.ndarray) -> np.ndarray:
        return gaussian_filter(image, sigma=sigma, truncate=SSIM_TRUNCATE, mode="reflect")

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * peak) ** 2, (SSIM_K2 * peak) ** 2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    inner = index[:, radius:-radius, radius:-radius]  # (F, H', W', C)
    return float(inner.mean(axis=(1, 2)).mean())


def composite(rgba: np.ndarray, background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """Straight-alpha RGBA (..., 4) over a constant background -> RGB (..., 3) of the same dtype."""
    if rgba.shape[-1] == 3:
        return rgba
    if rgba.shape[-1] != 4:
        raise InputError(f"expected RGB or RGBA images, got {rgba.shape[-1]} channels")
    peak = _range(rgba)
    colour, alpha = rgba[..., :3].astype(np.float64) / peak, rgba[..., 3:].astype(np.float64) / peak
    out = colour * alpha + np.asarray(background) * (1.0 - alpha)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8) if rgba.dtype == np.uint8 else out


def image_metrics(
    pred_rgba: np.ndarray, gt_rgba: np.ndarray, background: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> dict[str, float]:
    """Silhouette IoU (alpha > half), PSNR and SSIM (RGB over `background`) of RGBA frames (F, H, W, 4) or one
    (H, W, 4)."""
    _check_pair(pred_rgba, gt_rgba)
    if pred_rgba.shape[-1] != 4:
        raise InputError(f"image_metrics takes RGBA images, got {pred_rgba.shape[-1]} channels")
    half = _range(gt_rgba) / 2
    pred_rgb, gt_rgb = composite(pred_rgba, background), composite(gt_rgba, background)
    return {
        "iou": silhouette_iou(pred_rgba[..., 3] > half, gt_rgba[..., 3] > half),
        "psnr": psnr(pred_rgb, gt_rgb),
        "ssim": ssim(pred_rgb, gt_rgb),
    }


def render_frames(renderer: Renderer, camera: Camera, meshes: Sequence[trimesh.Trimesh]) -> np.ndarray:
    """(F, H, W, 4) uint8 straight-alpha renders of each frame's mesh from `camera`, transparent background."""
    return np.stack([renderer.render(mesh, camera) for mesh in meshes])


def render_metrics(
    renderer: Renderer,
    camera: Camera,
    pred_meshes: Sequence[trimesh.Trimesh],
    gt_frames: np.ndarray,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> dict[str, float]:
    """Render the predicted frames from the input `camera` and score them against the input RGBA frames
    (F, H, W, 4) uint8 with `image_metrics`. The renderer's size must match the frames."""
    if len(pred_meshes) != len(gt_frames):
        raise InputError(f"{len(pred_meshes)} predicted frames but {len(gt_frames)} input frames")
    if gt_frames.shape[1:3] != (renderer.height, renderer.width):
        raise InputError(
            f"input frames are {gt_frames.shape[2]}x{gt_frames.shape[1]} but the renderer draws "
            f"{renderer.width}x{renderer.height}; create Renderer(width, height) to match"
        )
    return image_metrics(render_frames(renderer, camera, pred_meshes), gt_frames, background)
