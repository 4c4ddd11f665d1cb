"""`SparseTensor`: per-frame voxel tokens of one or more sequences, coordinates and features kept together.

Every stage of helix4d works on tokens grouped by frame (docs/design.md §3.1): the dense stage 1 has all R³ voxels per
frame, the sparse stages only the occupied ones, so frames hold different numbers of tokens. Tokens are stored flat,
sorted by sequence then frame, with one offset per frame, so attention can slice a frame without searching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def frame_coords(coords_per_frame: Sequence[Tensor | np.ndarray], device: torch.device | str | None = None) -> Tensor:
    """Per-frame voxels (n_f, 3) -> (N, 4) int64 `[frame, x, y, z]`, frame i first: the one layout of voxel
    coordinates in helix4d (column 0 is the frame; sparse convolutions never mix voxels of two frames)."""
    parts = []
    for i, xyz in enumerate(coords_per_frame):
        xyz = torch.as_tensor(xyz)
        if xyz.ndim != 2 or xyz.shape[1] != 3:
            raise ValueError(f"frame {i}: coords must be (n, 3), got {tuple(xyz.shape)}")
        parts.append(torch.cat([torch.full((xyz.shape[0], 1), i, dtype=torch.int64, device=xyz.device), xyz.long()], 1))
    if not parts:
        return torch.zeros(0, 4, dtype=torch.int64, device=device)
    coords = torch.cat(parts)
    return coords if device is None else coords.to(device)


@dataclass(frozen=True)
class SparseTensor:
    """Tokens of `len(frames_per_sequence)` sequences.

    coords:              (N, 4) int64 `[frame, x, y, z]`, frame local to its sequence (0 = anchor).
    feats:               (N, C) features, row i belongs to coords[i].
    frame_offsets:       (T + 1,) int64, tokens of global frame j are rows frame_offsets[j]:frame_offsets[j+1];
                         T = sum(frames_per_sequence); frames may be empty.
    frames_per_sequence: frames of each sequence, in order.
    """

    coords: Tensor
    feats: Tensor
    frame_offsets: Tensor
    frames_per_sequence: tuple[int, ...]

    def __post_init__(self) -> None:
        c, f, o = self.coords, self.feats, self.frame_offsets
        if c.ndim != 2 or c.shape[1] != 4 or c.dtype != torch.int64:
            raise ValueError(f"coords must be (N, 4) int64, got {tuple(c.shape)} {c.dtype}")
        if f.ndim != 2 or f.shape[0] != c.shape[0]:
            raise ValueError(f"feats must be (N, C) with N={c.shape[0]}, got {tuple(f.shape)}")
        if o.ndim != 1 or o.dtype != torch.int64:
            raise ValueError(f"frame_offsets must be a 1-D int64 tensor, got {tuple(o.shape)} {o.dtype}")
        fps = tuple(int(n) for n in self.frames_per_sequence)
        object.__setattr__(self, "frames_per_sequence", fps)
        if not fps or any(n < 1 for n in fps):
            raise ValueError(f"frames_per_sequence must be non-empty positive ints, got {fps}")
        if o.shape[0] != sum(fps) + 1:
            raise ValueError(f"frame_offsets has {o.shape[0]} entries, expected {sum(fps) + 1} (total frames + 1)")
        ol = o.tolist()
        if ol[0] != 0 or ol[-1] != c.shape[0] or any(b < a for a, b in zip(ol, ol[1:])):
            raise ValueError(f"frame_offsets must rise from 0 to N={c.shape[0]}, got {ol}")

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_frames(cls, coords_per_frame: Sequence[Tensor], feats_per_frame: Sequence[Tensor]) -> SparseTensor:
        """One sequence from per-frame voxel coords (n_f, 3) and feats (n_f, C); frame i gets index i."""
        if len(coords_per_frame) != len(feats_per_frame) or not coords_per_frame:
            raise ValueError("need the same, non-zero number of coords and feats frames")
        return cls.of_sequence(coords_per_frame, torch.cat(list(feats_per_frame)))

    @classmethod
    def of_sequence(cls, coords_per_frame: Sequence[Tensor], feats: Tensor) -> SparseTensor:
        """One sequence from per-frame voxel coords (n_f, 3) and their feats (sum n_f, C) concatenated in frame
        order (how latents are stored and sampled); on the feats' device."""
        if not coords_per_frame:
            raise ValueError("a sequence needs at least one frame")
        coords = frame_coords(coords_per_frame, feats.device)
        counts = torch.tensor([0] + [x.shape[0] for x in coords_per_frame], dtype=torch.int64)
        return cls(coords, feats, counts.cumsum(0).to(feats.device), (len(coords_per_frame),))

    @classmethod
    def cat(cls, seqs: Sequence[SparseTensor]) -> SparseTensor:
        """Batch sequences (each may itself hold several) into one tensor; sequences stay independent."""
        if not seqs:
            raise ValueError("cat needs at least one SparseTensor")
        offsets, base = [seqs[0].frame_offsets[:1]], 0
        for s in seqs:
            offsets.append(s.frame_offsets[1:] + base)
            base += s.num_tokens
        return cls(
            coords=torch.cat([s.coords for s in seqs]),
            feats=torch.cat([s.feats for s in seqs]),
            frame_offsets=torch.cat(offsets),
            frames_per_sequence=sum((s.frames_per_sequence for s in seqs), ()),
        )

    @classmethod
    def from_dense(cls, x: Tensor) -> SparseTensor:
        """One sequence holding every voxel of a dense grid x (F, C, D, H, W); coords are grid indices."""
        if x.ndim != 5:
            raise ValueError(f"from_dense expects (F, C, D, H, W), got {tuple(x.shape)}")
        f, c, d, h, w = x.shape
        grid = torch.stack(
            torch.meshgrid(*(torch.arange(n, device=x.device) for n in (d, h, w)), indexing="ij"), dim=-1
        ).reshape(-1, 3)  # (D*H*W, 3)
        t = torch.arange(f, device=x.device).repeat_interleave(d * h * w)[:, None]  # (F*D*H*W, 1)
        coords = torch.cat([t, grid.repeat(f, 1)], dim=1)  # (F*D*H*W, 4)
        feats = x.permute(0, 2, 3, 4, 1).reshape(-1, c)  # (F*D*H*W, C)
        offsets = torch.arange(f + 1, device=x.device, dtype=torch.int64) * (d * h * w)
        return cls(coords=coords, feats=feats, frame_offsets=offsets, frames_per_sequence=(f,))

    def to_dense(self, shape: tuple[int, int, int]) -> Tensor:
        """Scatter feats into zeros (T, C, D, H, W) for spatial `shape` (D, H, W); T counts all sequences' frames."""
        d, h, w = shape
        out = self.feats.new_zeros(self.num_frames, d, h, w, self.num_channels)
        g, xyz = self.global_frame_index, self.coords[:, 1:]
        out[g, xyz[:, 0], xyz[:, 1], xyz[:, 2]] = self.feats
        return out.permute(0, 4, 1, 2, 3)  # (T, C, D, H, W)

    # ---------------------------------------------------------------- properties
    @property
    def num_tokens(self) -> int:
        return self.coords.shape[0]

    @property
    def num_channels(self) -> int:
        return self.feats.shape[1]

    @property
    def num_frames(self) -> int:
        """Total frames T over all sequences."""
        return self.frame_offsets.shape[0] - 1

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @property
    def tokens_per_frame(self) -> Tensor:
        """(T,) int64 token count of every global frame."""
        return self.frame_offsets.diff()

    @property
    def global_frame_index(self) -> Tensor:
        """(N,) int64 index of each token's frame among all T frames."""
        t = torch.arange(self.num_frames, device=self.frame_offsets.device)
        return t.repeat_interleave(self.tokens_per_frame).to(self.coords.device)

    @property
    def frame_index(self) -> Tensor:
        """(N,) int64 frame of each token within its own sequence (0 = anchor)."""
        return self.coords[:, 0]

    @property
    def batch_coords(self) -> Tensor:
        """(N, 4) int64 `[global frame, x, y, z]`: voxels numbered by their frame among all T frames, so that
        coordinates are unique across the sequences of a batch. Sparse convolutions (`helix4d.sparse.conv`) and
        the SC-VAEs work on these; `with_batch_voxels` turns their results back."""
        return torch.cat([self.global_frame_index[:, None], self.coords[:, 1:]], dim=1)

    def with_batch_voxels(self, coords: Tensor, feats: Tensor) -> SparseTensor:
        """Other voxels in this tensor's frames (e.g. an SC-VAE's coarse or fine voxels): coords (M, 4)
        `[global frame, x, y, z]` grouped by frame in order, feats (M, C). Frames keep their local numbers."""
        frame = coords[:, 0]
        if frame.numel() and (bool((frame.diff() < 0).any()) or int(frame[-1]) >= self.num_frames):
            raise ValueError(f"voxels must be grouped by global frame in order, within {self.num_frames} frames")
        starts = torch.tensor(self.sequence_frame_offsets[:-1], dtype=torch.int64)
        local = torch.arange(self.num_frames) - starts.repeat_interleave(torch.tensor(self.frames_per_sequence))
        local = local.to(coords.device)
        local[self.global_frame_index.to(coords.device)] = self.coords[:, 0].to(coords.device)  # as numbered here
        counts = torch.bincount(frame, minlength=self.num_frames)
        offsets = torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(self.frame_offsets.device)
        local_coords = torch.cat([local[frame][:, None], coords[:, 1:]], dim=1)
        return SparseTensor(local_coords, feats, offsets, self.frames_per_sequence)

    @property
    def sequence_frame_offsets(self) -> list[int]:
        """Global frame index where each sequence starts, plus the total T."""
        out = [0]
        for n in self.frames_per_sequence:
            out.append(out[-1] + n)
        return out

    # ---------------------------------------------------------------- transforms
    def replace(self, feats: Tensor) -> SparseTensor:
        """Same coords and layout, new feats (N, C')."""
        return SparseTensor(self.coords, feats, self.frame_offsets, self.frames_per_sequence)

    def frame(self, i: int) -> SparseTensor:
        """Global frame i as a one-frame sequence (its local frame index is kept in coords)."""
        lo, hi = (int(v) for v in self.frame_offsets[i : i + 2])
        return SparseTensor(
            self.coords[lo:hi], self.feats[lo:hi], torch.tensor([0, hi - lo], device=self.frame_offsets.device), (1,)
        )

    def select_frames(self, keep: Tensor | Sequence[int]) -> SparseTensor:
        """Keep a subset of global frames: a (T,) bool mask or a list of global frame indices.

        Sequences keep their order; a sequence that loses all its frames is dropped. Local frame indices in
        coords are kept as they are (e.g. after dropping anchors, frames start at 1), because RoPE and the
        attention window use them as positions.
        """
        mask = torch.zeros(self.num_frames, dtype=torch.bool)
        if isinstance(keep, Tensor) and keep.dtype == torch.bool:
            if keep.shape != (self.num_frames,):
                raise ValueError(f"frame mask must be ({self.num_frames},), got {tuple(keep.shape)}")
            mask = keep.cpu()
        else:
            mask[torch.as_tensor(keep, dtype=torch.int64).cpu()] = True
        starts = self.sequence_frame_offsets
        fps = tuple(int(mask[a:b].sum()) for a, b in zip(starts, starts[1:]))
        if not any(fps):
            raise ValueError("select_frames would keep no frame")
        token_mask = mask.to(self.coords.device)[self.global_frame_index]  # (N,)
        counts = self.tokens_per_frame.cpu()[mask]
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), counts.cumsum(0)]).to(self.frame_offsets.device)
        return SparseTensor(self.coords[token_mask], self.feats[token_mask], offsets, tuple(n for n in fps if n > 0))

    def to(self, *args, **kwargs) -> SparseTensor:
        """Move to a device and/or cast feats (`st.to("cuda")`, `st.to(torch.bfloat16)`); coords stay int64."""
        feats = self.feats.to(*args, **kwargs)
        dev = feats.device
        return SparseTensor(self.coords.to(dev), feats, self.frame_offsets.to(dev), self.frames_per_sequence)
