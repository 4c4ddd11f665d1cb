"""Frame-windowed anchored self-attention (docs/design.md §3.1) over flat per-frame tokens.

Rule, per sequence (sequences never see each other):
- a query of frame f >= 1 attends to the keys of frames g >= 1 with |f - g| <= window, and to frame 0 (the
  anchor) — one softmax over the union;
- a query of frame 0 attends only to frame 0, so the anchor's stream is the static model's own pass and its
  keys/values can be computed once and reused at every sampling step (`anchor_kv`).
With `anchor=False` the rule is a plain sliding window over all frames (frame 0 is an ordinary frame): the
"no anchor" ablation. A window >= the number of frames is full spatio-temporal attention.

Three backends give the same numbers within float tolerance:
- "dense": one boolean (N, N) mask + SDPA. Reference for tests; memory and time are quadratic in N.
- "loop":  per frame, gather its window + anchor keys and call plain SDPA (default; 2.4x faster than "dense"
           on CPU, close to ideal on GPU because each call is a large dense block).
- "flex":  FlexAttention with a block mask (CUDA only; compiled). On CPU it warns once and runs "loop".

The settings of one call (window, anchor, the anchor K/V cache, backend) travel as one `FrameAttention` from the
flow's caller to this kernel, so they are checked once, when it is made, and no signature on the way repeats them;
beside it goes only the one thing that differs per layer, that layer's anchor keys/values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import torch
import torch.nn.functional as F
from torch import Tensor

from helix4d.errors import ConfigError
from helix4d.sparse import SparseTensor

BACKENDS = ("loop", "dense", "flex")
AnchorKVPerSequence = Sequence[tuple[Tensor, Tensor]]  # per sequence (k (n0, H, D), v (n0, H, D))


@dataclass(frozen=True, eq=False)
class FrameLayout:
    """Where each frame's tokens lie in a flat token array, for one or more sequences.

    frame_offsets:       (T + 1,) int64; tokens of global frame j are rows frame_offsets[j]:frame_offsets[j+1].
    frames_per_sequence: number of frames of each sequence present in the array.
    anchor_included:     True: each sequence's frames are 0..F_s-1 (frame 0 = anchor is in the array).
                         False: they are 1..F_s (anchors live elsewhere, e.g. in an anchor K/V cache).
    """

    frame_offsets: Tensor
    frames_per_sequence: tuple[int, ...]
    anchor_included: bool = True
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "frames_per_sequence", tuple(int(n) for n in self.frames_per_sequence))
        if self.frame_offsets.ndim != 1 or self.frame_offsets.shape[0] != sum(self.frames_per_sequence) + 1:
            raise ValueError(
                f"frame_offsets {tuple(self.frame_offsets.shape)} does not match frames {self.frames_per_sequence}"
            )

    @classmethod
    def from_sparse(cls, st: SparseTensor, anchor_included: bool = True) -> FrameLayout:
        """Layout of a SparseTensor (set anchor_included=False when its anchor frames were dropped)."""
        return cls(st.frame_offsets, st.frames_per_sequence, anchor_included)

    @cached_property
    def offsets(self) -> list[int]:
        """frame_offsets as Python ints (read once, so loops never sync with the device)."""
        return [int(v) for v in self.frame_offsets.tolist()]

    @property
    def num_tokens(self) -> int:
        return self.offsets[-1]

    @property
    def first_frame(self) -> int:
        """Local index of each sequence's first frame in the array (0, or 1 without anchors)."""
        return 0 if self.anchor_included else 1

    @cached_property
    def sequence_frames(self) -> list[tuple[int, int]]:
        """Global frame range [start, end) of every sequence."""
        out, start = [], 0
        for n in self.frames_per_sequence:
            out.append((start, start + n))
            start += n
        return out

    @cached_property
    def local_frame_of_global(self) -> list[int]:
        """Local frame index of every global frame (T,)."""
        return [self.first_frame + j for n in self.frames_per_sequence for j in range(n)]

    def token_frame_index(self, device: torch.device | str | None = None) -> Tensor:
        """(N,) int64 local frame index of every token."""
        counts = self.frame_offsets.diff().cpu()
        return torch.tensor(self.local_frame_of_global, dtype=torch.int64).repeat_interleave(counts).to(device)

    def token_sequence_index(self, device: torch.device | str | None = None) -> Tensor:
        """(N,) int64 sequence of every token."""
        seq = torch.arange(len(self.frames_per_sequence)).repeat_interleave(torch.tensor(self.frames_per_sequence))
        return seq.repeat_interleave(self.frame_offsets.diff().cpu()).to(device)

    @cached_property
    def num_anchor_tokens(self) -> int:
        """Number of frame-0 tokens in the array (0 when anchors are not in it)."""
        if not self.anchor_included:
            return 0
        return sum(self.offsets[g0 + 1] - self.offsets[g0] for g0, _ in self.sequence_frames)

    def anchor_rows(self) -> list[slice]:
        """Per sequence, the rows of its anchor frame (requires anchor_included)."""
        if not self.anchor_included:
            raise ValueError("this layout holds no anchor frames")
        return [slice(self.offsets[g0], self.offsets[g0 + 1]) for g0, _ in self.sequence_frames]

    def anchor_token_mask(self, device: torch.device | str | None = None) -> Tensor:
        """(N,) bool, True for frame-0 tokens (all False when anchors are not in the array)."""
        return self.token_frame_index(device) == 0


