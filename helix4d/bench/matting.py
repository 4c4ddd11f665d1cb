"""Matting on cluttered backgrounds: mean IoU of each matte against the ground-truth alpha, static and hand-held camera.

Clips are sequences of the procedural world (`helix4d data synth`: RGBA renders, so the alpha is exact) composited
over procedural backgrounds, one family per clip in turn:
  noise     1/f colour noise, the power spectrum of photographs;
  gradient  a two-colour gradient with a vignette and a little noise (a lit wall);
  texture   turbulent stripes, half of them over a checkerboard (wood, tiles, fabric);
  clutter   defocused discs and boxes of random colours over noise (a room behind the object);
each with a soft drop shadow of the object. The hand-held camera is a random walk of translation, rotation and zoom
applied to the whole composite (background, shadow, object and its alpha alike).

Rows: the bundled U²-Net-p and the border-colour matte, each raw (one frame at a time) and after the clip clean-up
(`helix4d.io.cleanup`: temporal median, GrabCut, specks and holes); "u2net + clean-up" is what `--matting auto`
gives an opaque video. IoU is of alpha > 0.5, per frame, averaged over frames and clips. "conf" is the matte's
recorded confidence (`helix4d.io.matting`), averaged over clips. A local segmentation model can join with --model.

With `--end-to-end`, every clip also goes through `helix4d generate`'s pipeline (the shipped demo model, or
`--generator`): the clean render with its own alpha, and each composited clip with the default `auto` matte; the
table gives the mean CD-3D (protocol ours) against the source meshes of each, and the ratio to the clean clips'.

Run: python -m helix4d.bench.matting [--clips 8] [--frames 8] [--model FOLDER_OR_ONNX] [--end-to-end] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from helix4d.data.build import build_synthetic
from helix4d.data.layout import read_json
from helix4d.io.matting import MattingOptions, estimate_matte, finish_matte
from helix4d.io.video import Video

FAMILIES = ("noise", "gradient", "texture", "clutter")
FRAME = (192, 256)  # (H, W) of the composited clips
MARGIN = 32  # background drawn this much larger on each side, so the hand-held camera never sees past it


@dataclass
class Clip:
    """A composited clip: frames (F, H, W, 3) uint8, true alpha (F, H, W) bool."""

    name: str
    family: str
    camera: str
    rgb: np.ndarray
    truth: np.ndarray
    folder: Path  # the synthetic sequence it was composited from


@dataclass
class Row:
    """One table row: a method on the clips of one camera."""

    method: str
    camera: str
    ious: list[float] = field(default_factory=list)  # per clip: mean over frames
    confidences: list[float] = field(default_factory=list)
    seconds: float = 0.0
    frames: int = 0
    by_family: dict[str, list[float]] = field(default_factory=dict)  # per clip IoU, by background family


# ---------------------------------------------------------------------------------------------- backgrounds


def pink_noise(rng: np.random.Generator, h: int, w: int, beta: float = 2.0) -> np.ndarray:
    """(H, W, 3) float32 zero-mean unit-variance noise with power spectrum 1 / f^beta."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None]
    f = np.hypot(fx, fy)
    f[0, 0] = 1.0
    spectrum = (rng.normal(size=(3, *f.shape)) + 1j * rng.normal(size=(3, *f.shape))) / f ** (beta / 2)
    spectrum[:, 0, 0] = 0
    img = np.fft.irfft2(spectrum, s=(h, w)).transpose(1, 2, 0)
    return ((img - img.mean((0, 1))) / (img.std((0, 1)) + 1e-9)).astype(np.float32)


