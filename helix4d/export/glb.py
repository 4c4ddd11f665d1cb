"""GLB (binary glTF 2.0) writing with pygltflib: one frame per file, or many frames in one file (`animated.py`).

Materials are glTF metallic-roughness PBR, double-sided (O-Voxel meshes may be open sheets):
- vertex-colour frames: COLOR_0 (linear RGB + alpha, as glTF requires: the stored sRGB colours are decoded) with
  metallic / roughness factors = the mean of the vertex values (glTF has no per-vertex metallic / roughness);
- textured frames: TEXCOORD_0 + baseColorTexture (sRGB RGBA) + metallicRoughnessTexture (G roughness, B metallic).
alphaMode is BLEND when any alpha < 1, else OPAQUE. An empty frame (no faces) becomes a node without a mesh.
Morph targets are most of an animated file, so their displacements are stored as normalised integers
(KHR_mesh_quantization, read by three.js, Blender and the Khronos validator): positions as 8- or 16-bit, normals as
8-bit (the writer scales each target to [-1, 1] and lets the animation's weight carry the scale, `animated.py`); a
target whose displacement leaves [-1, 1] stays float32, so nothing is clamped. An attribute a target does not move
is an accessor without a buffer view (zeros by the specification, no bytes), shared by the mesh's targets.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pygltflib as gl

from helix4d.export.surface import Frame, SurfaceArrays, surface_arrays
from helix4d.io.files import write_bytes_atomic
from helix4d.ovoxel.attributes import srgb_to_linear

_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
_LINEAR, _LINEAR_MIPMAP_LINEAR, _CLAMP = 9729, 9987, 33071  # CLAMP_TO_EDGE
_INTEGERS = {
    np.dtype(np.uint8): gl.UNSIGNED_BYTE,
    np.dtype(np.uint16): gl.UNSIGNED_SHORT,
    np.dtype(np.uint32): gl.UNSIGNED_INT,
}
_NORMALISED = {gl.BYTE: (np.int8, 127), gl.SHORT: (np.int16, 32767)}  # componentType -> (dtype, value of 1.0)
QUANTIZATION = "KHR_mesh_quantization"


@dataclass
class MorphTarget:
    """One morph target: (V, 3) position and normal displacements from the base mesh (None: that attribute does
    not move), the positions stored as normalised `position_component` (gl.BYTE or gl.SHORT) where they fit."""

    position: np.ndarray | None = None
    normal: np.ndarray | None = None
    position_component: int = gl.SHORT


class GltfBuilder:
    """Accumulates a glTF document and its binary buffer; `to_glb()` returns the file's bytes."""

    def __init__(self) -> None:
        self.gltf = gl.GLTF2(asset=gl.Asset(version="2.0", generator="helix4d"), scene=0, scenes=[gl.Scene(nodes=[])])
        self._blob = bytearray()
        self._sampler: int | None = None
        self._quantized = False

    # --- buffers -------------------------------------------------------------------------------------------------
    def buffer_view(self, data: bytes, target: int | None = None) -> int:
        self._blob.extend(b"\0" * (-len(self._blob) % 4))  # accessors need 4-byte aligned offsets
        view = gl.BufferView(buffer=0, byteOffset=len(self._blob), byteLength=len(data), target=target)
        self._blob.extend(data)
        self.gltf.bufferViews.append(view)
        return len(self.gltf.bufferViews) - 1

    def accessor(self, array: np.ndarray, target: int | None = None, bounds: bool = False) -> int:
        """Accessor over an (N, C) or (N,) array: uint8 / uint16 / uint32 stay integers (indices, skin joints),
        anything else becomes float32 (a (N, 16) array: column-major 4x4 matrices); `bounds` adds min/max
        (positions, animation)."""
        array = np.ascontiguousarray(array)
        component = _INTEGERS.get(array.dtype, gl.FLOAT)
        array = array.astype(np.float32) if component == gl.FLOAT else array
        cols = 1 if array.ndim == 1 else array.shape[1]
        acc = gl.Accessor(
            bufferView=self.buffer_view(array.tobytes(), target),
            componentType=component,
            count=len(array),
            type=_TYPES[cols],
        )
        if bounds:
            flat = array.reshape(len(array), cols)
            acc.min, acc.max = flat.min(axis=0).tolist(), flat.max(axis=0).tolist()
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def normalised_accessor(self, array: np.ndarray, component: int, bounds: bool = False) -> int:
        """Vertex accessor over (N, 3) float values in [-1, 1] stored as normalised `component` (gl.BYTE or
        gl.SHORT) integers, each element padded to 4 bytes as glTF requires; needs KHR_mesh_quantization."""
        dtype, one = _NORMALISED[component]
        values = np.round(np.clip(array, -1.0, 1.0) * one).astype(dtype)  # (N, 3)
        padded = np.zeros((len(values), 4), dtype)  # 4 components of 1 or 2 bytes: 4- or 8-byte elements
        padded[:, :3] = values
        view = self.buffer_view(padded.tobytes(), gl.ARRAY_BUFFER)
        self.gltf.bufferViews[view].byteStride = padded.strides[0]
        acc = gl.Accessor(bufferView=view, componentType=component, normalized=True, count=len(values), type="VEC3")
        if bounds:  # in the stored integers, as the specification asks of normalised accessors
            acc.min, acc.max = values.min(axis=0).tolist(), values.max(axis=0).tolist()
        self.gltf.accessors.append(acc)
        self._quantized = True
        return len(self.gltf.accessors) - 1

    def displacement(self, array: np.ndarray, component: int, bounds: bool = False) -> int:
        """A morph target's (N, 3) displacements: normalised `component` integers where they fit in [-1, 1],
        float32 otherwise (module docstring)."""
        if len(array) and np.abs(array).max() <= 1.0:
            return self.normalised_accessor(array, component, bounds)
        return self.accessor(array, gl.ARRAY_BUFFER, bounds=bounds)

    def zeros(self, count: int) -> int:
        """A (count, 3) accessor of zeros that takes no bytes (no buffer view), with the min/max a morph target's
        POSITION needs."""
        acc = gl.Accessor(
            byteOffset=None, componentType=gl.FLOAT, count=count, type="VEC3", min=[0.0] * 3, max=[0.0] * 3
        )
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def texture(self, png: bytes) -> int:
        if self._sampler is None:
            sampler = gl.Sampler(magFilter=_LINEAR, minFilter=_LINEAR_MIPMAP_LINEAR, wrapS=_CLAMP, wrapT=_CLAMP)
            self.gltf.samplers.append(sampler)
            self._sampler = len(self.gltf.samplers) - 1
        self.gltf.images.append(gl.Image(bufferView=self.buffer_view(png), mimeType="image/png"))
        self.gltf.textures.append(gl.Texture(sampler=self._sampler, source=len(self.gltf.images) - 1))
        return len(self.gltf.textures) - 1

    # --- content ---------------------------------------------------------------------------------------------------
    def add_mesh(self, frame: Frame, name: str, morph: Sequence[MorphTarget] | None = None) -> int | None:
        """Add one frame's mesh and material; returns the glTF mesh index, or None for an empty frame.

        morph: morph targets (displacements from this frame's vertices); the mesh's default weights are all 0 (it
        shows `frame` until an animation sets them)."""
        s = surface_arrays(frame)
        if s.empty:
            return None
        attrs = gl.Attributes(
            POSITION=self.accessor(s.positions, gl.ARRAY_BUFFER, bounds=True),
            NORMAL=self.accessor(s.normals, gl.ARRAY_BUFFER),
        )
        if s.textured is None:
            color = np.concatenate([srgb_to_linear(s.rgba[:, :3]), s.rgba[:, 3:]], axis=1)
            attrs.COLOR_0 = self.accessor(color, gl.ARRAY_BUFFER)
        else:
            attrs.TEXCOORD_0 = self.accessor(s.uv, gl.ARRAY_BUFFER)
        primitive = gl.Primitive(
            attributes=attrs,
            indices=self.accessor(s.faces.reshape(-1), gl.ELEMENT_ARRAY_BUFFER),
            material=self._material(s, name),
            mode=gl.TRIANGLES,
        )
        weights = None
        if morph:
            still = any(t.position is None or t.normal is None for t in morph)
            zero = self.zeros(len(s.positions)) if still else None  # shared by every target that needs it
            primitive.targets = [
                {
                    "POSITION": zero
                    if t.position is None
                    else self.displacement(t.position, t.position_component, bounds=True),
                    "NORMAL": zero if t.normal is None else self.displacement(t.normal, gl.BYTE),
                }
                for t in morph
            ]
            weights = [0.0] * len(morph)
        self.gltf.meshes.append(gl.Mesh(name=name, primitives=[primitive], weights=weights))
        return len(self.gltf.meshes) - 1

    def add_node(self, node: gl.Node, root: bool = False) -> int:
        self.gltf.nodes.append(node)
        index = len(self.gltf.nodes) - 1
        if root:
            self.gltf.scenes[0].nodes.append(index)
        return index

    def to_glb(self) -> bytes:
        """The GLB container: 12-byte header, JSON chunk, and a BIN chunk unless there is no binary data."""
        self._blob.extend(b"\0" * (-len(self._blob) % 4))
        self.gltf.buffers = [gl.Buffer(byteLength=len(self._blob))] if self._blob else []
        if self._quantized:
            self.gltf.extensionsUsed = self.gltf.extensionsRequired = [QUANTIZATION]
        text = self.gltf.gltf_to_json(separators=(",", ":"), indent=None).encode("utf-8")
        chunks = [(text + b" " * (-len(text) % 4), b"JSON")]
        if self._blob:
            chunks.append((bytes(self._blob), b"BIN\0"))
        body = b"".join(struct.pack("<I", len(data)) + kind + data for data, kind in chunks)
        return b"glTF" + struct.pack("<II", 2, 12 + len(body)) + body

    def _material(self, s: SurfaceArrays, name: str) -> int:
        if s.textured is None:
            pbr = gl.PbrMetallicRoughness(
                baseColorFactor=[1.0, 1.0, 1.0, 1.0],
                metallicFactor=float(s.metallic.mean()),
                roughnessFactor=float(s.roughness.mean()),
            )
        else:
            pbr = gl.PbrMetallicRoughness(
                baseColorFactor=[1.0, 1.0, 1.0, 1.0],
                baseColorTexture=gl.TextureInfo(index=self.texture(s.textured.base_color_png)),
                metallicFactor=1.0,
                roughnessFactor=1.0,
                metallicRoughnessTexture=gl.TextureInfo(index=self.texture(s.textured.metallic_roughness_png)),
            )
        material = gl.Material(
            name=name,
            pbrMetallicRoughness=pbr,
            alphaMode=gl.BLEND if s.transparent else gl.OPAQUE,
            doubleSided=True,
        )
        self.gltf.materials.append(material)
        return len(self.gltf.materials) - 1


def write_glb(frame: Frame, path: str | os.PathLike) -> Path:
    """Write one frame (vertex-coloured `trimesh.Trimesh` or `TexturedMesh`) as a self-contained .glb, atomically."""
    builder = GltfBuilder()
    builder.add_node(gl.Node(name="frame", mesh=builder.add_mesh(frame, "frame")), root=True)
    return write_bytes_atomic(path, builder.to_glb())
