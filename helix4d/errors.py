"""One exception family for every mistake a user can make.

The CLI turns any `Helix4DError` into a one-line message and exit code 2, so a user never sees a traceback
for bad input. Each message should say what was wrong and how to fix it.
"""


class Helix4DError(Exception):
    """Base class of all user-facing helix4d errors."""


class InputError(Helix4DError):
    """A user-supplied file or value cannot be used (missing, empty, corrupt, out of range)."""


class ConfigError(Helix4DError):
    """A configuration or model folder is invalid or inconsistent."""


class BackendUnavailableError(Helix4DError):
    """An optional backend or dependency (FlexAttention, CUDA, Blender, ...) is not available here."""


class GenerationError(Helix4DError):
    """A generation stage produced nothing usable (no voxels in any frame, NaN/inf values): broken weights or
    settings the model cannot follow."""


class TrainingError(Helix4DError):
    """A training run cannot go on without producing a broken model (NaN/inf losses): it stops and installs
    nothing."""
