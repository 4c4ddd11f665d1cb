"""USD export (usd-core): the 4D asset as ONE `UsdGeom.Mesh` whose topology and attributes are time-sampled.

Stage: defaultPrim `/Asset` (Xform, kind component), upAxis Y, metersPerUnit 1 (the unit cube is 1 m), time code k =
frame k, timeCodesPerSecond = framesPerSecond = fps, start 0, end F - 1.

`/Asset/Mesh` carries, per time code: points, faceVertexCounts, faceVertexIndices, normals, extent, and vertex
primvars displayColor (linear RGB) / displayOpacity, plus `metallic` / `roughness` (vertex-colour frames) or `st`
(textured frames; USD's texture origin is the image's bottom-left, so st = (u, 1 - v) of the glTF UVs). Topology
may change from one time code to the next (USD holds each sample until the next one).

`/Asset/Materials/Surface` is a UsdPreviewSurface bound to the mesh:
- vertex-colour frames: primvar readers feed diffuseColor, opacity, metallic and roughness, so the per-vertex
  material survives (not just a mean);
- textured frames: two UsdUVTexture nodes whose `inputs:file` is a **time-sampled asset path**, one texture pair per
  frame, written to `textures/<stem>_fNNNN_{base_color,metallic_roughness}.png` next to the layer (and packed into
  the .usdz). One material with time-varying files is used because material bindings cannot be time-sampled.
A stage mixes both kinds only through empty frames; non-empty frames must all be textured or all vertex-coloured.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from helix4d.errors import BackendUnavailableError, InputError
from helix4d.export.surface import Frame, SurfaceArrays, surface_arrays
from helix4d.io.files import staging_dir, write_bytes_atomic
from helix4d.ovoxel.attributes import srgb_to_linear

LAYER_SUFFIXES = (".usdc", ".usda", ".usd")
TEXTURE_DIR = "textures"


def write_usd(
    frames: Sequence[Frame], path: str | os.PathLike, fps: float, usdz_path: str | os.PathLike | None = None
) -> list[Path]:
    """Write `frames` as a time-sampled USD layer at `path` (.usdc/.usda/.usd, textures beside it in `textures/`)
    or as a self-contained package when `path` ends in .usdz; `usdz_path` additionally packs the layer into a
    .usdz. Every file appears atomically; returns the written USD paths."""
    if not frames:
        raise InputError("write_usd needs at least one frame")
    surfaces = [surface_arrays(f) for f in frames]
    with usd_writer(path, fps, _textured_mode(surfaces), usdz_path) as writer:
        for surface in surfaces:
            writer.add(surface)
    return writer.written


@contextmanager
def usd_writer(
    path: str | os.PathLike, fps: float, textured: bool, usdz_path: str | os.PathLike | None = None
) -> Iterator[UsdFrames]:
    """`write_usd` one frame at a time, for clips too long to hold every frame's textures: `add` each frame's
    `SurfaceArrays` in order (non-empty ones textured exactly when `textured`); the files appear when the block
    ends without an error (then `written` lists them), and nothing appears when it raises."""
    _pxr()
    path = Path(path)
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    suffix = path.suffix.lower()
    if suffix not in (*LAYER_SUFFIXES, ".usdz"):
        raise InputError(f"cannot write {path.name}: use a .usdc, .usda, .usd or .usdz file name")
    if usdz_path is not None and Path(usdz_path).suffix.lower() != ".usdz":
        raise InputError(f"usdz_path must end in .usdz, got {usdz_path}")
    packages = [Path(p) for p in (usdz_path, path if suffix == ".usdz" else None) if p is not None]
    layer_name = path.name if suffix != ".usdz" else path.stem + ".usdc"

    with staging_dir(path.parent) as stage_dir:
        layer = stage_dir / layer_name
        writer = UsdFrames(layer, fps, textured)
        yield writer
        if writer.count == 0:
            raise InputError("write_usd needs at least one frame")
        textures = writer.save()
        for package in packages:
            _package(layer, package)
            writer.written.append(package)
        if suffix != ".usdz":  # textures first, so the layer never points at missing files
            for rel in textures:
                (path.parent / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage_dir / rel, path.parent / rel)
            os.replace(layer, path)
            writer.written.insert(0, path)


def check_usd(path: str | os.PathLike) -> list[str]:
    """Errors (not warnings) from every registered OpenUSD validator on the stage at `path` — the checks
    `usdchecker` runs (usd-core >= 25 replaced the Python `UsdUtils.ComplianceChecker` with this framework)."""
    Usd, _, _, _, _, _ = _pxr()
    from pxr import UsdValidation

    stage = Usd.Stage.Open(str(path))
    if stage is None:
        return [f"cannot open {path} as a USD stage"]
    context = UsdValidation.ValidationContext(UsdValidation.ValidationRegistry().GetOrLoadAllValidators())
    return [
        f"{e.GetValidator().GetMetadata().name if e.GetValidator() else '?'}: {e.GetMessage()}"
        for e in context.Validate(stage)
        if e.GetType() == UsdValidation.ValidationErrorType.Error
    ]


# ---------------------------------------------------------------------------------------------- authoring
def _pxr():
    try:
        from pxr import Kind, Sdf, Usd, UsdGeom, UsdShade, Vt
    except ImportError as exc:
        raise BackendUnavailableError("USD export needs usd-core: pip install usd-core") from exc
    return Usd, UsdGeom, UsdShade, Sdf, Vt, Kind


class UsdFrames:
    """The stage being authored: frame k's geometry and primvars as samples at time code k (held by the stage
    until it is saved), its textures written under `layer.parent / textures` as soon as the frame is added."""

    def __init__(self, layer: Path, fps: float, textured: bool) -> None:
        Usd, UsdGeom, _, Sdf, _, Kind = _pxr()
        self.layer, self.textured, self.count = layer, textured, 0
        self.texture_files: list[tuple[int, str, str]] = []  # (frame, base colour, metallic-roughness) per frame
        self.textures: list[Path] = []  # relative to layer.parent
        self.written: list[Path] = []  # the USD files, once the writer's block has ended
        self.stage = stage = Usd.Stage.CreateNew(str(layer))
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
        stage.SetTimeCodesPerSecond(fps)
        stage.SetFramesPerSecond(fps)
        stage.SetStartTimeCode(0)
        root = UsdGeom.Xform.Define(stage, "/Asset")
        stage.SetDefaultPrim(root.GetPrim())
        Usd.ModelAPI(root.GetPrim()).SetKind(Kind.Tokens.component)

        UsdGeom.Scope.Define(stage, "/Asset/Materials")
        self.mesh = mesh = UsdGeom.Mesh.Define(stage, "/Asset/Mesh")
        mesh.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)  # polygons as they are, not a subdivision cage
        mesh.CreateDoubleSidedAttr(True)  # O-Voxel meshes may be open sheets
        mesh.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        vertex = UsdGeom.Tokens.vertex
        primvars = UsdGeom.PrimvarsAPI(mesh)
        self.color, self.opacity = mesh.CreateDisplayColorPrimvar(vertex), mesh.CreateDisplayOpacityPrimvar(vertex)
        floats = Sdf.ValueTypeNames.FloatArray
        if textured:
            self.st = primvars.CreatePrimvar("st", Sdf.ValueTypeNames.TexCoord2fArray, vertex)
        else:
            self.metallic = primvars.CreatePrimvar("metallic", floats, vertex)
            self.roughness = primvars.CreatePrimvar("roughness", floats, vertex)
        self.attrs = [
            mesh.CreatePointsAttr(),
            mesh.CreateFaceVertexCountsAttr(),
            mesh.CreateFaceVertexIndicesAttr(),
            mesh.CreateNormalsAttr(),
            mesh.CreateExtentAttr(),
        ]

    def add(self, s: SurfaceArrays) -> None:
        """The next frame (time code `count`)."""
        Usd, _, _, _, Vt, _ = _pxr()
        if not s.empty and (s.textured is not None) != self.textured:
            raise InputError("USD export needs all non-empty frames textured or all vertex-coloured, not a mix")
        k, self.count = self.count, self.count + 1
        time = Usd.TimeCode(k)
        lo, hi = (s.positions.min(0), s.positions.max(0)) if len(s.positions) else (np.zeros(3), np.zeros(3))
        values = [
            Vt.Vec3fArray.FromNumpy(s.positions),
            Vt.IntArray.FromNumpy(np.full(len(s.faces), 3, np.int32)),
            Vt.IntArray.FromNumpy(s.faces.reshape(-1).astype(np.int32)),
            Vt.Vec3fArray.FromNumpy(s.normals),
            Vt.Vec3fArray.FromNumpy(np.stack([lo, hi]).astype(np.float32)),
        ]
        for attr, value in zip(self.attrs, values):
            attr.Set(value, time)
        self.color.Set(Vt.Vec3fArray.FromNumpy(srgb_to_linear(s.rgba[:, :3])), time)
        self.opacity.Set(Vt.FloatArray.FromNumpy(s.rgba[:, 3].copy()), time)
        if not self.textured:
            self.metallic.Set(Vt.FloatArray.FromNumpy(s.metallic), time)
            self.roughness.Set(Vt.FloatArray.FromNumpy(s.roughness), time)
            return
        self.st.Set(Vt.Vec2fArray.FromNumpy(_usd_st(s)), time)
        if s.textured is not None:
            kinds = ("base_color", "metallic_roughness")
            names = [f"{TEXTURE_DIR}/{self.layer.stem}_f{k:04d}_{kind}.png" for kind in kinds]
            for name, png in zip(names, (s.textured.base_color_png, s.textured.metallic_roughness_png)):
                self.textures.append(write_bytes_atomic(self.layer.parent / name, png).relative_to(self.layer.parent))
            self.texture_files.append((k, "./" + names[0], "./" + names[1]))

    def save(self) -> list[Path]:
        """Bind the material, end the stage at the last frame and save the layer; returns the texture paths
        (relative to `layer.parent`)."""
        _, _, UsdShade, _, _, _ = _pxr()
        self.stage.SetEndTimeCode(self.count - 1)
        stage = self.stage
        material = _textured_material(stage, self.texture_files) if self.textured else _primvar_material(stage)
        UsdShade.MaterialBindingAPI.Apply(self.mesh.GetPrim()).Bind(material)
        stage.GetRootLayer().Save()
        return self.textures


def _textured_mode(surfaces: list[SurfaceArrays]) -> bool:
    """Whether the non-empty frames are textured (a mix is refused by `UsdFrames.add`)."""
    return any(s.textured is not None for s in surfaces if not s.empty)


def _usd_st(s: SurfaceArrays) -> np.ndarray:
    if s.uv is None:  # an empty frame in a textured asset
        return np.zeros((len(s.positions), 2), np.float32)
    return np.stack([s.uv[:, 0], 1.0 - s.uv[:, 1]], axis=1).astype(np.float32)


def _surface_shader(stage, material):
    _, _, UsdShade, Sdf, _, _ = _pxr()
    shader = UsdShade.Shader.Define(stage, material.GetPath().AppendChild("PreviewSurface"))
    shader.CreateIdAttr("UsdPreviewSurface")
    shader.CreateInput("useSpecularWorkflow", Sdf.ValueTypeNames.Int).Set(0)
    material.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
    return shader


def _reader(stage, material, name: str, shader_id: str, varname: str, out_type):
    _, _, UsdShade, Sdf, _, _ = _pxr()
    reader = UsdShade.Shader.Define(stage, material.GetPath().AppendChild(name))
    reader.CreateIdAttr(shader_id)
    reader.CreateInput("varname", Sdf.ValueTypeNames.String).Set(varname)
    return reader.CreateOutput("result", out_type)


def _primvar_material(stage):
    """UsdPreviewSurface reading the mesh's per-vertex colour, opacity, metallic and roughness primvars."""
    _, _, UsdShade, Sdf, _, _ = _pxr()
    material = UsdShade.Material.Define(stage, "/Asset/Materials/Surface")
    surface = _surface_shader(stage, material)
    f3, f1 = Sdf.ValueTypeNames.Float3, Sdf.ValueTypeNames.Float
    for inp, reader, varname, typ in (
        ("diffuseColor", "DisplayColor", "displayColor", f3),
        ("opacity", "DisplayOpacity", "displayOpacity", f1),
        ("metallic", "Metallic", "metallic", f1),
        ("roughness", "Roughness", "roughness", f1),
    ):
        shader_id = "UsdPrimvarReader_float3" if typ == f3 else "UsdPrimvarReader_float"
        surface.CreateInput(inp, Sdf.ValueTypeNames.Color3f if inp == "diffuseColor" else f1).ConnectToSource(
            _reader(stage, material, reader, shader_id, varname, typ)
        )
    return material


