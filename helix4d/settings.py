"""The generation settings a user gives, checked where they enter, by one table of rules.

The CLI, the Python API (`Helix4DPipeline`, `read_video`) and the web app take the same numbers; each checks them
with `check_settings` before any work, so a rule is written once and cannot drift between them. Each front end
names a setting its own way (`--frames`, `max_frames`, "Frames"), so the caller says how its user typed it, and
the message names exactly that. NaN and infinity are refused everywhere: `--cfg nan` would otherwise run two
stages and end in an unrelated error deep inside the model. So are whole numbers beyond 64 bits and counts beyond
reason (`--steps 99999999999999999999`), which would otherwise overflow inside torch or FFmpeg after minutes of work.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from helix4d.errors import InputError

MODES = ("temporal", "per-frame")
WINDOW = 1  # temporal window radius r (frames >= 1 attend to f-r..f+r and to the anchor): new models' default
# frames per chunk, its anchor included: longer clips are generated chunk by chunk (helix4d.pipeline); one anchor
# did not drift over 64 frames (python -m helix4d.bench.drift) while each re-anchoring cost a little, so 64
CHUNK = 64
TEXTURE_SIZE = 512  # side of the baked textures of `helix4d.export.export_asset`'s plain meshes (no O-Voxel grid)
# a generated asset's textures follow its O-Voxel grid instead (`texture_size_for`): 8 texels a cell carry the
# O-Voxel's colours within CIE76 dE 0.4 of the source (0.27 at 16; demo model, examples/split.mp4), so more only
# costs time and disk: 512² was 3x the bake time of 256² for the demo model's 32³ grid
TEXELS_PER_CELL = 8
MIN_TEXTURE_SIZE = 8  # the smallest atlas the baker (helix4d.export.bake) packs charts into with their padding
MAX_STEPS = 10_000  # sampling steps per stage: models use tens; ten thousand is hours per stage, more is a typo
LONGEST_VIDEO = 1e7  # seconds (about 116 days): --start/--end beyond it are typos (and overflow FFmpeg's seek)
MAX_INT = 2**63 - 1  # every whole number ends in a 64-bit integer (torch, numpy, FFmpeg)
MATTINGS = ("auto", "alpha", "mask", "model", "u2net", "border", "none")  # helix4d.io.matting


def texture_size_for(resolution: int) -> int:
    """The default texture side of an asset on a `resolution`³ O-Voxel grid: TEXELS_PER_CELL texels a cell,
    rounded up to a power of two and held to [256, 2048] (256 for the demo model's 32³, 2048 for TRELLIS.2's
    512³ and up)."""
    side = 1 << max(int(resolution) * TEXELS_PER_CELL - 1, 1).bit_length()
    return min(max(side, 256), 2048)


@dataclass(frozen=True)
class Rule:
    """One setting: an int or a finite float in [low, high] (`low_open`: low itself excluded) or equal to one of
    `also` (a value that switches something off, such as texture size 0), or one of `choices`. Integral floats pass
    as ints: sliders and JSON send 16.0 for 16. Ints are held to 64 bits."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    also: tuple[float, ...] = ()
    choices: tuple[str, ...] = ()
    hint: str = ""  # appended to a range error: how to fix it

    def check(self, value: Any, name: str) -> Any:
        """`value` as `kind`, or an InputError naming the setting `name`."""
        if self.choices:
            if value not in self.choices:
                raise InputError(f"{name} must be one of {', '.join(self.choices)}; got {value!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InputError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise InputError(f"{name} must be a finite number, got {value}")
        if self.kind is int:
            if value != int(value):
                raise InputError(f"{name} must be a whole number, got {value}")
            value = int(value)
        else:
            value = float(value)
        if value in self.also:
            return value
        shown = f"{value:g}" if isinstance(value, float) else str(value)  # an int may be too large for a float
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        if not low_ok or (self.high is not None and value > self.high):
            bound = [f"> {self.low:g}" if self.low_open else f">= {self.low:g}"] if self.low is not None else []
            bound += [f"<= {self.high:g}"] if self.high is not None else []
            either = "".join(f"{a:g}, or " for a in self.also)
            raise InputError(f"{name} must be {either}{' and '.join(bound)}, got {shown}{self.hint}")
        if isinstance(value, int) and abs(value) > MAX_INT:
            raise InputError(f"{name} must fit in 64 bits (at most {MAX_INT} in size), got {shown}{self.hint}")
        return value


_UNSET = " — leave it unset for the default"
RULES: dict[str, Rule] = {
    # which frames of the video
    "max_frames": Rule(int, low=1, hint=_UNSET + " (every frame)"),
    "fps": Rule(float, low=0, low_open=True, hint=_UNSET + " (the source frame rate)"),
    "start": Rule(float, low=0, high=LONGEST_VIDEO, hint=" (seconds from the start of the video)"),
    "end": Rule(float, low=0, high=LONGEST_VIDEO, hint=" (seconds from the start of the video)"),
    "max_side": Rule(int, low=1),
    # how the object is cut out of them
    "matting": Rule(str, choices=MATTINGS),
    # sampling
    "steps": Rule(int, low=1, high=MAX_STEPS, hint=_UNSET + " (the model's)"),
    "cfg": Rule(float, low=0, hint=" (1 turns guidance off)"),
    "window": Rule(int, low=0, hint=" (0: the anchor and the frame itself)"),
    "chunk": Rule(int, low=2, also=(0,), hint=" (0: one anchor for the whole clip; else the anchor and new frames)"),
    "seed": Rule(int),
    "mode": Rule(str, choices=MODES),
    # export
    "texture_size": Rule(
        int, low=MIN_TEXTURE_SIZE, high=8192, also=(0,), hint=" (0: vertex colours; unset: the model's grid decides)"
    ),
    "max_faces": Rule(int, low=1),
}


def check_settings(values: Mapping[str, Any], names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`values` (keys of `RULES`; None = unset, passed through) checked and normalised (16.0 -> 16), plus the one
    rule between two settings, end >= start. `names[key]` is how the caller's user wrote each setting (a CLI flag,
    a UI label); by default the key itself, which is the Python keyword."""
    names = {key: key for key in RULES} | dict(names or {})
    checked = {key: None if value is None else RULES[key].check(value, names[key]) for key, value in values.items()}
    start, end = checked.get("start"), checked.get("end")
    if start is not None and end is not None and end < start:
        raise InputError(
            f"{names['end']} ({end:g}) is before {names['start']} ({start:g}) — swap them or leave one unset"
        )
    return checked
