"""How a training sequence is seen: its camera, lights, surface colours and sensor (domain randomisation).

The canonical look is the one the project's renderer has always used (front camera 15° up, 40° field of view, the
studio lights, the scene's own colours, a clean sensor). A model that only ever saw it fails on a user's video:
another camera, other lights, colours the world never paired with that shape, noise and compression. `sample_look`
draws all of these per sequence from the sequence's seed; the draw is written to each meta.json, so the sequence
rebuilds exactly and the evaluation rebuilds the same ground-truth colours.

The object space stays canonical (the unit cube, y up, front +z): only the camera moves around it, as for the
static image-to-3D models this project builds on. Azimuth is drawn in full: the procedural objects have no front,
and the evaluation protocol fits a similarity before it measures.
"""

from __future__ import annotations

import colorsys
import dataclasses
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image, ImageFilter

from helix4d.data.layout import (
    LOOKS,
    META,
    read_json,
    read_manifest,
)
from helix4d.errors import InputError
from helix4d.render.camera import CONDITION_ELEVATION_DEG, CONDITION_FOV_DEG, Camera, fit_radius
from helix4d.render.renderer import Lighting


@dataclass(frozen=True)
class Recolour:
    """A remap of every surface's PBR: colours not tied to shapes, wider metal/roughness and glass alpha ranges.

    hue_shift rotates the hue (0 = none); saturation / value scale HSV; metallic_add and roughness_add shift those
    channels; alpha_scale scales the alpha of see-through surfaces only (alpha < 1), so opaque stays opaque.
    pattern: 'none', 'stripes' or 'checker' in a second colour, `pattern_cells` cells across the unit cube, laid
    on the first frame's vertices when every frame shares them (so the texture moves with the surface).
    """

    hue_shift: float = 0.0
    saturation: float = 1.0
    value: float = 1.0
    metallic_add: float = 0.0
    roughness_add: float = 0.0
    alpha_scale: float = 1.0
    pattern: str = "none"
    pattern_cells: float = 4.0
    pattern_colour: tuple[float, float, float] = (1.0, 1.0, 1.0)
    pattern_axis: tuple[float, float, float] = (1.0, 0.0, 0.0)

    def apply(self, meshes: list[trimesh.Trimesh]) -> list[trimesh.Trimesh]:
        """Copies of `meshes` (per-vertex PBR, the project convention) with this remap applied."""
        if self == Recolour():
            return meshes
        rest = meshes[0].vertices if len({len(m.vertices) for m in meshes}) == 1 else None
        return [self._apply_one(m, m.vertices if rest is None else rest) for m in meshes]

    def _apply_one(self, mesh: trimesh.Trimesh, rest: np.ndarray) -> trimesh.Trimesh:
        out = mesh.copy()
        rgba = np.asarray(mesh.visual.vertex_colors, np.float64) / 255.0  # (V, 4)
        hsv = np.array([colorsys.rgb_to_hsv(*c) for c in rgba[:, :3]]).reshape(-1, 3)  # (V, 3)
        hsv[:, 0] = (hsv[:, 0] + self.hue_shift) % 1.0
        hsv[:, 1:] = np.clip(hsv[:, 1:] * (self.saturation, self.value), 0.0, 1.0)
        rgb = np.array([colorsys.hsv_to_rgb(*c) for c in hsv]).reshape(-1, 3)  # (V, 3)
        mask = self._pattern_mask(rest)  # (V,) bool
        rgb[mask] = self.pattern_colour
        alpha = np.where(rgba[:, 3] < 1.0, np.clip(rgba[:, 3] * self.alpha_scale, 0.05, 0.95), rgba[:, 3])
        out.visual.vertex_colors = np.rint(np.concatenate([rgb, alpha[:, None]], 1) * 255.0).astype(np.uint8)
        for name, add in (("metallic", self.metallic_add), ("roughness", self.roughness_add)):
            base = np.asarray(mesh.vertex_attributes.get(name, np.zeros(len(rgb))), np.float32)
            out.vertex_attributes[name] = np.clip(base + add, 0.0, 1.0).astype(np.float32)
        return out

    def _pattern_mask(self, rest: np.ndarray) -> np.ndarray:
        if self.pattern == "none":
            return np.zeros(len(rest), bool)
        cells = np.floor((rest + 0.5) * self.pattern_cells).astype(np.int64)  # (V, 3)
        if self.pattern == "stripes":
            axis = int(np.argmax(np.abs(self.pattern_axis)))
            return cells[:, axis] % 2 == 1
        return cells.sum(1) % 2 == 1


