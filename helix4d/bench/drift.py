"""Drift past the trained clip length: error against the ground truth by distance from frame 0, for one anchor
(frame 0) for the whole clip and for chunks that re-anchor on the previous chunk's last frame.

Long clips of the procedural world (`helix4d data synth --frames 64`; ground truth: the source meshes rebuilt from
each sequence's spec, as in the error budget) are generated in temporal mode with every `--chunks` setting (0: one
anchor for the whole clip; N: chunks of N frames, `helix4d generate --chunk N`), and with `--per-frame` in
per-frame mode too, the reference that cannot drift (every frame from the static model alone, one after another:
far slower on a CPU). The frames are scored in blocks of `--block` frames by our protocol, each block aligned on
its own, so a row reads how much quality is lost with the distance from the anchor; every setting sees the same
noise for the same frame.

Run: python -m helix4d.bench.drift DATA [--chunks 0,16] [--per-frame] [--sequences 9] [--block 16] [--json F]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helix4d.data.dataset import SequenceDataset, load_sequence
from helix4d.errors import InputError
from helix4d.eval.budget import ground_truth_meshes
from helix4d.eval.protocols import OursProtocol, evaluate_sequence
from helix4d.pipeline.helix4d import Helix4DPipeline
from helix4d.pipeline.options import SamplingOptions

METRICS = ("cd_3d", "f_score@0.02")


@dataclass
class DriftRow:
    """One generation setting: per block of frames, each metric averaged over the sequences; seconds per clip."""

    name: str
    sampling: SamplingOptions
    blocks: list[dict[str, list[float]]] = field(default_factory=list)  # per block: metric -> one per sequence
    seconds: list[float] = field(default_factory=list)

    def mean(self, block: int, metric: str) -> float:
        return float(np.mean(self.blocks[block][metric]))


def drift_settings(chunks: list[int], per_frame: bool, seed: int, steps: int | None) -> list[DriftRow]:
    """The rows: temporal with each chunk setting, then per-frame if asked for."""
    base = SamplingOptions(seed=seed, steps=steps)
    rows = [DriftRow("one anchor" if c == 0 else f"chunks of {c}", dataclasses.replace(base, chunk=c)) for c in chunks]
    return rows + ([DriftRow("per-frame", dataclasses.replace(base, mode="per-frame", chunk=0))] if per_frame else [])


def run_drift(
    dataset: Path,
    model: Path | None = None,
    chunks: list[int] = (0, 16),
    per_frame: bool = False,
    sequences: int | None = None,
    block: int = 16,
    steps: int | None = None,
    seed: int = 0,
) -> tuple[list[tuple[int, int]], list[DriftRow]]:
    """The blocks [start, stop) and every row's scores on the first `sequences` sequences of `dataset`."""
    data = SequenceDataset(dataset)
    entries = data.sequences[:sequences]
    if not entries:
        raise InputError(f"{dataset} holds no finished sequences; build it with `helix4d data synth --frames 64`")
    frames = min(e["frames"] for e in entries)
    blocks = [(a, min(a + block, frames)) for a in range(0, frames, block)]
    pipe = Helix4DPipeline.from_pretrained(model)
    rows = drift_settings(list(chunks), per_frame, seed, steps)
    for row in rows:
        row.blocks = [{m: [] for m in METRICS} for _ in blocks]
    protocol = OursProtocol()
    for i, entry in enumerate(entries):
        folder = data.root / entry["path"]
        sample = load_sequence(folder, range(frames))
        gt, _ = ground_truth_meshes(folder, sample["ovoxels"])
        for row in rows:
            clock = time.perf_counter()
            asset = pipe.generate(sample["images"].numpy(), row.sampling)
            row.seconds.append(time.perf_counter() - clock)
            for scores, (a, b) in zip(row.blocks, blocks):
                metrics = evaluate_sequence(asset.meshes[a:b], gt[a:b], protocol).metrics
                for m in METRICS:
                    scores[m].append(metrics[m])
            print(f"[{i + 1}/{len(entries)}] {sample['id']} {row.name}: {row.seconds[-1]:.1f} s", flush=True)
    return blocks, rows


def drift_table(blocks: list[tuple[int, int]], rows: list[DriftRow]) -> str:
    """Markdown: one line per setting, CD-3D and F@0.02 per block of frames."""
    spans = [f"{a}-{b - 1}" for a, b in blocks]
    head = "| setting | " + " | ".join(f"CD-3D {s}" for s in spans) + " | " + " | ".join(f"F {s}" for s in spans)
    lines = [head + " | s/clip |", "|---" * (1 + 2 * len(blocks) + 1) + "|"]
    for row in rows:
        cd = " | ".join(f"{row.mean(k, 'cd_3d'):.3f}" for k in range(len(blocks)))
        f = " | ".join(f"{row.mean(k, 'f_score@0.02'):.3f}" for k in range(len(blocks)))
        lines.append(f"| {row.name} | {cd} | {f} | {np.mean(row.seconds):.1f} |")
    return "\n".join(lines)


def drift_json(blocks: list[tuple[int, int]], rows: list[DriftRow]) -> dict[str, Any]:
    return {
        "blocks": [list(b) for b in blocks],
        "rows": [
            {
                "name": r.name,
                "chunk": r.sampling.chunk,
                "mode": r.sampling.mode,
                "blocks": r.blocks,
                "seconds": r.seconds,
            }
            for r in rows
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="a dataset of long clips (helix4d data synth --frames 64)")
    parser.add_argument("--model", type=Path, default=None, help="model folder (default: the shipped demo model)")
    parser.add_argument("--chunks", default="0,16", help="comma-separated chunk lengths; 0 = one anchor")
    parser.add_argument("--per-frame", action="store_true", help="add the per-frame reference row (slow)")
    parser.add_argument("--sequences", type=int, default=None, help="the first N sequences (default: all)")
    parser.add_argument("--block", type=int, default=16, help="frames per scored block")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write every sequence's scores here")
    args = parser.parse_args()
    chunks = [int(c) for c in args.chunks.split(",") if c.strip()]
    blocks, rows = run_drift(
        args.data, args.model, chunks, args.per_frame, args.sequences, args.block, args.steps, args.seed
    )
    print(drift_table(blocks, rows))
    if args.json:
        args.json.write_text(json.dumps(drift_json(blocks, rows), indent=2))


if __name__ == "__main__":
    main()
