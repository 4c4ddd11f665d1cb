"""asset.fbx: the rigged asset (`rigged.glb`) converted by Blender, for the engines and DCCs that take FBX.

Blender (`bpy`, the optional extra `helix4d[blender]`) reads rigged.glb with its own glTF importer: a rigged
segment becomes an armature (one bone a joint) with its skinned mesh and the joints' action, a fall-back segment
a mesh with shape keys, and every segment's visibility switch an animated empty above it. Its FBX exporter then
writes all of it, the animation baked once a frame over the clip's frames (frame k of the clip is FBX frame k, at
the clip's frame rate) and the textures embedded in the file. Blender runs in a child process, as for imports
(`helix4d.data.blender`): bpy is neither fork- nor thread-safe and keeps global state between files.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from helix4d.errors import InputError
from helix4d.io.blender import TIMEOUT_S, require_bpy
from helix4d.io.files import atomic_path


def require_blender() -> None:
    """Raise `BackendUnavailableError` unless Blender's Python module can be imported (checked before any compute)."""
    require_bpy("FBX export (format fbx)")


def write_fbx(rigged: str | os.PathLike, path: str | os.PathLike, fps: float, frames: int) -> Path:
    """Convert `rigged` (a rigged.glb of `frames` frames at `fps`) into an FBX at `path`, atomically."""
    require_blender()
    if not fps > 0 or frames < 1:
        raise InputError(f"FBX export needs fps > 0 and at least one frame, got {fps} fps, {frames} frames")
    with atomic_path(path) as tmp, tempfile.TemporaryDirectory(prefix="helix4d-fbx-") as work:
        args = f"{str(Path(rigged).resolve())!r}, {str(Path(tmp).resolve())!r}, {float(fps)!r}, {int(frames)}"
        code = f"from helix4d.export.fbx import _child_main; _child_main({args})"
        try:
            run = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT_S, cwd=work
            )
        except subprocess.TimeoutExpired:
            raise InputError(f"Blender took more than {TIMEOUT_S:.0f} s to write {path}") from None
        if run.returncode != 0 or Path(tmp).stat().st_size == 0:
            lines = [line for line in run.stderr.strip().splitlines() if line.strip()]
            raise InputError(f"Blender could not write {path}: {lines[-1] if lines else run.returncode}")
    return Path(path)


def _child_main(source: str, out: str, fps: float, frames: int) -> None:
    """Runs in the child process: import `source` (glTF) into an empty scene at the clip's frame rate, write `out`."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.fps = max(1, round(fps))  # Blender's rate is fps / fps_base with an integer fps
    scene.render.fps_base = scene.render.fps / fps
    bpy.ops.import_scene.gltf(filepath=source, disable_bone_shape=True)  # glTF seconds -> frames at that rate
    scene.frame_start, scene.frame_end = 0, frames - 1
    for image in bpy.data.images:  # packed images without a path would all be embedded under one name, once
        image.filepath_raw = f"//{bpy.path.clean_name(image.name)}.png"
    bpy.ops.export_scene.fbx(
        filepath=out,
        path_mode="COPY",
        embed_textures=True,
        add_leaf_bones=False,
        bake_anim=True,
        bake_anim_use_all_actions=False,  # the scene as it plays, one take
        bake_anim_use_nla_strips=False,
        bake_anim_step=1.0,
        bake_anim_simplify_factor=0.0,  # every frame's key kept: the visibility switches are frame-exact
    )