@dataclass
class AnchorKV:
    """One layer's anchor keys/values, per sequence: (k (n0, H, Dh), v (n0, H, Dh)) after RMS norm and RoPE."""

    per_sequence: list[tuple[Tensor, Tensor]] = field(default_factory=list)

    @property
    def filled(self) -> bool:
        return bool(self.per_sequence)


@dataclass
class AnchorCache:
    """Anchor keys/values of every layer: `cache[i]` is the `AnchorKV` to hand to block i."""

    layers: list[AnchorKV]

    @classmethod
    def empty(cls, num_layers: int) -> AnchorCache:
        return cls([AnchorKV() for _ in range(num_layers)])

    def __getitem__(self, i: int) -> AnchorKV:
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)


@dataclass(frozen=True)
class FrameAttention:
    """How the frames of one flow call attend to each other (docs/design.md §3.1): frame f sees the frames within
    `window` of it and, with `anchor`, frame 0. `cache` holds the anchor's keys/values: filled from frame 0 when
    the tokens include it (`anchor_included`), read when they hold frames >= 1 only (sampling: the anchor is not
    recomputed at every step).

    `window` is checked here, once: an int >= 0, or None for the model's own. A None is filled in at one place,
    `FlowTransformer.forward`, with the flow's `FlowConfig.window`; generation never hands one down, as `Generation`
    has already made a `SamplingOptions.window` of None the model folder's (pipeline.json)."""

    window: int | None = None  # radius r; None: the flow's own, see above
    anchor: bool = True
    cache: AnchorCache | None = None
    anchor_included: bool = True
    backend: str = "loop"  # one of BACKENDS

    def __post_init__(self) -> None:
        if self.window is not None and (not isinstance(self.window, int) or isinstance(self.window, bool)):
            raise ValueError(f"window must be an int or None (the model's), got {self.window!r}")
        if self.window is not None and self.window < 0:
            raise ValueError(f"window must be >= 0, got {self.window}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown attention backend {self.backend!r}; choose one of {', '.join(BACKENDS)}")


