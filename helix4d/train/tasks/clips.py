"""Pre-encoded latents as training clips: what the flow and image-encoder tasks read."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from helix4d.data.look import canonical_sequences
from helix4d.errors import ConfigError, InputError
from helix4d.train.latents import INDEX


class LatentClips(Dataset):
    """Clips of pre-encoded sequences. Static training (clip_frames = 1) indexes every (sequence, frame); temporal
    training draws one clip start per (sequence, index) from a seeded RNG, so item i is a function of i alone."""

    def __init__(self, root: Path, clip_frames: int, seed: int, repeats: int = 1, looks: str = "all") -> None:
        index_path = root / INDEX
        if not index_path.is_file():
            raise ConfigError(f"{root} holds no encoded latents; run `helix4d model encode-latents` first")
        self.root, self.clip_frames, self.seed = root, clip_frames, seed
        index = json.loads(index_path.read_text())
        self.sequences = [s for s in index["sequences"] if s["frames"] >= clip_frames]
        if looks != "all":
            kept = _sequences_of_look(Path(index["data"]), looks)
            self.sequences = [s for s in self.sequences if s["id"] in kept]
        if not self.sequences:
            raise ConfigError(
                f"no sequence in {root} has {clip_frames} frames" + ("" if looks == "all" else f" and the {looks} look")
            )
        self.ends = np.cumsum([s["frames"] if clip_frames == 1 else repeats for s in self.sequences])

    def __len__(self) -> int:
        return int(self.ends[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        seq = int(np.searchsorted(self.ends, index, side="right"))
        entry = self.sequences[seq]
        record = _load_latents(str(self.root / f"{entry['id']}.pt"))
        if self.clip_frames == 1:
            start = index - (int(self.ends[seq - 1]) if seq else 0)
        else:
            start = int(np.random.default_rng([self.seed, index]).integers(0, entry["frames"] - self.clip_frames + 1))
        frames = list(range(start, start + self.clip_frames))
        coarse = record["coarse"]
        rows = [coarse[:, 0] == f for f in frames]
        item = {
            "images": record["images"][frames],  # (F, 4, S, S) uint8
            "ss": record["ss"][frames],  # (F, C, r, r, r)
            "coarse": [coarse[m, 1:] for m in rows],  # per frame (n_f, 3)
        }
        for stage in ("geometry", "material"):  # absent from stage-1-only latents
            if stage in record:
                item[stage] = [record[stage][m] for m in rows]
        return item


def _sequences_of_look(data: Path, looks: str) -> set[str]:
    """Ids of the encoded dataset's sequences seen with `looks` (only 'canonical' is selectable)."""
    if looks != "canonical":
        raise ConfigError(f"task_options.looks must be 'all' or 'canonical', got {looks!r}")
    try:
        return canonical_sequences(data)
    except InputError as exc:
        raise ConfigError(f"selecting looks reads the dataset the latents were encoded from: {exc}") from None


@lru_cache(maxsize=4096)
def _load_latents(path: str) -> dict[str, Any]:
    return torch.load(path, weights_only=True)
