"""Export of 4D assets (per-frame meshes with per-vertex PBR, topology may change) to files people can use.

    export_asset(meshes, "out/", fps=12)            # everything, textured (512² per frame)
    export_asset(meshes, "out/", fps=12, texture_size=None, formats={"glb", "animated"})   # vertex colours

Folder layout written by `export_asset`:
```
OUT/frames/frame_0000.glb ...   one GLB per frame
OUT/animated.glb                one mesh per topology segment, morph targets per frame
OUT/asset.usdc                  one time-sampled UsdGeom.Mesh; OUT/textures/ holds its per-frame textures
OUT/asset.usdz                  the same, packaged with its textures
OUT/asset.abc                   Alembic cache (format "abc", optional: needs alembic3d)
OUT/rigged.glb                  a skeleton and skin weights per topology segment (format "rig", docs/rig.md)
OUT/asset.fbx                   the rigged asset as FBX, textures embedded (format "fbx", optional: needs bpy)
OUT/preview.mp4                 input video | result from the input camera, then one orbit
```
Every frame is cleaned first (`clean_mesh`, on by default). Building blocks: `bake_textures` (xatlas + texel
baking), `simplify_mesh`, `write_glb`, `write_animated_glb`, `fit_rig` / `write_rigged_glb` / `write_fbx`,
`write_usd` / `check_usd`, `render_preview`, and attribute functions `mesh_sampler` / `ovoxel_sampler`.
"""

from helix4d.export.alembic import write_alembic
from helix4d.export.animated import write_animated_glb
from helix4d.export.asset import (
    DEFAULT_FORMATS,
    FORMATS,
    ExportedFiles,
    export_asset,
    prepare_frame,
    require_formats,
)
from helix4d.export.bake import TexturedMesh, bake_textures
from helix4d.export.cleanup import CleanupConfig, clean_mesh
from helix4d.export.fbx import write_fbx
from helix4d.export.glb import write_glb
from helix4d.export.preview import preview_frame_count, render_preview
from helix4d.export.rig import Rig, RigConfig, RigReport, fit_rig
from helix4d.export.rigged import write_rigged_glb
from helix4d.export.sampling import AttributeFn, mesh_sampler, ovoxel_sampler
from helix4d.export.simplify import simplify_mesh
from helix4d.export.usd import check_usd, write_usd

__all__ = [
    "DEFAULT_FORMATS",
    "FORMATS",
    "AttributeFn",
    "CleanupConfig",
    "ExportedFiles",
    "Rig",
    "RigConfig",
    "RigReport",
    "TexturedMesh",
    "bake_textures",
    "check_usd",
    "clean_mesh",
    "export_asset",
    "fit_rig",
    "mesh_sampler",
    "ovoxel_sampler",
    "prepare_frame",
    "preview_frame_count",
    "render_preview",
    "require_formats",
    "simplify_mesh",
    "write_alembic",
    "write_animated_glb",
    "write_fbx",
    "write_glb",
    "write_rigged_glb",
    "write_usd",
]
