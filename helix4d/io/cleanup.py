"""Clean-up of an estimated matte over a whole clip: keep what moves, recover lost frames, specks and holes.

A per-frame matte (a salient-object model, the border colour) is wrong in ways the clip can fix: it takes a
striking patch of the background for the object, or loses the object for a frame. The steps, on a working copy at
most `side` pixels long:
1. camera motion: a similarity transform from each frame to the first (corners of the background, outside the
   matte, tracked by Lucas-Kanade and fitted with RANSAC), so a hand-held camera is undone;
2. motion: the per-pixel median of the aligned frames is the clip's background plate; a pixel differs from it by
   more than `motion_threshold` where the object is, once the object has moved away from that place at least half
   of the time. In each frame, the matte's connected regions that hold less than `keep_moving` of the most moving
   region's share of such pixels are dropped (a static background patch). A frame where no region moves (share
   under `still`) keeps them all when the object stays put in most frames (an object that does not move), and
   loses them all when it moves in most (there the matte took a patch of background for the object);
3. GrabCut (OpenCV, no weights) on every frame, seeded from its matte: the matte's core is "foreground", the rest
   of it "probably foreground", a band of `grabcut_band` around it "probably background"; colour models of object
   and background move the boundary onto the object's edges. A frame whose matte is under `lost_area` of the
   clip's median area (the object was lost) is seeded from its neighbour's result instead, carried over by the
   camera motion;
4. regions smaller than `min_region` of the frame's largest are dropped, enclosed holes smaller than `max_hole` of
   the frame are filled.
The binary result is brought back to full size; its rim keeps half of the matte's own soft value, so anti-aliased
edges stay soft. A temporal median of the matte itself was measured and left out: with the large motion between
the frames a clip is sampled at (16 frames of a whole motion), it erodes the object (`helix4d.bench.matting`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

MIN_GRABCUT = 25  # pixels
MIN_SPREAD = 1 / 3  # of the frame's width and height that a camera measurement's background tracks must span


@dataclass(frozen=True)
class CleanupConfig:
    """How an estimated matte is cleaned (module docstring); the defaults are the benchmarked ones
    (`helix4d.bench.matting`)."""

    motion_threshold: float = 30.0  # RGB distance (0-255) from the background plate that counts as moved
    keep_moving: float = 0.3  # regions moving less than this fraction of the most moving one are dropped
    still: float = 0.15  # ... unless no region has more than this fraction of moved pixels
    grabcut_band: float = 0.015  # "probably background" band around the matte, as a fraction of the working side
    grabcut_iterations: int = 3  # 0: no GrabCut
    lost_area: float = 0.3  # a frame under this fraction of the median matte area is seeded from the previous one
    min_region: float = 0.02  # regions smaller than this fraction of the frame's largest are dropped
    max_hole: float = 0.01  # enclosed holes smaller than this fraction of the frame are filled
    side: int = 320  # working resolution (longer side)


def clean_matte(
    alpha: np.ndarray, rgb: np.ndarray, config: CleanupConfig = CleanupConfig(), drop_still: bool = True
) -> np.ndarray:
    """(F, H, W) float32 soft matte and its frames (F, H, W, 3) uint8 -> cleaned (F, H, W) float32 matte.
    `drop_still`: drop regions that do not move (`keep_moving`: background patches an estimated matte took for the
    object); off where everything off a plain backdrop's colour is the object, a part that stands still included."""
    h, w = alpha.shape[1:]
    small_rgb, masks = _working_copy(rgb, alpha, config.side)
    to_first = camera_motion(small_rgb, masks)  # (F, 2, 3)
    if len(masks) > 1 and drop_still:
        masks = keep_moving(
            masks, motion(small_rgb, to_first) > config.motion_threshold, config.keep_moving, config.still
        )
    masks = refine(masks, small_rgb, to_first, config)
    masks = np.stack([clean_regions(m, config.min_region, config.max_hole * m.size) for m in masks])
    full = np.stack([cv2.resize(m.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5 for m in masks])
    return _soft_rim(full, alpha)


def camera_motion(rgb: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """(F, 2, 3) float32 affine maps from each frame's pixels to the first frame's, chained frame to frame.

    Corners of the background only (outside the dilated (F, H, W) bool `masks`; on a plain background the object
    holds the only corners, and following them would take the object's motion for the camera's) are tracked into
    the next frame (pyramidal Lucas-Kanade) and a similarity transform is fitted to them with RANSAC. Identity where
    the background has too few corners (a plain background, where the camera's motion does not matter)."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in rgb]
    to_first = [np.eye(3)]
    for t in range(1, len(rgb)):
        step = _similarity(grey[t], grey[t - 1], masks[t])
        to_first.append(to_first[-1] @ np.vstack([np.eye(3)[:2] if step is None else step, [0, 0, 1]]))
    return np.stack([m[:2] for m in to_first]).astype(np.float32)


def clip_camera_motion(rgb: np.ndarray, alpha: np.ndarray, side: int = CleanupConfig.side) -> np.ndarray:
    """`camera_motion` of full-size frames (F, H, W, 3) uint8 with matte (F, H, W) float32, measured on a working
    copy at most `side` pixels long: (F, 2, 3) float32 maps from each frame's pixels to the first frame's."""
    h, w = alpha.shape[1:]
    small_rgb, masks = _working_copy(rgb, alpha, side)
    to_small = np.diag([masks.shape[2] / w, masks.shape[1] / h, 1.0])  # full-size pixels -> working pixels
    small = camera_motion(small_rgb, masks).astype(np.float64)  # (F, 2, 3) in working pixels
    full = [(np.linalg.inv(to_small) @ np.vstack([m, [0, 0, 1]]) @ to_small)[:2] for m in small]
    return np.stack(full).astype(np.float32)


def motion(rgb: np.ndarray, to_first: np.ndarray) -> np.ndarray:
    """(F, H, W) float32 RGB distance of each frame from the clip's background plate (the per-pixel median of the
    frames aligned by `to_first`, carried back into each frame)."""
    h, w = rgb.shape[1:3]
    warp = dict(flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    plate = np.median(np.stack([cv2.warpAffine(f, m, (w, h), **warp) for f, m in zip(rgb, to_first)]), axis=0)
    plate = plate.astype(np.float32)  # (H, W, 3) in the first frame's pixels
    return np.stack(
        [
            np.linalg.norm(f - cv2.warpAffine(plate, cv2.invertAffineTransform(m), (w, h), **warp), axis=-1)
            for f, m in zip(rgb.astype(np.float32), to_first)
        ]
    )


def keep_moving(masks: np.ndarray, moved: np.ndarray, keep: float, still: float) -> np.ndarray:
    """Per frame of (F, H, W) bool masks, the regions whose share of `moved` pixels is at least `keep` of the
    frame's most moving region. Where no region of a frame has more than `still`: all of them when the object
    stays put in most frames too, none when it moves in most (the matte took a patch of background for the object
    there, and `refine` recovers the frame from its neighbour)."""
    labels = [ndimage.label(m) for m in masks]
    shares = [
        np.asarray(ndimage.mean(move, lab, np.arange(1, n + 1))) if n else np.zeros(0)
        for (lab, n), move in zip(labels, moved)
    ]
    moving_clip = np.median([s.max() if len(s) else 0.0 for s in shares]) > still
    out = np.zeros_like(masks)
    for t, ((lab, n), share) in enumerate(zip(labels, shares)):
        if n == 0 or (moving_clip and share.max() <= still):
            continue
        chosen = share >= keep * share.max() if share.max() > still else np.ones(n, bool)
        out[t] = np.concatenate([[False], chosen])[lab]
    return out


def refine(masks: np.ndarray, rgb: np.ndarray, to_first: np.ndarray, config: CleanupConfig) -> np.ndarray:
    """GrabCut every frame of (F, H, W) bool `masks` on its frame of (F, H, W, 3) uint8, seeded from its mask, or
    where the mask is under `lost_area` of the median area, from its neighbour's result (the previous frame's, the
    next one's before the first frame that was not lost) carried over by the camera motion `to_first`, with bands
    three times as wide. -> (F, H, W) bool."""
    areas = masks.sum(axis=(1, 2))
    lost = areas < config.lost_area * np.median(areas)
    first = int(np.argmin(lost)) if not lost.all() else 0
    h, w = masks.shape[1:]
    band = max(2, round(config.grabcut_band * max(h, w)))
    out = np.zeros_like(masks)
    for t, near in (
        [(first, first)]
        + [(t, t - 1) for t in range(first + 1, len(masks))]
        + [(t, t + 1) for t in range(first - 1, -1, -1)]
    ):
        seed, width = masks[t], band
        if lost[t] and near != t and out[near].any():
            carry = cv2.invertAffineTransform(to_first[t]) @ np.vstack([to_first[near], [0, 0, 1]])  # near -> t
            seed = cv2.warpAffine(out[near].astype(np.uint8), carry, (w, h), flags=cv2.INTER_NEAREST) > 0
            width = 3 * band  # the object has moved since: a looser seed
        out[t] = grabcut(rgb[t], seed, width, config.grabcut_iterations) if config.grabcut_iterations else seed
    return out


def grabcut(rgb: np.ndarray, seed: np.ndarray, band: int, iterations: int) -> np.ndarray:
    """Bool (H, W) foreground of GrabCut on (H, W, 3) uint8, seeded from a bool mask: inside "probably foreground",
    its core "foreground", a band of `band` pixels around it "probably background", the rest "background". A seed
    under `MIN_GRABCUT` pixels is returned as it is: too few for GrabCut's colour models (5 Gaussians each)."""
    if seed.sum() < MIN_GRABCUT:
        return seed
    labels = np.full(seed.shape, cv2.GC_BGD, np.uint8)
    labels[ndimage.binary_dilation(seed, iterations=band)] = cv2.GC_PR_BGD
    labels[seed] = cv2.GC_PR_FGD
    labels[ndimage.binary_erosion(seed, iterations=band)] = cv2.GC_FGD
    if not (labels == cv2.GC_BGD).any():  # GrabCut learns the background's colours from somewhere
        labels[[0, -1], :] = cv2.GC_BGD
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(
        np.ascontiguousarray(rgb[..., ::-1]), labels, None, background, foreground, iterations, cv2.GC_INIT_WITH_MASK
    )
    return (labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)


def clean_regions(mask: np.ndarray, min_region: float, max_hole: float) -> np.ndarray:
    """Bool (H, W) without regions under `min_region` of the largest and with holes under `max_hole` pixels filled."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return mask
    areas = np.bincount(labels.ravel())[1:]
    keep = np.concatenate([[False], areas >= min_region * areas.max()])
    mask = keep[labels]
    holes, _ = ndimage.label(~mask)  # background regions; those not touching the border are holes
    sizes = np.bincount(holes.ravel())
    small = sizes < max_hole
    small[0] = False
    small[np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))] = False
    return mask | small[holes]


def _working_copy(rgb: np.ndarray, alpha: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames (F, H, W, 3) uint8 and soft matte (F, H, W) at most `side` pixels long: (F, h, w, 3) uint8 frames
    and (F, h, w) bool masks."""
    h, w = alpha.shape[1:]
    scale = min(1.0, side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))  # (w, h) for OpenCV
    small_rgb = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in rgb])
    masks = np.stack([cv2.resize(a, size, interpolation=cv2.INTER_AREA) > 0.5 for a in alpha])
    return small_rgb, masks