@dataclass(frozen=True)
class Sensor:
    """Camera effects on the rendered RGB: Gaussian blur (pixels), noise (std in [0, 1] units), JPEG (100 = off)."""

    blur_sigma: float = 0.0
    noise_std: float = 0.0
    jpeg_quality: int = 100

    def apply(self, rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Straight-alpha (H, W, 4) uint8 -> the same with the RGB degraded; the alpha is left as rendered."""
        if self == Sensor():
            return rgba
        image = Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB")
        if self.blur_sigma > 0:
            image = image.filter(ImageFilter.GaussianBlur(self.blur_sigma))
        rgb = np.asarray(image, np.float64) / 255.0  # (H, W, 3)
        if self.noise_std > 0:
            rgb = rgb + rng.normal(0.0, self.noise_std, rgb.shape)
        rgb8 = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
        if self.jpeg_quality < 100:
            buffer = io.BytesIO()
            Image.fromarray(rgb8, "RGB").save(buffer, "JPEG", quality=int(self.jpeg_quality))
            rgb8 = np.asarray(Image.open(buffer).convert("RGB"))
        return np.concatenate([rgb8, rgba[..., 3:]], axis=-1)


@dataclass(frozen=True)
class Look:
    """One sequence's camera (view 0 conditions the model; views 1..K-1 orbit at its elevation), lighting, surface
    remap and sensor. `distance_scale` multiplies `fit_radius(fov_deg)`: 1 just fits the unit cube's bounding
    sphere, larger shows the object smaller. `roll_deg` turns the camera about its viewing axis."""

    fov_deg: float = CONDITION_FOV_DEG
    elevation_deg: float = CONDITION_ELEVATION_DEG
    azimuth_deg: float = 0.0
    distance_scale: float = 1.0
    roll_deg: float = 0.0
    lighting: Lighting = field(default_factory=Lighting)
    recolour: Recolour = field(default_factory=Recolour)
    sensor: Sensor = field(default_factory=Sensor)

    def cameras(self, views: int) -> list[Camera]:
        """`views` cameras: view 0 at this look's azimuth, the rest at even azimuth steps from it."""
        if views < 1:
            raise InputError(f"views must be >= 1, got {views}")
        radius = self.distance_scale * fit_radius(self.fov_deg)
        elev, roll = math.radians(self.elevation_deg), math.radians(self.roll_deg)
        cams = []
        for k in range(views):
            azim = math.radians(self.azimuth_deg) + 2.0 * math.pi * k / views
            eye = radius * np.array([math.cos(elev) * math.sin(azim), math.sin(elev), math.cos(elev) * math.cos(azim)])
            back = eye / np.linalg.norm(eye)
            right = np.cross((0.0, 1.0, 0.0), back)
            right /= np.linalg.norm(right)
            up = np.cross(back, right)
            rolled = math.cos(roll) * up + math.sin(roll) * right  # up turned about the viewing axis
            up_vector = (0.0, 1.0, 0.0) if roll == 0 else tuple(float(v) for v in rolled)
            cams.append(Camera(eye=tuple(float(v) for v in eye), up=up_vector, fov_deg=self.fov_deg))
        return cams

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Look:
        try:
            return cls(
                **{
                    **d,
                    "lighting": Lighting(**_tuples(d["lighting"])),
                    "recolour": Recolour(**_tuples(d["recolour"])),
                    "sensor": Sensor(**d["sensor"]),
                }
            )
        except (KeyError, TypeError) as exc:
            raise InputError(f"not a valid look record ({exc}); rebuild the sequence") from None


def _tuples(d: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


def sample_look(rng: np.random.Generator, unseen: bool = False) -> Look:
    """A random look: wide camera, lighting, material and sensor ranges around the canonical one. `unseen` draws
    cameras and key lights from outside those ranges (narrow or very wide lenses, steep views, more roll, light
    from behind), for held-out sets that test what training never showed."""
    if unseen:
        fov = float(rng.uniform(15.0, 23.0) if rng.random() < 0.5 else rng.uniform(63.0, 75.0))
        elevation, roll = float(rng.uniform(48.0, 65.0)), float(rng.choice([-1, 1]) * rng.uniform(9.0, 15.0))
    else:
        fov, elevation, roll = float(rng.uniform(25.0, 60.0)), float(rng.uniform(-5.0, 45.0)), float(rng.uniform(-8, 8))
    lighting = _sample_lighting(rng, from_behind=unseen)
    pattern = str(rng.choice(["none", "none", "stripes", "checker"]))
    recolour = Recolour(
        hue_shift=float(rng.uniform(0.0, 1.0)) if rng.random() < 0.7 else 0.0,
        saturation=float(rng.uniform(0.3, 1.3)),
        value=float(rng.uniform(0.6, 1.15)),
        metallic_add=float(rng.uniform(0.0, 0.6)) if rng.random() < 0.2 else 0.0,
        roughness_add=float(rng.uniform(-0.2, 0.2)),
        alpha_scale=float(rng.uniform(0.5, 1.6)),
        pattern=pattern,
        pattern_cells=float(rng.uniform(3.0, 8.0)),
        pattern_colour=tuple(
            float(c) for c in colorsys.hsv_to_rgb(rng.random(), rng.uniform(0, 0.9), rng.uniform(0.2, 1))
        ),
        pattern_axis=tuple(float(c) for c in np.eye(3)[rng.integers(3)]),
    )
    sensor = Sensor(
        blur_sigma=float(rng.uniform(0.3, 1.2)) if rng.random() < 0.5 else 0.0,
        noise_std=float(rng.uniform(0.0, 0.03)),
        jpeg_quality=int(rng.integers(35, 96)) if rng.random() < 0.5 else 100,
    )
    return Look(
        fov_deg=fov,
        elevation_deg=elevation,
        azimuth_deg=float(rng.uniform(0.0, 360.0)),
        distance_scale=float(rng.uniform(0.95, 1.5)),
        roll_deg=roll,
        lighting=lighting,
        recolour=recolour,
        sensor=sensor,
    )


def _sample_lighting(rng: np.random.Generator, from_behind: bool = False) -> Lighting:
    """Key light from anywhere in front (view space; behind the object when `from_behind`: a rim light), its
    colour between warm and cool, a weaker fill, and an environment (sky / ground ambient) from dim to bright."""

    def direction(z_min: float, behind: bool = False) -> tuple[float, float, float]:
        v = rng.normal(size=3)
        v[2] = -abs(v[2]) - 0.3 if behind else abs(v[2]) + z_min
        return tuple(float(c) for c in v / np.linalg.norm(v))

    def tint(strength: float) -> np.ndarray:
        warm = rng.uniform(-1.0, 1.0)  # -1 cool (blue) .. 1 warm (orange)
        return np.clip(1.0 + strength * np.array([warm, 0.1 * warm, -warm]), 0.0, 2.0)

    key = Lighting().key_color * tint(0.15) * rng.uniform(0.6, 1.4)
    fill = (
        Lighting().fill_color * tint(0.2) * rng.uniform(0.3, 1.6) * (2.0 if from_behind else 1.0)
    )  # backlit: a front fill
    env = tint(0.25) * rng.uniform(0.4, 1.6)
    return Lighting(
        key_dir=direction(0.2, from_behind),
        key_color=tuple(float(c) for c in key),
        fill_dir=direction(0.0),
        fill_color=tuple(float(c) for c in fill),
        sky=tuple(float(c) for c in np.asarray(Lighting().sky) * env),
        ground=tuple(float(c) for c in np.asarray(Lighting().ground) * env),
    )


def look_for(kind: str, seed: int) -> Look:
    """The look of a sequence: 'canonical', or 'random' / 'unseen' drawn from the sequence's own seed (its own
    stream, so the scene's shapes are the same under any look). 'mixed' is canonical for half of the seeds and the
    'random' look for the others: a training set that widens the world without giving up the canonical view."""
    if kind not in LOOKS:
        raise InputError(f"unknown look {kind!r}: choose one of {', '.join(LOOKS)}")
    if kind == "mixed":
        kind = "canonical" if np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x100D]).random() < 0.5 else "random"
    if kind == "canonical":
        return Look()
    return sample_look(np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x100C]), unseen=kind == "unseen")


def canonical_sequences(root: Path) -> set[str]:
    """Ids of the sequences of the dataset at `root` seen with the canonical look (as their meta.json records it;
    a sequence without a look record was built before looks were drawn, so it is canonical): flow training on a
    `--look mixed` draw selects its canonical half with these."""
    ids = set()
    for entry in read_manifest(root)["sequences"]:
        meta = read_json(root / entry["path"] / META)
        if "look" not in meta or Look.from_dict(meta["look"]) == Look():
            ids.add(entry["id"])
    return ids
