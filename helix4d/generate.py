"""`python -m helix4d.generate ARGS` is `helix4d generate ARGS`: the spelling torchrun needs to shard a batch,
`torchrun --nproc_per_node N -m helix4d.generate VIDEOS... -o OUT`."""

import sys

from helix4d.cli import main

if __name__ == "__main__":
    sys.argv.insert(1, "generate")
    main()
