"""`python -m helix4d.train CONFIG [--resume] [--out DIR] [--device D]`: the same as `helix4d train`, in the
form torchrun launches (`torchrun ... -m helix4d.train config.json`)."""

import sys

from helix4d.cli import main

sys.argv = ["python -m helix4d.train", "train", *sys.argv[1:]]
main()
