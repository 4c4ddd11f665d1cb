"""The options of a generation, one dataclass each, shared by the CLI, the web app and the Python API.

`SamplingOptions` is how the three flows are sampled (what `Helix4DPipeline` takes); `GenerateOptions` is a whole
`helix4d generate` job: which frames, the sampling, the matte and what to write. Each default lives here or in the
module it belongs to (the texture side in `helix4d.settings`, the model's steps and window in its pipeline.json), and
`checked` runs the one table of rules (`helix4d.settings`) with the caller's names for the settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from helix4d.errors import InputError
from helix4d.export import DEFAULT_FORMATS, FORMATS, require_formats
from helix4d.io.matting import MattingOptions, check_matting
from helix4d.settings import CHUNK, check_settings


@dataclass(frozen=True)
class SamplingOptions:
    """How one generation samples its flows; None takes the model folder's own value (pipeline.json)."""

    seed: int = 0  # the same seed gives the same result
    steps: int | None = None  # sampling steps per stage
    cfg: float | None = None  # classifier-free guidance strength
    window: int | None = None  # temporal window radius r (frames attend to f-r..f+r and to the anchor)
    mode: str = "temporal"  # 'temporal' (Helix4D) or 'per-frame' (the static model on every frame)
    anchor: bool = True  # frame 0 as the cached anchor (False: the "no anchor" ablation)
    # frames per chunk, the anchor included: a longer clip is generated chunk by chunk, each chunk anchored on the
    # previous chunk's last (clean) frame, so memory stays bounded; 0: one anchor (frame 0) for the whole clip
    chunk: int = CHUNK

    def checked(self, names: Mapping[str, str] | None = None) -> SamplingOptions:
        """These options normalised (16.0 -> 16), or an InputError that names a setting as `names` spell it."""
        values = {key: getattr(self, key) for key in ("seed", "steps", "cfg", "window", "mode", "chunk")}
        return dataclasses.replace(self, **check_settings(values, names))


@dataclass(frozen=True)
class GenerateOptions:
    """One generate job besides its input, output folder, model and device. `frames`, `fps`, `start`, `end` pick
    the frames (`helix4d.io.video.read_video`); `texture_size` is the baked textures' side, 0 for vertex colours,
    None for the asset's grid's own (`helix4d.settings.texture_size_for`: 256² for the demo model)."""

    frames: int | None = None
    fps: float | None = None
    start: float | None = None
    end: float | None = None
    sampling: SamplingOptions = SamplingOptions()
    matting: MattingOptions = MattingOptions()
    formats: tuple[str, ...] = DEFAULT_FORMATS
    texture_size: int | None = None
    max_faces: int | None = None
    cleanup: bool = True

    def checked(
        self, names: Mapping[str, str] | None = None, matting_names: Mapping[str, str] | None = None
    ) -> GenerateOptions:
        """Every setting checked before any compute (formats and their extras, the matte's inputs too), named
        as the caller's user spells it (`names`: keys of `helix4d.settings.RULES`; `matting_names`: of
        `MattingOptions`)."""
        clip = {"max_frames": self.frames, "fps": self.fps, "start": self.start, "end": self.end}
        export = {"texture_size": self.texture_size, "max_faces": self.max_faces}
        checked = check_settings(clip | export, names)
        unknown = set(self.formats) - set(FORMATS)
        if unknown or not self.formats:
            flag = (names or {}).get("formats", "formats")
            raise InputError(
                f"{flag} takes a comma-separated subset of {','.join(FORMATS)}, got {','.join(self.formats)}"
            )
        require_formats(self.formats)
        check_matting(self.matting, dict(matting_names or {}))
        return dataclasses.replace(
            self,
            frames=checked["max_frames"],
            fps=checked["fps"],
            start=checked["start"],
            end=checked["end"],
            sampling=self.sampling.checked(names),
            texture_size=checked["texture_size"],
            max_faces=checked["max_faces"],
        )

    def settings(self) -> dict[str, Any]:
        """The options as `result.json` records them."""
        s, m = self.sampling, self.matting
        return {
            "frames": self.frames, "fps": self.fps, "start": self.start, "end": self.end,
            "steps": s.steps, "cfg": s.cfg, "window": s.window, "seed": s.seed, "mode": s.mode, "chunk": s.chunk,
            "formats": list(self.formats), "texture_size": self.texture_size, "max_faces": self.max_faces,
            "cleanup": self.cleanup, "matting": m.method, "mask": m.mask and str(m.mask),
            "matting_model": m.model and str(m.model), "stabilise": m.stabilise,
        }  # fmt: skip
