"""Before/after picture of the export's surface clean-up on generated frames of a held-out dataset.

    python scripts/compare_cleanup.py OUT.png data/heldout [--model DIR] [--frame 8] [--kinds sheet,merge,rigid]

One row per sequence: the condition image, then the temporal pipeline's mesh of one frame as generated and after
`clean_mesh`, each from the conditioning camera and from behind (where the holes of the far side show), with the
frame's hole rims (boundary edges) before and after in the file's log line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from compare_examples import tile  # this folder is on sys.path when run as a script
from PIL import Image

from helix4d.data.dataset import SequenceDataset, load_sequence
from helix4d.eval.budget import boundary_edge_count
from helix4d.export.cleanup import clean_mesh
from helix4d.ovoxel import ovoxel_to_mesh
from helix4d.pipeline.helix4d import Helix4DPipeline
from helix4d.pipeline.options import SamplingOptions
from helix4d.render import Renderer
from helix4d.render.camera import CONDITION_ELEVATION_DEG, CONDITION_FOV_DEG, fit_radius, orbit_cameras

SIZE = 192


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("data")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped demo model)")
    parser.add_argument("--frame", type=int, default=8)
    parser.add_argument("--kinds", default="sheet,merge,rigid,transparent")
    args = parser.parse_args()

    data = SequenceDataset(Path(args.data))
    kinds = args.kinds.split(",")
    entries = sorted((e for e in data.sequences if e["kind"] in kinds), key=lambda e: kinds.index(e["kind"]))
    pipe = Helix4DPipeline.from_pretrained(args.model)
    renderer = Renderer(256, 256)
    views = orbit_cameras(  # the conditioning camera and the one opposite it
        2, radius=fit_radius(CONDITION_FOV_DEG), elevation_deg=CONDITION_ELEVATION_DEG, fov_deg=CONDITION_FOV_DEG
    )
    rows = []
    for entry in entries:
        sample = load_sequence(data.root / entry["path"], None)
        with torch.no_grad():
            asset = pipe.generate(sample["images"].numpy(), SamplingOptions(seed=0, steps=12))
        raw = ovoxel_to_mesh(asset.ovoxels[args.frame])
        clean = clean_mesh(raw)
        image = (sample["images"][args.frame].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        renders = [tile(renderer.render([m], c, background=(0, 0, 0, 0)), SIZE) for m in (raw, clean) for c in views]
        rows.append([tile(image, SIZE), *renders])
        print(f"{entry['id']} frame {args.frame}: rims {boundary_edge_count(raw)} -> {boundary_edge_count(clean)}")
    sheet = Image.new("RGB", (SIZE * len(rows[0]), SIZE * len(rows)), "white")
    for i, tiles in enumerate(rows):
        for j, t in enumerate(tiles):
            sheet.paste(t, (j * SIZE, i * SIZE))
    sheet.save(args.out)
    print(f"wrote {args.out}: rows = sequences; columns = input, generated (front, back), cleaned (front, back)")


if __name__ == "__main__":
    main()