def _similarity(grey: np.ndarray, previous: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """2x3 similarity from a frame's pixels to the previous frame's, from background corners of the frame (outside
    `mask`) tracked into the previous one; None with fewer than 8 consistent tracks, or when they crowd into less
    than `MIN_SPREAD` of the frame's width or height: a camera moves the whole background, while a cluster of
    corners is a part of the object the matte missed or codec ringing around it, and following it would take the
    object's motion for the camera's (measured: a cluster between the split example's two spheres moved its still
    camera by up to 15 px)."""
    outside = np.where(ndimage.binary_dilation(mask, iterations=3), 0, 255).astype(np.uint8)
    corners = cv2.goodFeaturesToTrack(grey, maxCorners=300, qualityLevel=0.01, minDistance=5, mask=outside)
    if corners is None or len(corners) < 8:
        return None
    tracked, found, _ = cv2.calcOpticalFlowPyrLK(grey, previous, corners, None)
    ok = found[:, 0] == 1
    if ok.sum() < 8:
        return None
    step, inliers = cv2.estimateAffinePartial2D(corners[ok], tracked[ok], method=cv2.RANSAC, ransacReprojThreshold=1.0)
    if step is None or inliers.sum() < 8:
        return None
    kept = corners[ok][inliers[:, 0] == 1, 0]  # (n, 2) x, y
    spread = (kept.max(axis=0) - kept.min(axis=0)) / np.array(grey.shape[::-1])
    return step if spread.min() >= MIN_SPREAD else None


def _soft_rim(mask: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """(F, H, W) float32: 1 inside the mask's 1-pixel erosion, 0 outside its dilation, and on the rim between the
    mean of the binary decision and the original soft matte."""
    out = np.empty(mask.shape, np.float32)
    for i, m in enumerate(mask):
        inner, outer = ndimage.binary_erosion(m), ndimage.binary_dilation(m)
        out[i] = np.where(inner, 1.0, np.where(outer, (m + soft[i]) / 2, 0.0))
    return out
