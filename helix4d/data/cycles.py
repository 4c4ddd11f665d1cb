"""Render dataset frames with Blender Cycles: a second renderer, path-traced, for training share and held-out tests.

The project's own renderer (helix4d.render, OpenGL rasterisation with depth-peeled transparency) is the one the
demo model learned from; a model that only ever saw it fails on any other image. Cycles differs where it matters:
global illumination, soft shadows, refraction through glass, a denoiser's texture. The same meshes (per-vertex
PBR) and the same cameras are rendered in a child process (bpy is neither fork- nor thread-safe and keeps global
state; see helix4d.data.blender), few samples plus the OpenImageDenoise denoiser (in Blender's PyPI wheel).

Lights follow the sequence's `Look`: the key and fill lights become sun lamps from the same view-space directions,
the sky ambient becomes the world colour (the raster renderer shades in sRGB, so light levels are matched
through the sRGB curve). Colours are shown with Blender's 'Standard' view transform, so a
base colour renders as the sRGB colour it is (Filmic or AgX would wash them out).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from helix4d.errors import InputError
from helix4d.io.blender import TIMEOUT_S, last_error, require_bpy
from helix4d.ovoxel.attributes import srgb_to_linear
from helix4d.render.camera import Camera
from helix4d.render.renderer import Lighting

SAMPLES = 16
# helix4d is y-up with the front at +z; Blender is z-up with the front at -y: (x, y, z) -> (x, -z, y).
TO_BLENDER = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def render_cycles(
    meshes: list[trimesh.Trimesh],
    cameras: list[Camera],
    lighting: Lighting,
    size: int,
    samples: int = SAMPLES,
    timeout: float = TIMEOUT_S,
) -> np.ndarray:
    """Images (F, K, size, size, 4) uint8, straight alpha over a transparent background, of every mesh from every
    camera. Raises `InputError` when Blender fails or runs past `timeout` s, `BackendUnavailableError` without bpy."""
    require_bpy("rendering with Cycles")
    with tempfile.TemporaryDirectory(prefix="helix4d-cycles-") as tmp:
        scene = Path(tmp) / "scene.npz"
        arrays: dict[str, np.ndarray] = {"size": np.array(size), "samples": np.array(samples)}
        for f, mesh in enumerate(meshes):
            rgba = np.asarray(mesh.visual.vertex_colors, np.float64) / 255.0  # (V, 4) sRGB + alpha
            arrays[f"vertices{f}"] = np.asarray(mesh.vertices) @ TO_BLENDER.T
            arrays[f"faces{f}"] = np.asarray(mesh.faces, np.int32)
            arrays[f"colors{f}"] = np.concatenate([srgb_to_linear(rgba[:, :3]), rgba[:, 3:]], 1).astype(np.float32)
            for name in ("metallic", "roughness"):
                arrays[f"{name}{f}"] = np.asarray(mesh.vertex_attributes.get(name, np.zeros(len(rgba))), np.float32)
        for k, cam in enumerate(cameras):
            arrays[f"camera{k}"] = _camera_matrix(cam)
            arrays[f"fov{k}"] = np.array(cam.fov_deg)
        view = cameras[0].rotation()  # the rig moves with view 0, as in the raster renderer
        arrays["key"] = _sun(lighting.key_dir, lighting.key_color, view)
        arrays["fill"] = _sun(lighting.fill_dir, lighting.fill_color, view)
        arrays["world"] = np.asarray(srgb_to_linear(lighting.sky))  # the raster's hemisphere, mostly seen from above
        np.savez(scene, **arrays)
        code = (
            f"from helix4d.data.cycles import _child_main; _child_main({str(scene)!r}, {len(meshes)}, {len(cameras)})"
        )
        try:
            run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise InputError(f"Cycles took more than {timeout:.0f} s to render {len(meshes)} frames; skipped") from None
        if run.returncode != 0:
            raise InputError(f"Cycles could not render the sequence: {last_error(run.stderr, run.returncode)}")
        return np.stack(
            [
                np.stack([np.asarray(Image.open(_png(Path(tmp), f, k)).convert("RGBA")) for k in range(len(cameras))])
                for f in range(len(meshes))
            ]
        )


def _camera_matrix(cam: Camera) -> np.ndarray:
    """Blender camera-to-world (4, 4): columns right, up, back (the camera looks along its -z), eye."""
    rot = cam.rotation()  # rows right, up, back in helix4d's world
    matrix = np.eye(4)
    matrix[:3, :3] = TO_BLENDER @ rot.T
    matrix[:3, 3] = TO_BLENDER @ np.asarray(cam.eye)
    return matrix


def _sun(direction: tuple[float, float, float], colour: tuple[float, float, float], view: np.ndarray) -> np.ndarray:
    """(7,) a sun lamp for Blender: direction towards the light (world, Blender axes), linear colour, strength.

    A sun of strength E lights a white diffuse surface to radiance E / π, so π times the raster renderer's light
    intensity renders the same brightness."""
    d = np.asarray(direction, np.float64)
    world = TO_BLENDER @ (view.T @ (d / np.linalg.norm(d)))
    c = np.asarray(colour, np.float64)
    strength = float(c.max())
    return np.array([*world, *(c / max(strength, 1e-6)), math.pi * strength])


def _png(folder: Path, frame: int, view: int) -> Path:
    return folder / f"f{frame:04d}_v{view:02d}.png"


# ---------------------------------------------------------------------------------------------- child process


def _child_main(scene_path: str, frames: int, views: int) -> None:
    """Runs in the child process: build the scene once, then swap in each frame's mesh and render every camera."""
    import bpy
    from mathutils import Matrix, Vector

    z = np.load(scene_path)
    folder = Path(scene_path).parent
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:  # a share of a busy machine, as for PyTorch; else every core
        scene.render.threads_mode, scene.render.threads = "FIXED", int(threads)
    scene.cycles.samples = int(z["samples"])
    scene.cycles.use_denoising = True
    scene.cycles.denoiser = "OPENIMAGEDENOISE"
    scene.cycles.denoising_input_passes = "RGB_ALBEDO_NORMAL"
    scene.render.film_transparent = True
    scene.cycles.film_transparent_glass = True  # glass shows what is behind it, as alpha, like the raster renders
    scene.render.resolution_x = scene.render.resolution_y = int(z["size"])
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.view_settings.view_transform = "Standard"
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (*z["world"].tolist(), 1.0)
    scene.world = world
    for name in ("key", "fill"):
        d, colour, strength = z[name][:3], z[name][3:6], float(z[name][6])
        lamp = bpy.data.lights.new(name, "SUN")
        lamp.color, lamp.energy, lamp.angle = colour.tolist(), strength, math.radians(8.0)
        obj = bpy.data.objects.new(name, lamp)
        obj.rotation_mode = "QUATERNION"
        obj.rotation_quaternion = Vector(d.tolist()).to_track_quat("Z", "Y")  # the sun shines along its -z
        scene.collection.objects.link(obj)
    cam_data = bpy.data.cameras.new("camera")
    cam_data.sensor_fit = "VERTICAL"
    camera = bpy.data.objects.new("camera", cam_data)
    scene.collection.objects.link(camera)
    scene.camera = camera
    material = _vertex_pbr_material(bpy)
    for f in range(frames):
        mesh = bpy.data.meshes.new(f"frame{f}")
        mesh.from_pydata(z[f"vertices{f}"].tolist(), [], z[f"faces{f}"].tolist())
        for name, values in (
            ("Col", z[f"colors{f}"]),
            ("metallic", z[f"metallic{f}"]),
            ("roughness", z[f"roughness{f}"]),
        ):
            kind = "FLOAT_COLOR" if name == "Col" else "FLOAT"
            attribute = mesh.attributes.new(name, kind, "POINT")
            attribute.data.foreach_set("color" if name == "Col" else "value", values.ravel())
        mesh.materials.append(material)
        obj = bpy.data.objects.new(f"frame{f}", mesh)
        scene.collection.objects.link(obj)
        for k in range(views):
            camera.matrix_world = Matrix(z[f"camera{k}"].tolist())
            cam_data.angle_y = math.radians(float(z[f"fov{k}"]))
            scene.render.filepath = str(_png(folder, f, k))
            bpy.ops.render.render(write_still=True)
        bpy.data.objects.remove(obj)
        bpy.data.meshes.remove(mesh)