def windowed_anchored_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    layout: FrameLayout,
    attention: FrameAttention,
    anchor_kv: AnchorKVPerSequence | None = None,
    scale: float | None = None,
) -> Tensor:
    """Attention of q/k/v (N, H, D) under the window + anchor rule of `attention`; returns (N, H, D).

    `attention.window` must be a number here (the flow fills in its own for None). `anchor_kv` (one (k, v) pair of
    shape (n0, H, D) per sequence: one layer's, which `attention.cache` holds for every layer) supplies cached
    anchor keys/values when `layout.anchor_included` is False, i.e. when q/k/v hold only the tokens of frames >= 1.
    """
    n = layout.num_tokens
    if q.ndim != 3 or q.shape[0] != n or k.shape[:2] != q.shape[:2] or v.shape[:2] != q.shape[:2]:
        raise ValueError(f"q/k/v must be (N={n}, H, D), got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    window, anchor, backend = attention.window, attention.anchor, attention.backend
    if window is None:
        raise ValueError("attention.window is None: name a window (FlowTransformer.forward fills in the flow's own)")
    needs_kv = anchor and not layout.anchor_included
    if needs_kv != (anchor_kv is not None):
        raise ValueError("pass anchor_kv exactly when anchor=True and the layout excludes the anchor frames")
    if anchor_kv is not None and len(anchor_kv) != len(layout.frames_per_sequence):
        raise ValueError(f"anchor_kv has {len(anchor_kv)} entries, need one per sequence")
    if backend == "flex" and q.device.type != "cuda":
        _warn_flex_fallback()
        backend = "loop"
    if backend == "loop":
        return _loop_attention(q, k, v, layout, window, anchor, anchor_kv, scale)
    if anchor_kv is not None:  # dense/flex: put the anchors back in, run, drop their outputs
        q, k, v, layout, keep = _insert_anchors(q, k, v, layout, anchor_kv)
        run = _dense_attention if backend == "dense" else _flex_attention
        return run(q, k, v, layout, window, anchor, scale)[keep]
    run = _dense_attention if backend == "dense" else _flex_attention
    return run(q, k, v, layout, window, anchor, scale)


def _sdpa(q: Tensor, k: Tensor, v: Tensor, scale: float | None) -> Tensor:
    """Plain SDPA on token-major tensors: (n, H, D) x (m, H, D) -> (n, H, D)."""
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], scale=scale
    )  # (1, H, n, D)
    return out[0].transpose(0, 1)  # (n, H, D)


def _loop_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    layout: FrameLayout,
    window: int,
    anchor: bool,
    anchor_kv: AnchorKVPerSequence | None,
    scale: float | None,
) -> Tensor:
    """Per frame: its queries against the keys of its window frames (contiguous) plus the anchor frame."""
    off, first = layout.offsets, layout.first_frame
    outs: list[Tensor] = []
    for s, (g0, g1) in enumerate(layout.sequence_frames):
        last = first + (g1 - g0) - 1  # last local frame of this sequence

        def rows(f_lo: int, f_hi: int) -> slice:  # tokens of local frames f_lo..f_hi (inclusive)
            return slice(off[g0 + f_lo - first], off[g0 + f_hi - first + 1])

        for f in range(first, last + 1):
            qs = rows(f, f)
            if qs.start == qs.stop:
                continue
            if anchor and f == 0:  # the anchor sees only itself
                ks = qs
                k_f, v_f = k[ks], v[ks]
            else:
                lo = max(f - window, first, 1 if anchor else 0)
                ks = rows(lo, min(f + window, last))
                k_f, v_f = k[ks], v[ks]  # (m, H, D)
                if anchor and layout.anchor_included and lo == 1:  # anchor frame is adjacent: one slice
                    ks = slice(off[g0], ks.stop)
                    k_f, v_f = k[ks], v[ks]
                elif anchor:
                    k0, v0 = anchor_kv[s] if anchor_kv is not None else (k[rows(0, 0)], v[rows(0, 0)])
                    k_f, v_f = torch.cat([k0, k_f]), torch.cat([v0, v_f])  # (n0 + m, H, D)
            outs.append(_sdpa(q[qs], k_f, v_f, scale))  # (n_f, H, D)
    return torch.cat(outs) if outs else q.new_zeros(0, q.shape[1], v.shape[2])


def _allowed(fq: Tensor, sq: Tensor, fk: Tensor, sk: Tensor, window: int, anchor: bool) -> Tensor:
    """The attention rule on frame and sequence indices (broadcasting); shared by "dense" and "flex"."""
    allowed = (sq == sk) & ((fq - fk).abs() <= window)
    if anchor:
        q_anchor, k_anchor = fq == 0, fk == 0
        allowed = (sq == sk) & torch.where(q_anchor, k_anchor, allowed | k_anchor)
    return allowed


