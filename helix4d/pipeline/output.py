"""Writing a generated `Asset4D` to an output folder, all or nothing.

Everything goes into a hidden temporary folder beside the destination, which is renamed into place only when
every file is written, so a failed or interrupted run never leaves partial results where the user looks.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from helix4d.errors import InputError
from helix4d.pipeline.helix4d import Asset4D


def prepare_output(out: Path, overwrite: bool) -> None:
    """Fail early (before any compute) when the destination cannot be used."""
    if out.exists() and not out.is_dir():
        raise InputError(f"output {out} exists and is a file; pass a folder path")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"output folder {out} is not empty; pass --overwrite or choose another folder")


def write_asset(asset: Asset4D, out: Path, settings: dict, overwrite: bool = False) -> Path:
    """Per-frame meshes under `frames/` plus `result.json`; returns the final folder."""
    prepare_output(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        frames_dir = tmp / "frames"
        frames_dir.mkdir()
        names = []
        for i, mesh in enumerate(asset.meshes):
            name = f"frames/frame_{i:04d}.glb"
            mesh.export(tmp / name)
            names.append(name)
        result = {
            "settings": settings,
            "frames": len(asset.meshes),
            "fps": asset.fps,
            "times": [float(t) for t in asset.times],
            "meshes": names,
            "faces_per_frame": [int(len(m.faces)) for m in asset.meshes],
            **asset.metadata,
        }
        (tmp / "result.json").write_text(json.dumps(result, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
