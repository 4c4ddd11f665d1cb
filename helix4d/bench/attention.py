"""Speed, useful throughput, memory and agreement of the windowed anchored attention backends.

Used by `helix4d bench attention`. "Useful" FLOPs count only the query/key pairs
the rule keeps (4 · pairs · head_dim · heads: QKᵀ and PV, 2 FLOPs per multiply-add), so a backend that computes
masked-out pairs (dense) is not rewarded for them.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass

import torch

from helix4d.nn.attention import FrameAttention, FrameLayout, windowed_anchored_attention
from helix4d.settings import WINDOW


@dataclass
class AttentionBenchRow:
    backend: str
    frames: int
    tokens_per_frame: int
    window: int
    heads: int
    head_dim: int
    ms: float
    useful_tflops: float
    peak_mem_mb: float | None  # None where it cannot be measured honestly (CPU)
    max_rel_err: float
    device: str
    dtype: str


def kept_pairs(layout: FrameLayout, window: int, anchor: bool = True) -> int:
    """Number of (query, key) pairs the window + anchor rule keeps (anchor counted once)."""
    total, off, first = 0, layout.offsets, layout.first_frame
    for g0, g1 in layout.sequence_frames:
        n = [off[g + 1] - off[g] for g in range(g0, g1)]  # tokens per local frame (index f - first)
        for i, n_q in enumerate(n):
            f = i + first
            if anchor and f == 0:
                total += n_q * n_q
                continue
            lo = max(f - window, first, 1 if anchor else 0)
            hi = min(f + window, first + len(n) - 1)
            keys = sum(n[lo - first : hi - first + 1]) + (n[0] if anchor and first == 0 else 0)
            total += n_q * keys
    return total


def _time_ms(fn, repeats: int, device: torch.device) -> float:
    fn()  # warm-up (compilation for flex, allocator)
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def run_attention_benchmark(
    device: str = "cpu",
    frames: list[int] | None = None,
    tokens: list[int] | None = None,
    window: int = WINDOW,
    heads: int = 16,
    head_dim: int = 64,
    repeats: int | None = None,
) -> list[AttentionBenchRow]:
    """Time every backend available on `device` for each frames × tokens-per-frame size (one sequence, anchor on).

    Defaults: CPU 16 frames × {256, 512} tokens in fp32 (finishes in well under a minute on 2 cores);
    CUDA 16 frames × {1024, 4096} tokens in bf16. max_rel_err = max|out − dense| / max|dense| in the same dtype.
    """
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    frames = frames or [16]
    tokens = tokens or ([1024, 4096] if cuda else [256, 512])
    repeats = repeats or (10 if cuda else 3)
    dtype = torch.bfloat16 if cuda else torch.float32
    backends = ["dense", "loop", "flex"] if cuda else ["dense", "loop"]  # dense first: it is the reference
    gen = torch.Generator(device=dev).manual_seed(0)
    rows = []
    for f in frames:
        for n in tokens:
            layout = FrameLayout(torch.arange(f + 1, dtype=torch.int64) * n, (f,))
            q, k, v = (torch.randn(f * n, heads, head_dim, generator=gen, device=dev, dtype=dtype) for _ in range(3))
            flops = 4 * kept_pairs(layout, window) * head_dim * heads
            ref = None
            for backend in backends:
                attention = FrameAttention(window, backend=backend)
                run = lambda: windowed_anchored_attention(q, k, v, layout, attention)  # noqa: E731
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats(dev)
                    base = torch.cuda.memory_allocated(dev)
                out = run()
                peak = (torch.cuda.max_memory_allocated(dev) - base) / 2**20 if cuda else None
                ms = _time_ms(run, repeats, dev)
                if ref is None:
                    ref = out.float()
                err = ((out.float() - ref).abs().max() / ref.abs().max()).item()
                rows.append(
                    AttentionBenchRow(
                        backend,
                        f,
                        n,
                        window,
                        heads,
                        head_dim,
                        ms,
                        flops / (ms * 1e-3) / 1e12,
                        peak,
                        err,
                        dev.type,
                        str(dtype).removeprefix("torch."),
                    )
                )
                del out
    return rows


def rows_as_dicts(rows: list[AttentionBenchRow]) -> list[dict]:
    return [asdict(r) for r in rows]


def print_attention_table(rows: list[AttentionBenchRow]) -> None:
    """A rich table of the rows plus one 'loop vs dense speed-up' line per size."""
    from rich.console import Console
    from rich.table import Table

    dev = rows[0].device if rows else "?"
    table = Table(title=f"windowed anchored attention ({dev}, {rows[0].dtype if rows else ''})")
    columns = ("backend", "frames", "tokens/frame", "window", "heads×dim", "ms", "useful TFLOP/s", "peak MB")
    columns += ("max rel err",)
    for col in columns:
        table.add_column(col, justify="left" if col == "backend" else "right")
    for r in rows:
        table.add_row(
            r.backend,
            str(r.frames),
            str(r.tokens_per_frame),
            str(r.window),
            f"{r.heads}×{r.head_dim}",
            f"{r.ms:.2f}",
            f"{r.useful_tflops:.3f}",
            "n/a" if r.peak_mem_mb is None else f"{r.peak_mem_mb:.0f}",
            f"{r.max_rel_err:.1e}",
        )
    console = Console(width=max(Console().width, 120))  # keep the table readable when piped
    console.print(table)
    by_size: dict[tuple[int, int], dict[str, float]] = {}
    for r in rows:
        by_size.setdefault((r.frames, r.tokens_per_frame), {})[r.backend] = r.ms
    for (f, n), ms in by_size.items():
        if "loop" in ms and "dense" in ms:
            console.print(f"loop vs dense speed-up ({f} frames × {n} tokens): {ms['dense'] / ms['loop']:.1f}×")
