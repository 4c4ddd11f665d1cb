"""Headless rasteriser (moderngl + EGL): per-vertex PBR meshes -> straight-alpha RGBA, depth and mask, with
depth-peeled transparency. Used for conditioning renders, previews and tests."""

from helix4d.render.camera import Camera, front_camera, orbit_cameras
from helix4d.render.context import EGL_INSTALL_HINT, gl_context
from helix4d.render.geometry import PackedGeometry, pack_meshes
from helix4d.render.renderer import Lighting, Renderer, RenderOutput, SceneBuffers
from helix4d.render.turntable import render_turntable

__all__ = [
    "Camera",
    "EGL_INSTALL_HINT",
    "Lighting",
    "PackedGeometry",
    "RenderOutput",
    "Renderer",
    "SceneBuffers",
    "front_camera",
    "gl_context",
    "orbit_cameras",
    "pack_meshes",
    "render_turntable",
]
