"""On-disk format of a helix4d 4D training dataset (what `helix4d data synth` / `data build` write).

```
DATASET/
  manifest.json                 {"format": "helix4d-dataset", "version": 1,
                                 "settings": {"resolution": R, "image_size": S, "frames": F, "views": K, "fps": fps},
                                 "sequences": [{"id", "path": "shard-000/<id>", "kind", "frames"}, ...],
                                 "failures": [{"item", "error"}, ...]}
  shard-000/                    sequences 0..999 of the run that wrote them (SHARD_SIZE per shard)
    <id>/
      meta.json                 see below
      ovoxels.npz               every frame's O-Voxel, lossless (see `pack_ovoxels`)
      views/v00/0000.png        RGBA condition renders, straight alpha, transparent background:
      views/v00/0001.png ...    views/vKK/FFFF.png for view KK and frame FFFF
      video.mp4                 view 0 over white, at `fps`: a realistic "input video" and for eyeballing
    .<id>.tmp/                  a sequence being written (renamed to <id>/ when complete)
  shard-001/ ...
```

meta.json: {"id", "kind", "source" ({"type": "synthetic", "spec": SceneSpec dict} or {"type": "asset", "path"}),
"settings" (as in the manifest), "times" (F seconds from the first frame), "cameras" ([{"eye", "target", "up",
"fov_deg"}] per view), "normalization" ({"matrix": 4x4 row-major, source coordinates -> unit cube; the identity
for synthetic sources, whose `build_frames(spec)` output already is the unit-cube sequence}), "voxels" (active
voxels per frame)}.

Cameras: view 0 is the conditioning camera, a fixed front camera (azimuth 0, elevation 15 deg, fov 40 deg) at the
distance where the unit cube's bounding sphere just fits the image; views 1..K-1 continue the same orbit at even
azimuth steps (360/K deg), for multi-view evaluation. World is y-up and the object's front faces +z (see
`helix4d.render.camera`).

Writes are crash-safe: a sequence is written into `.<id>.tmp/` and renamed with `os.replace` when complete, and
`manifest.json` is replaced atomically; a sequence counts as finished iff its final folder holds `meta.json`, so an
interrupted build resumes by skipping finished sequences and the manifest is rebuilt from the folders present.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from helix4d.errors import ConfigError, InputError
from helix4d.io.files import write_json_atomic
from helix4d.ovoxel import OVoxel
from helix4d.render.camera import CONDITION_ELEVATION_DEG, CONDITION_FOV_DEG, Camera, fit_radius, orbit_cameras

FORMAT = "helix4d-dataset"
VERSION = 1
SHARD_SIZE = 1000
MANIFEST = "manifest.json"
META = "meta.json"
OVOXELS = "ovoxels.npz"
VIDEO = "video.mp4"
LOOKS = ("canonical", "random", "mixed", "unseen")  # how sequences are seen (helix4d.data.look)
RENDERERS = ("raster", "cycles")  # what draws them (helix4d.render, helix4d.data.cycles)


@dataclass(frozen=True)
class DatasetSettings:
    """What every sequence of one dataset shares; stored in the manifest and each meta.json."""

    resolution: int = 64  # O-Voxel grid R
    image_size: int = 128  # square renders S x S
    frames: int = 16  # F frames per sequence
    views: int = 4  # K rendered views (view 0 = conditioning camera)
    fps: float = 8.0  # frame rate of the sampled frames and of video.mp4
    look: str = "canonical"  # camera, lights, colours, sensor: 'canonical', 'random', 'mixed' or 'unseen' (data.look)
    renderer: str = "raster"  # 'raster' (helix4d.render, OpenGL) or 'cycles' (Blender's path tracer, data.cycles)

    def __post_init__(self) -> None:
        checks = {"resolution": 2, "image_size": 8, "frames": 1, "views": 1}
        for name, low in checks.items():
            if getattr(self, name) < low:
                raise InputError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not self.fps > 0:
            raise InputError(f"fps must be > 0, got {self.fps}")
        for name, allowed in (("look", LOOKS), ("renderer", RENDERERS)):
            if getattr(self, name) not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSettings:
        defaults = {"look": "canonical", "renderer": "raster"}  # datasets built before these settings existed
        return cls(
            **{
                f.name: d[f.name] if f.name in d or f.name not in defaults else defaults[f.name]
                for f in dataclasses.fields(cls)
            }
        )


# ------------------------------------------------------------------------------------------------ cameras


def dataset_cameras(views: int) -> list[Camera]:
    """View 0: the conditioning front camera; views 1..K-1: the rest of its orbit (even azimuth steps)."""
    return orbit_cameras(views, radius=fit_radius(), elevation_deg=CONDITION_ELEVATION_DEG, fov_deg=CONDITION_FOV_DEG)


def camera_to_dict(cam: Camera) -> dict[str, Any]:
    return {"eye": list(cam.eye), "target": list(cam.target), "up": list(cam.up), "fov_deg": cam.fov_deg}


def camera_from_dict(d: dict[str, Any]) -> Camera:
    return Camera(eye=tuple(d["eye"]), target=tuple(d["target"]), up=tuple(d["up"]), fov_deg=float(d["fov_deg"]))


# ------------------------------------------------------------------------------------------------ paths


def shard_name(index: int) -> str:
    """Shard folder of the index-th sequence of a run: shard-000 holds 0..999, shard-001 1000..1999, ..."""
    return f"shard-{index // SHARD_SIZE:03d}"


def view_png(sequence_dir: Path, view: int, frame: int) -> Path:
    return sequence_dir / "views" / f"v{view:02d}" / f"{frame:04d}.png"


def temp_dir(final: Path) -> Path:
    return final.parent / f".{final.name}.tmp"


def is_dataset(root: Path) -> bool:
    """Whether `root` holds a dataset, complete or interrupted, which a build with the same settings adds to."""
    return (root / MANIFEST).is_file() or any(p.is_dir() for p in root.glob("shard-*"))


def is_finished(sequence_dir: Path) -> bool:
    return (sequence_dir / META).is_file()


def start_sequence(final: Path) -> Path:
    """An empty temp folder for `final` (leftovers of an interrupted write are removed)."""
    tmp = temp_dir(final)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def finish_sequence(tmp: Path, final: Path) -> None:
    """Publish a complete temp folder under its final name (atomic on one file system)."""
    if final.exists():  # an unfinished folder (no meta.json) from an older, non-atomic copy: replace it
        shutil.rmtree(final)
    os.replace(tmp, final)


def finished_sequences(root: Path) -> dict[str, dict[str, Any]]:
    """Manifest entries of every finished sequence under `root`, by id (meta.json is the source of truth)."""
    found = {}
    for meta_path in sorted(root.glob(f"shard-*/*/{META}")):
        if meta_path.parent.name.startswith("."):
            continue
        meta = read_json(meta_path)
        found[meta["id"]] = {
            "id": meta["id"],
            "path": meta_path.parent.relative_to(root).as_posix(),
            "kind": meta["kind"],
            "frames": len(meta["times"]),
        }
    return found


# ------------------------------------------------------------------------------------------------ json


def read_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)


def write_manifest(
    root: Path, settings: DatasetSettings, sequences: list[dict[str, Any]], failures: list[dict[str, str]]
) -> Path:
    path = root / MANIFEST
    write_json_atomic(
        path,
        {
            "format": FORMAT,
            "version": VERSION,
            "settings": settings.to_dict(),
            "sequences": sorted(sequences, key=lambda s: s["path"]),
            "failures": failures,
        },
    )
    return path


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a dataset folder; `InputError` when `root` is not a helix4d dataset."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise InputError(
            f"{root} is not a helix4d dataset (no {MANIFEST}) — build one with `helix4d data synth` or "
            "`helix4d data build`, or rerun the interrupted build to write its manifest"
        )
    try:
        manifest = read_json(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path} ({exc}) — rerun the build command to rewrite it") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path} is not a helix4d dataset manifest (format is not {FORMAT!r})")
    if manifest.get("version") != VERSION:
        raise InputError(f"{path} has dataset version {manifest.get('version')}; this helix4d reads version {VERSION}")
    return manifest


def check_settings(root: Path, settings: DatasetSettings) -> None:
    """Refuse to add sequences built with other settings to an existing (or interrupted) dataset."""
    if (root / MANIFEST).is_file():
        old = DatasetSettings.from_dict(read_manifest(root)["settings"])
    else:
        meta = next(root.glob(f"shard-*/*/{META}"), None)
        if meta is None:
            return
        old = DatasetSettings.from_dict(read_json(meta)["settings"])
    if old != settings:
        raise ConfigError(
            f"{root} was built with {old.to_dict()}, not {settings.to_dict()} — use a new output folder, "
            "or the same settings to resume or extend it"
        )


# ------------------------------------------------------------------------------------------------ O-Voxels


def pack_ovoxels(ovoxels: list[OVoxel]) -> dict[str, np.ndarray]:
    """All frames' O-Voxels as flat arrays: each per-voxel field concatenated over frames (frame f owns rows
    offsets[f]:offsets[f+1]), each scalar field (resolution, ...) as one value per frame."""
    if not ovoxels:
        raise InputError("a sequence needs at least one O-Voxel frame")
    counts = [len(ov) for ov in ovoxels]
    packed = {"offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)}  # (F + 1,)
    for field in dataclasses.fields(OVoxel):
        values = [getattr(ov, field.name) for ov in ovoxels]
        packed[field.name] = np.concatenate(values) if isinstance(values[0], np.ndarray) else np.asarray(values)
    return packed


def unpack_ovoxels(packed: Any, frames: range | None = None) -> list[OVoxel]:
    """O-Voxels of `frames` (default all) from `pack_ovoxels` arrays or an opened ovoxels.npz."""
    offsets = packed["offsets"]
    frames = range(len(offsets) - 1) if frames is None else frames
    arrays = {f.name: packed[f.name] for f in dataclasses.fields(OVoxel)}
    out = []
    for i in frames:
        lo, hi = offsets[i], offsets[i + 1]
        out.append(OVoxel(**{k: v[i] if k in _SCALAR_FIELDS else v[lo:hi] for k, v in arrays.items()}))
    return out


def save_ovoxels(path: Path, ovoxels: list[OVoxel]) -> None:
    np.savez_compressed(path, **pack_ovoxels(ovoxels))


def load_ovoxels(path: Path, frames: range | None = None) -> list[OVoxel]:
    with np.load(path) as z:
        return unpack_ovoxels(z, frames)


# per-frame fields (resolution, oriented, ...) as opposed to per-voxel arrays
_SCALAR_FIELDS = {f.name for f in dataclasses.fields(OVoxel) if f.type in ("int", "bool", "float", int, bool, float)}