def _vertex_pbr_material(bpy):
    """A Principled BSDF fed by the per-vertex attributes: base colour, metallic, roughness and alpha."""
    material = bpy.data.materials.new("vertex_pbr")
    material.use_nodes = True
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = nodes["Principled BSDF"]

    def attribute(name: str, output: str):
        node = nodes.new("ShaderNodeAttribute")
        node.attribute_name = name
        return node.outputs[output]

    def math_node(operation: str, a, b):
        node = nodes.new("ShaderNodeMath")
        node.operation = operation
        for socket, value in zip(node.inputs, (a, b)):
            if isinstance(value, float):
                socket.default_value = value
            else:
                links.new(value, socket)
        return node.outputs[0]

    alpha = attribute("Col", "Alpha")
    links.new(attribute("Col", "Color"), bsdf.inputs["Base Color"])
    links.new(attribute("metallic", "Fac"), bsdf.inputs["Metallic"])
    # see-through surfaces (alpha < 1): clear glass that refracts, covering `alpha` of the pixel as in the raster
    # renders and the GLB export (alpha is coverage), smooth so that what is inside shows through
    glass = math_node("LESS_THAN", alpha, 0.999)
    links.new(glass, bsdf.inputs["Transmission Weight"])
    links.new(alpha, bsdf.inputs["Alpha"])
    links.new(
        math_node("MULTIPLY", attribute("roughness", "Fac"), math_node("SUBTRACT", 1.0, glass)),
        bsdf.inputs["Roughness"],
    )
    bsdf.inputs["IOR"].default_value = 1.45
    return material
