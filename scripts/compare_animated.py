"""Animated GLB with tracked vertices against the node-switching layout (one mesh and texture pair per frame).

    python scripts/compare_animated.py examples/*.mp4
    python scripts/compare_animated.py data/heldout/shard-000/*/video.mp4

Every video is generated once with `helix4d generate`'s defaults (textured, clean-up on, the shipped model); the
same meshes are then exported as `animated.glb` twice: with topology segments and tracking (the default) and
with `tracking=None`. Prints one Markdown row per video: segments and the frames where they are cut, the largest
tracked-to-per-frame CD, both sizes and their ratio (the README's table).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from helix4d.export import CleanupConfig, ExportedFiles, export_asset, ovoxel_sampler
from helix4d.export.tracking import TrackingConfig
from helix4d.pipeline import Helix4DPipeline, SamplingOptions


def sizes(pipe: Helix4DPipeline, video: Path, work: Path) -> tuple[list[int], float, float, float]:
    """(the frames where a segment starts, largest CD, tracked MB, node-switching MB) for one video."""
    asset = pipe(str(video), SamplingOptions(seed=0))
    samplers = [ovoxel_sampler(v) if len(v) else None for v in asset.ovoxels]

    def export(name: str, tracking: TrackingConfig | None) -> ExportedFiles:
        out = work / f"{video.parent.name}-{video.stem}-{name}"
        return export_asset(
            asset.meshes,
            out,
            asset.fps,
            {"animated"},
            attribute_fns=samplers,
            cleanup=CleanupConfig(),
            tracking=tracking,
        )

    tracked, nodes = export("tracked", TrackingConfig()), export("nodes", None)
    largest = max((s.max_cd for s in tracked.segments), default=0.0)
    return (
        [s.start for s in tracked.segments],
        largest,
        tracked.animated.stat().st_size / 1e6,
        nodes.animated.stat().st_size / 1e6,
    )


def main(videos: list[str]) -> None:
    pipe = Helix4DPipeline.from_pretrained()
    columns = [
        "video",
        "segments (cut at frames)",
        "largest CD to the per-frame mesh",
        "animated GLB",
        "node-switching",
    ]
    print("| " + " | ".join([*columns, "smaller by"]) + " |\n" + "|---" * (len(columns) + 1) + "|")
    with tempfile.TemporaryDirectory() as work:
        for video in map(Path, videos):
            starts, largest, tracked, nodes = sizes(pipe, video, Path(work))
            name = video.stem if video.stem != "video" else video.parent.name
            cuts = f" ({', '.join(map(str, starts[1:]))})" if len(starts) > 1 else ""
            row = [name, f"{len(starts)}{cuts}", f"{largest:.3f}", f"{tracked:.1f} MB", f"{nodes:.1f} MB"]
            print("| " + " | ".join([*row, f"{nodes / tracked:.1f}×"]) + " |")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
