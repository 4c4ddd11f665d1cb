"""Writing a generated `Asset4D` to an output folder, all or nothing.

Everything goes into a hidden temporary folder beside the destination, which is renamed into place only when
every file is written, so a failed or interrupted run never leaves partial results where the user looks. Which
folders may be written at all is `helix4d.io.files.check_output_dir`'s policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, fields, replace
from pathlib import Path

from helix4d.export import CleanupConfig, ExportedFiles, RigConfig, export_asset, ovoxel_sampler
from helix4d.io.files import atomic_dir, check_output_dir
from helix4d.pipeline.helix4d import Asset4D
from helix4d.pipeline.options import GenerateOptions
from helix4d.settings import texture_size_for


def prepare_output(out: Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> None:
    """Fail early (before any compute) when the destination cannot or must not be written; `inputs` are the
    paths the run reads (the video, the model folder), which the output may not be or hold."""
    check_output_dir(out, inputs=inputs, overwrite=overwrite)


def export_estimate(frames: int, options: GenerateOptions) -> int:
    """A low estimate of the bytes `write_asset` writes for `frames` frames, so a disk that clearly cannot hold them
    is refused before the compute (`helix4d.io.files.check_free_space`). Measured on demo-model assets (512²
    textures, 1-2k faces a frame): a per-frame GLB is 0.27-0.40 MB and the whole folder of glb, animated and rig
    0.3-0.45 MB a frame; the estimate takes one copy of each frame's textures at half a byte a texel (the
    smallest grid-matched side when the model decides) and 64 kB of mesh, plus 1 MB, which stays below every
    folder measured."""
    side = texture_size_for(0) if options.texture_size is None else options.texture_size
    texels = side**2
    return frames * (texels // 2 + 64_000) + 1_000_000


def texture_side(options: GenerateOptions, resolution: int) -> int | None:
    """The side the asset's textures are baked at (None: vertex colours): the option, else its grid's own."""
    if options.texture_size is None:
        return texture_size_for(resolution)
    return options.texture_size or None


def write_asset(
    asset: Asset4D, out: Path, settings: dict, options: GenerateOptions = GenerateOptions(), overwrite: bool = False
) -> ExportedFiles:
    """The export folder layout of `helix4d.export` (per-frame GLB, animated GLB, rigged GLB, USD, preview:
    `options.formats`) plus `result.json`; textures are baked from the O-Voxels' own attributes, surfaces cleaned
    unless `options.cleanup` is off, rigs held to the O-Voxel grid's resolution. Returns the files written, at
    their final place in `out`."""
    prepare_output(out, overwrite, inputs=(asset.metadata.get("source"),))
    side = texture_side(options, asset.ovoxels[0].resolution if asset.ovoxels else 0)
    with atomic_dir(out) as tmp:
        clock = time.perf_counter()
        files = export_asset(
            asset.meshes,
            tmp,
            fps=asset.fps,
            formats=options.formats,
            texture_size=side,
            max_faces=options.max_faces,
            attribute_fns=[ovoxel_sampler(v) if len(v) else None for v in asset.ovoxels],
            input_frames=asset.input_frames,
            input_box=asset.metadata.get("object_box"),
            cleanup=CleanupConfig() if options.cleanup else None,
            rig=RigConfig(resolution=asset.ovoxels[0].resolution) if asset.ovoxels else RigConfig(),
        )
        seconds = asset.metadata.setdefault("seconds", {})
        seconds["export"] = time.perf_counter() - clock
        seconds["total"] = seconds.get("load_and_generate", 0.0) + seconds["export"]
        result = {
            "settings": settings,
            "texture_side": side or 0,  # the side baked (settings say what was asked: none for the grid's own)
            "frames": len(asset.meshes),
            "fps": asset.fps,
            "times": [float(t) for t in asset.times],
            "files": sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()),
            "faces_per_frame": [int(len(m.faces)) for m in asset.meshes],
            "segments": [asdict(s) for s in files.segments],
            "rigs": [asdict(r) for r in files.rigs],
            **asset.metadata,
        }
        (tmp / "result.json").write_text(json.dumps(result, indent=2))
    moved = {f.name: getattr(files, f.name) for f in fields(files) if isinstance(getattr(files, f.name), Path)}
    return replace(
        files,
        frames=[out / p.relative_to(tmp) for p in files.frames],
        **{k: out / p.relative_to(tmp) for k, p in moved.items()},
    )
