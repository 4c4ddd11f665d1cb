"""Benchmark the generation pipeline: per-stage seconds, frames/s, peak memory and scaling with the frame count,
each size in a fresh process; same options as `helix4d bench pipeline`.

    python benchmarks/pipeline.py                                   # random tiny model, F = 4, 8, 16, 32, CPU
    python benchmarks/pipeline.py --preset demo --device cuda --steps 25 --frames 16,32,64
    python benchmarks/pipeline.py --model path/to/model --json

The whole report (attention backends, pipeline, O-Voxel resolutions): `helix4d bench all`.
"""

import sys

from helix4d.cli import main

if __name__ == "__main__":
    sys.argv = ["helix4d", "bench", "pipeline", *sys.argv[1:]]
    main()