def _textured_material(stage, files: list[tuple[int, str, str]]):
    """UsdPreviewSurface fed by two UsdUVTextures (base colour + alpha; glTF metallic-roughness) whose files are
    time-sampled per frame."""
    _, _, UsdShade, Sdf, _, _ = _pxr()
    material = UsdShade.Material.Define(stage, "/Asset/Materials/Surface")
    surface = _surface_shader(stage, material)
    st = _reader(stage, material, "StReader", "UsdPrimvarReader_float2", "st", Sdf.ValueTypeNames.Float2)
    textures = {}
    for name, column, space in (("BaseColor", 1, "sRGB"), ("MetallicRoughness", 2, "raw")):
        tex = UsdShade.Shader.Define(stage, material.GetPath().AppendChild(name))
        tex.CreateIdAttr("UsdUVTexture")
        file_input = tex.CreateInput("file", Sdf.ValueTypeNames.Asset)
        for k, *paths in files:
            file_input.Set(Sdf.AssetPath(paths[column - 1]), k)
        tex.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(st)
        tex.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set(space)
        for wrap in ("wrapS", "wrapT"):
            tex.CreateInput(wrap, Sdf.ValueTypeNames.Token).Set("clamp")
        textures[name] = tex
    base, mr = textures["BaseColor"], textures["MetallicRoughness"]
    f1 = Sdf.ValueTypeNames.Float
    surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).ConnectToSource(
        base.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
    )
    surface.CreateInput("opacity", f1).ConnectToSource(base.CreateOutput("a", f1))
    surface.CreateInput("roughness", f1).ConnectToSource(mr.CreateOutput("g", f1))
    surface.CreateInput("metallic", f1).ConnectToSource(mr.CreateOutput("b", f1))
    return material


def _package(layer: Path, usdz: Path) -> None:
    """Pack `layer` and every file it references into `usdz`, atomically."""
    from pxr import UsdUtils

    tmp = layer.parent / (".package-" + usdz.name)
    if not UsdUtils.CreateNewUsdzPackage(str(layer), str(tmp)):
        raise RuntimeError(f"usd-core could not package {layer.name} into {usdz.name}")
    usdz.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, usdz)
