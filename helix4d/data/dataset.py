"""Read built datasets (see `helix4d.data.layout`) as torch Datasets: whole sequences, clips, or single frames.

Images follow `helix4d.io.preprocess`: RGB composited over black (premultiplied by alpha) plus the alpha channel,
float32 in [0, 1], channels first. With `crop` (the default) they also go through `preprocess_frames` itself — one
square box around the object over all loaded frames, 10 % margin, resized back to the dataset's image size — so
training sees objects framed exactly as a user's video is framed at inference. `crop=False` gives the raw renders,
whose cameras meta.json records (for multi-view evaluation).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from helix4d.data import layout
from helix4d.data.layout import DatasetSettings
from helix4d.errors import InputError
from helix4d.io.preprocess import preprocess_frames
from helix4d.io.video import Video

Sample = dict[str, Any]


class SequenceDataset(torch.utils.data.Dataset):
    """One item per sequence: {"images": (F, 4, S, S) float32, "ovoxels": list[OVoxel] (F), "times": (F,) float64
    seconds, "start": first frame index, "id", "kind"}.

    With `clip_frames`, item i is a contiguous clip of that many frames whose start is drawn from an RNG seeded with
    (seed, i): random over sequences, reproducible per index (pass another `seed`, e.g. per epoch, for new clips).
    The clip's first frame is its anchor. `view` picks the rendered view (0 = the conditioning camera); `crop`
    frames the images as inference does (see the module docstring).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        clip_frames: int | None = None,
        view: int = 0,
        transform: Callable[[Sample], Any] | None = None,
        seed: int = 0,
        crop: bool = True,
    ) -> None:
        self.root = Path(root)
        manifest = layout.read_manifest(self.root)
        self.settings = DatasetSettings.from_dict(manifest["settings"])
        self.sequences: list[dict[str, Any]] = manifest["sequences"]
        if not 0 <= view < self.settings.views:
            raise InputError(f"view must be in [0, {self.settings.views - 1}] for {self.root}, got {view}")
        if clip_frames is not None and not 1 <= clip_frames <= self.settings.frames:
            raise InputError(f"clip_frames must be in [1, {self.settings.frames}] for {self.root}, got {clip_frames}")
        self.clip_frames, self.view, self.transform, self.seed, self.crop = clip_frames, view, transform, seed, crop

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> Any:
        entry = self.sequences[index]
        frames = range(entry["frames"])
        if self.clip_frames is not None:
            start = int(np.random.default_rng([self.seed, index]).integers(0, entry["frames"] - self.clip_frames + 1))
            frames = range(start, start + self.clip_frames)
        sample = load_sequence(self.root / entry["path"], frames, self.view, self.crop)
        return self.transform(sample) if self.transform else sample


class FrameDataset(torch.utils.data.Dataset):
    """One item per (sequence, frame) pair, for static / VAE training: {"image": (4, S, S) float32, "ovoxel",
    "time", "frame", "id", "kind"}."""

    def __init__(
        self,
        root: str | os.PathLike,
        view: int = 0,
        transform: Callable[[Sample], Any] | None = None,
        crop: bool = True,
    ):
        self.sequences = SequenceDataset(root, view=view, crop=crop)
        counts = [entry["frames"] for entry in self.sequences.sequences]
        self._ends = np.cumsum(counts)  # (num_sequences,) one past each sequence's last flat index
        self.transform = transform

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, index: int) -> Any:
        if not 0 <= index < len(self):
            raise IndexError(index)
        seq = int(np.searchsorted(self._ends, index, side="right"))
        frame = index - (int(self._ends[seq - 1]) if seq else 0)
        entry = self.sequences.sequences[seq]
        s = load_sequence(
            self.sequences.root / entry["path"], range(frame, frame + 1), self.sequences.view, self.sequences.crop
        )
        sample = {
            "image": s["images"][0],
            "ovoxel": s["ovoxels"][0],
            "time": s["times"][0],
            "frame": frame,
            "id": s["id"],
            "kind": s["kind"],
        }
        return self.transform(sample) if self.transform else sample


def load_sequence(folder: str | os.PathLike, frames: range | None = None, view: int = 0, crop: bool = True) -> Sample:
    """Frames `frames` (default all) of one sequence folder, as a `SequenceDataset` item."""
    folder = Path(folder)
    if not layout.is_finished(folder):
        raise InputError(f"{folder} is not a finished dataset sequence (no {layout.META}) — rerun the build")
    meta = layout.read_json(folder / layout.META)
    frames = range(len(meta["times"])) if frames is None else frames
    rgba = np.stack([_read_png(layout.view_png(folder, view, f)) for f in frames])  # (F, S, S, 4) uint8
    if crop:
        times = np.asarray([meta["times"][f] for f in frames])
        video = Video(frames=rgba, fps=meta["settings"]["fps"], times=times, has_alpha=True, source=str(folder))
        images = torch.from_numpy(preprocess_frames(video, size=rgba.shape[1]).images)  # (F, 4, S, S)
    else:
        images = torch.from_numpy(rgba).permute(0, 3, 1, 2).float() / 255.0  # (F, 4, S, S)
        images[:, :3] *= images[:, 3:]  # RGB over black, as helix4d.io.preprocess
    return {
        "images": images,
        "ovoxels": layout.load_ovoxels(folder / layout.OVOXELS, frames),
        "times": torch.tensor([meta["times"][f] for f in frames], dtype=torch.float64),
        "start": frames.start,
        "id": meta["id"],
        "kind": meta["kind"],
    }


def clip(sample: Sample, start: int, length: int) -> Sample:
    """Frames [start, start + length) of a loaded sequence sample (indices relative to the sample)."""
    frames = len(sample["ovoxels"])
    if not (0 <= start and 1 <= length and start + length <= frames):
        raise InputError(f"clip [{start}, {start + length}) does not fit a sample of {frames} frames")
    end = start + length
    return {
        **sample,
        "images": sample["images"][start:end],
        "ovoxels": sample["ovoxels"][start:end],
        "times": sample["times"][start:end],
        "start": sample["start"] + start,
    }


def collate(batch: list[Sample]) -> Sample:
    """DataLoader collate: tensors of equal shape are stacked, everything else (O-Voxels, ids) kept as lists."""
    out = {}
    for key in batch[0]:
        values = [sample[key] for sample in batch]
        same_shape = all(isinstance(v, torch.Tensor) and v.shape == values[0].shape for v in values)
        out[key] = torch.stack(values) if same_shape else values
    return out


def _read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGBA"))
    except OSError as exc:
        raise InputError(f"cannot read {path} ({exc}) — delete its sequence folder and rerun the build") from None
