"""helix4d: turn a video of an object into a 4D asset (one textured mesh per frame, coherent over time)."""

__version__ = "0.8.0"  # a release is a shipped demo model (CHANGELOG.md): it bumps with the weights