def background(rng: np.random.Generator, family: str, h: int, w: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] of one background family (module docstring)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base, other = rng.uniform(0.15, 0.85, 3), rng.uniform(0.1, 0.9, 3)
    if family == "noise":
        out = base + 0.18 * pink_noise(rng, h, w)
    elif family == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = np.cos(angle) * xx / w + np.sin(angle) * yy / h
        t = (t - t.min()) / np.ptp(t)
        vignette = 1 - 0.6 * (np.hypot(xx / w - 0.5, yy / h - 0.5) ** 2)
        out = (base + (other - base) * t[..., None]) * vignette[..., None] + 0.03 * pink_noise(rng, h, w)
    elif family == "texture":
        angle, freq = rng.uniform(0, np.pi), rng.uniform(0.05, 0.15)
        s = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + 3 * pink_noise(rng, h, w, 2.5)[..., 0])
        if rng.random() < 0.5:
            cell = rng.integers(12, 28)
            s = 0.7 * np.where((xx // cell + yy // cell) % 2 == 0, 1.0, -1.0) + 0.3 * s
        out = base + (other - base) * (0.5 + 0.5 * s)[..., None] + 0.04 * pink_noise(rng, h, w)
    elif family == "clutter":
        out = base + 0.08 * pink_noise(rng, h, w)
        for _ in range(rng.integers(8, 20)):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 0.2 * w)
            if rng.random() < 0.5:
                inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            else:
                inside = (np.abs(xx - cx) < r) & (np.abs(yy - cy) < r * rng.uniform(0.2, 1))
            out[inside] = 0.6 * rng.uniform(0, 1, 3) + 0.4 * out[inside]
        out = ndimage.gaussian_filter(out, (1.5, 1.5, 0))  # out of focus behind the object
    else:
        raise ValueError(family)
    return np.clip(out, 0, 1).astype(np.float32)


# ---------------------------------------------------------------------------------------------- clips


def camera_path(rng: np.random.Generator, frames: int, camera: str, h: int, w: int) -> list[np.ndarray]:
    """Per frame a 2x3 affine (canvas -> frame pixels): a fixed crop, or a hand-held random walk of shift
    (~3 px a frame), rotation (~0.7 deg) and zoom (~1 %) about the frame centre."""
    shift, angle, zoom, out = np.zeros(2), 0.0, 1.0, []
    for _ in range(frames):
        move = cv2.getRotationMatrix2D((w / 2 + MARGIN, h / 2 + MARGIN), angle, zoom)
        move[:, 2] += shift - MARGIN
        out.append(move)
        if camera == "hand-held":
            shift = shift + rng.normal(0, 3, 2)
            angle, zoom = angle + rng.normal(0, 0.7), zoom * np.exp(rng.normal(0, 0.01))
    return out


def composite(rgba: np.ndarray, family: str, camera: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Renders (F, S, S, 4) uint8 over a background -> frames (F, H, W, 3) uint8 and true alpha (F, H, W) bool."""
    h, w = FRAME
    ch, cw = h + 2 * MARGIN, w + 2 * MARGIN
    plate = background(rng, family, ch, cw)
    s = rgba.shape[1]
    oy, ox = MARGIN + (h - s) // 2 + rng.integers(-10, 11), MARGIN + (w - s) // 2 + rng.integers(-40, 41)
    shadow_at = rng.uniform(3, 9, 2)
    frames, truth = [], []
    for move, render in zip(camera_path(rng, len(rgba), camera, h, w), rgba):
        alpha = np.zeros((ch, cw), np.float32)
        alpha[oy : oy + s, ox : ox + s] = render[..., 3] / 255
        colour = np.zeros((ch, cw, 3), np.float32)
        colour[oy : oy + s, ox : ox + s] = render[..., :3] / 255
        shadow = ndimage.gaussian_filter(ndimage.shift(alpha, shadow_at, order=1), 4)
        image = colour * alpha[..., None] + plate * (1 - 0.5 * shadow[..., None]) * (1 - alpha[..., None])
        frames.append(cv2.warpAffine(image, move, (w, h), flags=cv2.INTER_LINEAR))
        truth.append(cv2.warpAffine(alpha, move, (w, h), flags=cv2.INTER_LINEAR) > 0.5)
    rgb = (np.clip(np.stack(frames), 0, 1) * 255 + 0.5).astype(np.uint8)
    return rgb, np.stack(truth)


def front_renders(sequence: Path) -> np.ndarray:
    """(F, S, S, 4) uint8: a synthetic sequence's renders from its first view, with their exact alpha."""
    return np.stack(
        [np.asarray(Image.open(p).convert("RGBA")) for p in sorted((sequence / "views" / "v00").glob("*.png"))]
    )


def opaque_video(clip: Clip) -> Video:
    """A composited clip as the opaque video a user's camera gives (8 fps)."""
    rgba = np.concatenate([clip.rgb, np.full((*clip.rgb.shape[:3], 1), 255, np.uint8)], -1)  # (F, H, W, 4)
    return Video(frames=rgba, fps=8.0, times=np.arange(len(rgba)) / 8.0, has_alpha=False, source=clip.name)


def make_clips(root: Path, clips: int, frames: int, seed: int) -> list[Clip]:
    """`clips` synthetic sequences, each composited once per camera over its background family."""
    build_synthetic(root, clips, frames=frames, resolution=16, image_size=160, views=1, seed=seed, workers=0)
    rng = np.random.default_rng(seed)
    out = []
    for i, entry in enumerate(read_json(root / "manifest.json")["sequences"]):
        rgba = front_renders(root / entry["path"])
        family = FAMILIES[i % len(FAMILIES)]
        for camera in ("static", "hand-held"):
            rgb, truth = composite(rgba, family, camera, rng)
            out.append(Clip(entry["id"], family, camera, rgb, truth, root / entry["path"]))
    return out


# ---------------------------------------------------------------------------------------------- scoring


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean over frames of IoU(pred, truth), (F, H, W) bool each."""
    inter, union = (pred & truth).sum(axis=(1, 2)), (pred | truth).sum(axis=(1, 2))
    return float(np.mean(inter / np.maximum(union, 1)))


def run(clips: list[Clip], model: Path | None) -> list[Row]:
    """Every method on every clip; each raw matte is computed once, then cleaned for its "+ clean-up" row."""
    methods = ["u2net", "border"] + (["model"] if model else [])
    rows: dict[tuple[str, str], Row] = {}
    for clip in clips:
        video = opaque_video(clip)
        for method in methods:
            options = MattingOptions(method=method, model=model if method == "model" else None)
            clock = time.perf_counter()
            raw = estimate_matte(method, video, options)
            raw_s = time.perf_counter() - clock
            matte = finish_matte(raw, video, options)
            clean_s = time.perf_counter() - clock
            for label, alpha, confidence, seconds in (
                (f"{method} raw", raw.alpha, None, raw_s),
                (f"{method} + clean-up", matte.alpha, matte.confidence, clean_s),
            ):
                r = rows.setdefault((label, clip.camera), Row(label, clip.camera))
                r.ious.append(iou(alpha > 0.5, clip.truth))
                r.confidences.append(confidence)
                r.seconds += seconds
                r.frames += video.num_frames
                r.by_family.setdefault(clip.family, []).append(r.ious[-1])
    return list(rows.values())


def end_to_end(clips: list[Clip], generator: Path | None = None) -> dict[str, list[float]]:
    """CD-3D against the source meshes, per clip: "clean" (each sequence's render with its own alpha, once) and
    each camera's composited clips with the `auto` matte."""
    from helix4d.data.dataset import load_sequence
    from helix4d.eval.budget import ground_truth_meshes
    from helix4d.eval.protocols import evaluate_sequence
    from helix4d.pipeline.helix4d import Helix4DPipeline

    pipe = Helix4DPipeline.from_pretrained(generator)
    scores: dict[str, list[float]] = {}
    by_sequence: dict[Path, list[Clip]] = {}
    for clip in clips:
        by_sequence.setdefault(clip.folder, []).append(clip)
    for folder, composited in by_sequence.items():
        gt, _ = ground_truth_meshes(folder, load_sequence(folder, range(len(composited[0].rgb)))["ovoxels"])
        clean = front_renders(folder)
        inputs = [("clean", Video(clean, 8.0, np.arange(len(clean)) / 8.0, True, str(folder)), MattingOptions("alpha"))]
        inputs += [(clip.camera, opaque_video(clip), MattingOptions("auto")) for clip in composited]
        for label, video, matting in inputs:
            asset = pipe(video, matting=matting)
            scores.setdefault(label, []).append(evaluate_sequence(asset.meshes, gt).metrics["cd_3d"])
    return scores


def end_to_end_table(scores: dict[str, list[float]]) -> str:
    """Markdown: mean CD-3D of the clean clips and of each camera's composited ones, and the ratio."""
    clean = float(np.mean(scores["clean"]))
    lines = ["| input | matte | CD-3D | vs clean |", "|---|---|---|---|"]
    for label, values in scores.items():
        matte = "its own alpha" if label == "clean" else "auto"
        lines.append(f"| {label} | {matte} | {np.mean(values):.3f} | {np.mean(values) / clean:.2f}× |")
    return "\n".join(lines)


def table(rows: list[Row]) -> str:
    """Markdown table: mean IoU per method and camera, per background family, confidence, seconds per frame."""
    head = ["method", "camera", "mean IoU", *FAMILIES, "min", "conf", "s/frame"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        families = [f"{np.mean(r.by_family[f]):.3f}" if f in r.by_family else "—" for f in FAMILIES]
        confidences = [c for c in r.confidences if c is not None]
        conf = f"{np.mean(confidences):.2f}" if confidences else "—"
        cells = [
            r.method,
            r.camera,
            f"{np.mean(r.ious):.3f}",
            *families,
            f"{np.min(r.ious):.3f}",
            conf,
            f"{r.seconds / r.frames:.2f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8, help="synthetic sequences (each run with both cameras)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None, help="also score this segmentation folder / .onnx")
    parser.add_argument("--end-to-end", action="store_true", help="also generate from every clip and score CD-3D")
    parser.add_argument("--generator", type=Path, default=None, help="model folder for --end-to-end (default: demo)")
    parser.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clips = make_clips(Path(tmp) / "synth", args.clips, args.frames, args.seed)
        generated = end_to_end(clips, args.generator) if args.end_to_end else None
    rows = run(clips, args.model)
    if args.json:
        print(
            json.dumps(
                {
                    "rows": [
                        {
                            "method": r.method,
                            "camera": r.camera,
                            "iou": r.ious,
                            "confidence": r.confidences,
                            "seconds_per_frame": r.seconds / r.frames,
                        }
                        for r in rows
                    ],
                    "end_to_end_cd_3d": generated,
                },
                indent=1,
            )
        )
        return
    h, w = FRAME
    print(
        f"{len(clips) // 2} clips x 2 cameras, {args.frames} frames of {w}x{h}; {platform.machine()}, "
        f"{os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    )
    print(table(rows))
    if generated is not None:
        print(end_to_end_table(generated))


if __name__ == "__main__":
    main()