def _dense_attention(
    q: Tensor, k: Tensor, v: Tensor, layout: FrameLayout, window: int, anchor: bool, scale: float | None
) -> Tensor:
    """Reference: one (N, N) boolean mask and one SDPA call."""
    f, s = layout.token_frame_index(q.device), layout.token_sequence_index(q.device)  # (N,), (N,)
    mask = _allowed(f[:, None], s[:, None], f[None, :], s[None, :], window, anchor)  # (N, N)
    out = F.scaled_dot_product_attention(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], attn_mask=mask, scale=scale
    )  # (1, H, N, D)
    return out[0].transpose(0, 1)  # (N, H, D)


_compiled_flex: Callable | None = None
_warned_flex_cpu = False


def _warn_flex_fallback() -> None:
    global _warned_flex_cpu
    if not _warned_flex_cpu:
        warnings.warn("the 'flex' attention backend needs CUDA; using 'loop' instead", stacklevel=3)
        _warned_flex_cpu = True


def flex_block_mask(layout: FrameLayout, window: int, anchor: bool, device: torch.device):
    """FlexAttention BlockMask of the rule, cached on the layout (every layer of a forward reuses it)."""
    from torch.nn.attention.flex_attention import create_block_mask

    key = ("flex", window, anchor, str(device))
    if key not in layout._cache:
        f, s = layout.token_frame_index(device), layout.token_sequence_index(device)

        def mask_mod(b, h, qi, ki):
            return _allowed(f[qi], s[qi], f[ki], s[ki], window, anchor)

        n = layout.num_tokens
        layout._cache[key] = create_block_mask(mask_mod, None, None, n, n, device=device)
    return layout._cache[key]


def _flex_attention(
    q: Tensor, k: Tensor, v: Tensor, layout: FrameLayout, window: int, anchor: bool, scale: float | None
) -> Tensor:
    """FlexAttention with a block mask; compiled on CUDA (uncompiled elsewhere, for tests only)."""
    global _compiled_flex
    from torch.nn.attention.flex_attention import flex_attention

    fn = flex_attention
    if q.device.type == "cuda":
        if _compiled_flex is None:
            _compiled_flex = torch.compile(flex_attention, dynamic=False)
        fn = _compiled_flex
    block_mask = flex_block_mask(layout, window, anchor, q.device)
    out = fn(
        q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], block_mask=block_mask, scale=scale
    )  # (1, H, N, D)
    return out[0].transpose(0, 1)  # (N, H, D)


def _insert_anchors(
    q: Tensor, k: Tensor, v: Tensor, layout: FrameLayout, anchor_kv: AnchorKVPerSequence
) -> tuple[Tensor, Tensor, Tensor, FrameLayout, Tensor]:
    """Rebuild full sequences (anchor frame first) from frames >= 1 tokens and cached anchor K/V.

    Anchor queries are zeros (their outputs are discarded). Returns q, k, v, the full layout and the (N_full,)
    bool mask of the original tokens.
    """
    off = layout.offsets
    qs, ks, vs, keep, counts = [], [], [], [], [0]
    for (g0, g1), (k0, v0) in zip(layout.sequence_frames, anchor_kv):
        rows = slice(off[g0], off[g1])
        qs += [q.new_zeros(k0.shape[0], *q.shape[1:]), q[rows]]
        ks += [k0, k[rows]]
        vs += [v0, v[rows]]
        keep += [torch.zeros(k0.shape[0], dtype=torch.bool), torch.ones(off[g1] - off[g0], dtype=torch.bool)]
        counts += [k0.shape[0]] + [off[g + 1] - off[g] for g in range(g0, g1)]
    full = FrameLayout(
        torch.tensor(counts, dtype=torch.int64).cumsum(0), tuple(n + 1 for n in layout.frames_per_sequence), True
    )
    return torch.cat(qs), torch.cat(ks), torch.cat(vs), full, torch.cat(keep).to(q.device)
