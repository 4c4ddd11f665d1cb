"""Rasterise meshes with per-vertex PBR into straight-alpha RGBA images, with correct transparency.

Passes per image (one reusable set of framebuffers):
1. opaque pass: faces whose alpha is 1 everywhere, ordinary depth test -> colour + window z. When no face is
   transparent this draws straight onto the background and the image is done (fast path);
2. depth peeling, one layer at a time: a cheap pass finds, per pixel, the nearest transparent fragment behind
   the previous layer and in front of the opaque surface (writes its z only); then the layer is shaded with an
   exact depth-equality test and blended *under* the accumulation (front to back, premultiplied:
   C += (1 - A) * a * c, A += (1 - A) * a). An occlusion query stops at the first empty layer, so a closed
   transparent shell costs two shaded layers and one cheap empty pass;
3. resolve: accumulation, then the opaque layer, then the background, all "under"; divide by alpha (straight).
This is the order-independent result for up to `max_layers` transparent surfaces per pixel: an opaque object
inside a transparent container shows through both of the container's walls.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from helix4d.errors import InputError
from helix4d.render import shaders
from helix4d.render.camera import Camera
from helix4d.render.context import gl_context
from helix4d.render.geometry import (
    POSITION_FORMAT,
    VERTEX_ATTRIBUTES,
    VERTEX_FORMAT,
    PackedGeometry,
    pack_meshes,
)

Color = tuple[float, float, float, float]


@dataclass(frozen=True)
class Lighting:
    """A studio rig that moves with the camera: directions are in view space (x right, y up, z to the viewer)."""

    key_dir: tuple[float, float, float] = (-0.45, 0.6, 0.65)
    key_color: tuple[float, float, float] = (0.95, 0.95, 0.92)
    fill_dir: tuple[float, float, float] = (0.7, 0.05, 0.55)
    fill_color: tuple[float, float, float] = (0.35, 0.37, 0.42)
    sky: tuple[float, float, float] = (0.34, 0.35, 0.38)  # ambient from above (diffuse and reflections)
    ground: tuple[float, float, float] = (0.16, 0.15, 0.14)  # ambient from below


@dataclass
class RenderOutput:
    """`rgba` (H, W, 4) uint8 straight alpha; `depth` (H, W) float32 distance along the view axis to the nearest
    surface (0 where nothing); `mask` (H, W) bool, True where any surface covers the pixel."""

    rgba: np.ndarray
    depth: np.ndarray
    mask: np.ndarray


class SceneBuffers:
    """Meshes uploaded to the GL context once, for rendering from many cameras (`Renderer.upload`)."""

    def __init__(self, renderer: Renderer) -> None:
        ctx = renderer.ctx
        self._vbo = ctx.buffer(reserve=64)
        self._opaque_ibo = ctx.buffer(reserve=64)
        self._transparent_ibo = ctx.buffer(reserve=64)
        full = [(self._vbo, VERTEX_FORMAT, *VERTEX_ATTRIBUTES)]
        position_only = [(self._vbo, POSITION_FORMAT, VERTEX_ATTRIBUTES[0])]
        self._vaos = {
            "opaque": ctx.vertex_array(renderer._opaque_prog, full, self._opaque_ibo, index_element_size=4),
            "peel": ctx.vertex_array(renderer._peel_prog, position_only, self._transparent_ibo, index_element_size=4),
            "layer": ctx.vertex_array(renderer._layer_prog, full, self._transparent_ibo, index_element_size=4),
        }
        self.opaque_count = 0
        self.transparent_count = 0

    def write(self, packed: PackedGeometry) -> None:
        """Replace the contents (buffers grow as needed and are reused)."""
        for buffer, array in (
            (self._vbo, packed.vertices),
            (self._opaque_ibo, packed.opaque_faces),
            (self._transparent_ibo, packed.transparent_faces),
        ):
            data = np.ascontiguousarray(array).tobytes()
            if len(data) > buffer.size:
                buffer.orphan(len(data))
            if data:
                buffer.write(data)
        self.opaque_count = packed.opaque_faces.size
        self.transparent_count = packed.transparent_faces.size

    def draw(self, pass_name: str) -> None:
        """Draw the opaque faces ("opaque") or the transparent ones ("peel": depth only, "layer": shaded)."""
        count = self.opaque_count if pass_name == "opaque" else self.transparent_count
        if count:
            self._vaos[pass_name].render(vertices=count)

    def release(self) -> None:
        for obj in (*self._vaos.values(), self._vbo, self._opaque_ibo, self._transparent_ibo):
            obj.release()


MeshInput = trimesh.Trimesh | Sequence[trimesh.Trimesh] | SceneBuffers


class Renderer:
    """A reusable headless rasteriser for images of one size (framebuffers are allocated once).

    `render(meshes, camera)` returns straight-alpha RGBA (H, W, 4) uint8; `render_maps` adds depth and mask.
    """

    def __init__(self, width: int = 512, height: int = 512, lighting: Lighting = Lighting(), max_layers: int = 8):
        if width < 1 or height < 1:
            raise InputError(f"Renderer size must be positive, got {width}x{height}.")
        if max_layers < 1:
            raise InputError(f"max_layers must be >= 1, got {max_layers}.")
        import moderngl

        self.width, self.height, self.max_layers = width, height, max_layers
        self.ctx = ctx = gl_context()
        self._mgl = moderngl
        self._opaque_prog = ctx.program(shaders.SURFACE_VERTEX, shaders.surface_fragment(translucent=False))
        self._layer_prog = ctx.program(shaders.SURFACE_VERTEX, shaders.surface_fragment(translucent=True))
        self._peel_prog = ctx.program(shaders.PEEL_VERTEX, shaders.PEEL_FRAGMENT)
        resolve = ctx.program(vertex_shader=shaders.FULLSCREEN_VERTEX, fragment_shader=shaders.RESOLVE_FRAGMENT)
        self._resolve = ctx.vertex_array(resolve, [])
        self._set_uniforms(self._peel_prog, {"u_prev_z": 0, "u_opaque_z": 1})
        self._set_uniforms(resolve, {"u_accum": 0, "u_opaque": 1, "u_first_z": 2, "u_opaque_z": 3})
        self.set_lighting(lighting)

        size = (width, height)
        depth = ctx.depth_renderbuffer(size)
        self._opaque_color = ctx.texture(size, 4)  # RGBA8, premultiplied (a = 1 where covered)
        self._opaque_z = ctx.texture(size, 1, dtype="f4")
        self._accum = ctx.texture(size, 4, dtype="f2")  # transparent layers, premultiplied
        self._first_z = ctx.texture(size, 1, dtype="f4")  # layer 0's z, kept for the depth output
        self._peel_z = [ctx.texture(size, 1, dtype="f4") for _ in range(2)]  # later layers, ping-pong
        self._out_color = ctx.texture(size, 4)
        self._out_z = ctx.texture(size, 1, dtype="f4")
        self._textures = (
            self._opaque_color,
            self._opaque_z,
            self._accum,
            self._first_z,
            *self._peel_z,
            self._out_color,
            self._out_z,
        )
        self._opaque_fbo = ctx.framebuffer([self._opaque_color, self._opaque_z], depth)
        self._peel_fbos = [ctx.framebuffer([z], depth) for z in (self._first_z, *self._peel_z)]
        self._accum_fbo = ctx.framebuffer([self._accum], depth)
        self._out_fbo = ctx.framebuffer([self._out_color, self._out_z], depth)
        # One-attachment views of z textures, to clear them to 1 (far) while colours clear to 0.
        self._far_fbos = {id(t): ctx.framebuffer([t]) for t in (self._opaque_z, self._out_z)}
        self._query = ctx.query(samples=True)
        self._scratch = SceneBuffers(self)

    def set_lighting(self, lighting: Lighting) -> None:
        """Light the following renders with `lighting` (one renderer serves sequences of different looks)."""
        lights = {
            "u_key_dir": tuple(float(v) for v in np.asarray(lighting.key_dir) / np.linalg.norm(lighting.key_dir)),
            "u_key_color": tuple(float(v) for v in lighting.key_color),
            "u_fill_dir": tuple(float(v) for v in np.asarray(lighting.fill_dir) / np.linalg.norm(lighting.fill_dir)),
            "u_fill_color": tuple(float(v) for v in lighting.fill_color),
            "u_sky": tuple(float(v) for v in lighting.sky),
            "u_ground": tuple(float(v) for v in lighting.ground),
        }
        self._set_uniforms(self._opaque_prog, lights)
        self._set_uniforms(self._layer_prog, lights)

    @staticmethod
    def _set_uniforms(program, values: dict) -> None:
        for name, value in values.items():
            if name in program:
                program[name].value = value

    def upload(self, meshes: trimesh.Trimesh | Sequence[trimesh.Trimesh]) -> SceneBuffers:
        """Upload meshes once to render them from many cameras; call `.release()` on the result when done."""
        scene = SceneBuffers(self)
        scene.write(pack_meshes(meshes))
        return scene

    def render(self, meshes: MeshInput, camera: Camera, background: Color = (0.0, 0.0, 0.0, 0.0)) -> np.ndarray:
        """Straight-alpha RGBA image (H, W, 4) uint8 of one or several meshes (or uploaded `SceneBuffers`)."""
        self._draw(meshes, camera, background)
        return self._read_rgba()

    def render_maps(self, meshes: MeshInput, camera: Camera, background: Color = (0.0, 0.0, 0.0, 0.0)) -> RenderOutput:
        """RGBA plus depth (distance along the view axis, 0 = empty) and coverage mask."""
        self._draw(meshes, camera, background)
        window_z = np.frombuffer(self._out_z.read(), dtype=np.float32).reshape(self.height, self.width)[::-1]
        mask = window_z < 1.0
        ndc = 2.0 * window_z.astype(np.float64) - 1.0
        n, f = camera.near, camera.far
        depth = np.where(mask, 2.0 * n * f / ((f + n) - ndc * (f - n)), 0.0).astype(np.float32)
        return RenderOutput(rgba=self._read_rgba(), depth=depth, mask=mask)

    def render_views(
        self, meshes: MeshInput, cameras: Sequence[Camera], background: Color = (0.0, 0.0, 0.0, 0.0)
    ) -> np.ndarray:
        """Images (N, H, W, 4) uint8 of the same meshes from N cameras; meshes are uploaded once."""
        scene = meshes if isinstance(meshes, SceneBuffers) else self.upload(meshes)
        try:
            return np.stack([self.render(scene, cam, background) for cam in cameras])
        finally:
            if scene is not meshes:
                scene.release()

    def release(self) -> None:
        """Free this renderer's GL objects (the shared context stays)."""
        self._scratch.release()
        fbos = (*self._far_fbos.values(), *self._peel_fbos, self._opaque_fbo, self._accum_fbo, self._out_fbo)
        for obj in (*fbos, *self._textures):
            obj.release()

    # --- passes -------------------------------------------------------------------------------------------------

    def _draw(self, meshes: MeshInput, camera: Camera, background: Color) -> None:
        if len(background) != 4:
            raise InputError(f"background must be RGBA floats in [0, 1], got {background!r}.")
        scene = meshes
        if not isinstance(scene, SceneBuffers):
            scene = self._scratch
            scene.write(pack_meshes(meshes))
        mgl, ctx = self._mgl, self.ctx
        view = camera.view().T.astype("f4").tobytes()
        proj = camera.projection(self.width / self.height).T.astype("f4").tobytes()
        for prog in (self._opaque_prog, self._layer_prog, self._peel_prog):
            prog["u_view"].write(view)
            prog["u_proj"].write(proj)
        ctx.viewport = (0, 0, self.width, self.height)
        ctx.disable(mgl.BLEND | mgl.CULL_FACE)
        ctx.enable(mgl.DEPTH_TEST)
        ctx.depth_func = "<"
        if not scene.transparent_count:
            # Fast path: opaque surfaces straight onto the background (alpha 1 where covered).
            self._out_fbo.clear(*background, depth=1.0)
            self._far_fbos[id(self._out_z)].clear(1.0, 1.0, 1.0, 1.0)
            self._out_fbo.use()
            scene.draw("opaque")
            return
        self._opaque_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._far_fbos[id(self._opaque_z)].clear(1.0, 1.0, 1.0, 1.0)
        self._accum_fbo.clear(0.0, 0.0, 0.0, 0.0)
        self._opaque_fbo.use()
        scene.draw("opaque")
        self._peel(scene)
        ctx.disable(mgl.DEPTH_TEST | mgl.BLEND)
        self._out_fbo.use()
        for unit, tex in enumerate((self._accum, self._opaque_color, self._first_z, self._opaque_z)):
            tex.use(unit)
        self._resolve.program["u_background"] = tuple(float(c) for c in background)
        self._resolve.render(mgl.TRIANGLES, vertices=3)

    def _peel(self, scene: SceneBuffers) -> None:
        mgl, ctx = self._mgl, self.ctx
        prev_z = self._opaque_z
        for layer in range(self.max_layers):
            fbo = self._peel_fbos[0 if layer == 0 else 1 + (layer - 1) % 2]
            fbo.clear(1.0, 1.0, 1.0, 1.0, depth=1.0)  # z texture and depth buffer to "far"
            fbo.use()
            ctx.disable(mgl.BLEND)
            ctx.depth_func = "<"
            self._peel_prog["u_first_layer"] = layer == 0
            prev_z.use(0)
            self._opaque_z.use(1)
            with self._query:
                scene.draw("peel")
            if self._query.samples == 0:
                break
            # Shade exactly the peeled fragments (depth ==) and blend them under the layers in front.
            self._accum_fbo.use()
            ctx.depth_func = "=="
            ctx.enable(mgl.BLEND)
            ctx.blend_func = mgl.ONE_MINUS_DST_ALPHA, mgl.ONE  # dst += (1 - dst.a) * src
            scene.draw("layer")
            prev_z = fbo.color_attachments[0]
        ctx.depth_func = "<"

    def _read_rgba(self) -> np.ndarray:
        data = np.frombuffer(self._out_color.read(), dtype=np.uint8)
        return data.reshape(self.height, self.width, 4)[::-1].copy()
