"""Benchmark the windowed anchored attention backends; same options as `helix4d bench attention`.

python benchmarks/attention.py --device cuda --json
"""

import sys

from helix4d.cli import main

if __name__ == "__main__":
    sys.argv = ["helix4d", "bench", "attention", *sys.argv[1:]]
    main()
