"""A seeded procedural 4D world for training and testing: animated scenes built in pure Python (trimesh, numpy,
scikit-image), one `kind` per phenomenon the model must handle.

    spec = sample_scene(seed=7, kind="split", frames=16)  # all randomness, JSON-serialisable
    meshes = build_frames(spec)    # 16 trimeshes, per-vertex PBR, the whole sequence in the unit cube
    same = build_frames(SceneSpec.from_dict(json.loads(json.dumps(spec.to_dict()))))  # identical meshes

Kinds: rigid motion, articulation (lids, doors, a two-link arm), non-rigid deformation (bend, twist, wave), open
single-layer sheets (flags), topology changes (split, merge), transparent containers with an object inside
(inner surfaces), semi-transparent moving objects, and growth / melting. Meshes stay small (<= ~5k faces a frame)
because they are voxelised at R = 32..64.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trimesh

from helix4d.data import synthetic_implicit, synthetic_nonrigid, synthetic_rigid
from helix4d.data.synthetic_shapes import Part, to_trimesh
from helix4d.errors import InputError

KINDS: tuple[str, ...] = (
    "rigid",
    "articulated",
    "deform",
    "sheet",
    "split",
    "merge",
    "container",
    "transparent",
    "grow",
)

# kind -> (sampler(rng) -> params, builder(params, times (F,) in [0, 1]) -> per-frame parts)
_KIND_FUNCTIONS: dict[str, tuple[Callable[..., dict], Callable[..., list[list[Part]]]]] = {
    "rigid": (synthetic_rigid.sample_rigid, synthetic_rigid.build_rigid),
    "articulated": (synthetic_rigid.sample_articulated, synthetic_rigid.build_articulated),
    "deform": (synthetic_nonrigid.sample_deform, synthetic_nonrigid.build_deform),
    "sheet": (synthetic_nonrigid.sample_sheet, synthetic_nonrigid.build_sheet),
    "split": (synthetic_implicit.sample_split, synthetic_implicit.build_split),
    "merge": (synthetic_implicit.sample_merge, synthetic_implicit.build_merge),
    "container": (synthetic_rigid.sample_container, synthetic_rigid.build_container),
    "transparent": (synthetic_rigid.sample_transparent, synthetic_rigid.build_transparent),
    "grow": (synthetic_implicit.sample_grow, synthetic_implicit.build_grow),
}

MAX_FRAMES = 512
# The sequence's bounding box is scaled to span [-0.5 + MARGIN, 0.5 - MARGIN] along its longest side.
MARGIN = 0.05


@dataclass
class SceneSpec:
    """Everything that defines one synthetic sequence: `kind`, `seed`, `frames` and every sampled parameter.

    `params` holds only JSON types, so `to_dict()` / `from_dict()` round-trip through JSON and
    `build_frames` rebuilds exactly the same meshes from it.
    """

    kind: str
    seed: int
    frames: int = 16
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"unknown scene kind {self.kind!r}: choose one of {', '.join(KINDS)}.")
        if not isinstance(self.frames, int) or not 1 <= self.frames <= MAX_FRAMES:
            raise InputError(f"frames must be an integer in 1..{MAX_FRAMES}, got {self.frames!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seed": self.seed, "frames": self.frames, "params": copy.deepcopy(self.params)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneSpec:
        missing = {"kind", "seed", "frames", "params"} - set(data)
        if missing:
            raise InputError(f"scene spec is missing {sorted(missing)}: write it with SceneSpec.to_dict().")
        return cls(
            kind=data["kind"], seed=int(data["seed"]), frames=int(data["frames"]), params=copy.deepcopy(data["params"])
        )


def sample_scene(seed: int, kind: str | None = None, frames: int = 16) -> SceneSpec:
    """Sample a scene from `seed` (the kind too, when `kind` is None). Same arguments, same spec."""
    rng = np.random.default_rng(seed)
    if kind is None:
        kind = KINDS[int(rng.integers(len(KINDS)))]
    if kind not in KINDS:
        raise InputError(f"unknown scene kind {kind!r}: choose one of {', '.join(KINDS)}.")
    sampler, _ = _KIND_FUNCTIONS[kind]
    return SceneSpec(kind=kind, seed=int(seed), frames=frames, params=sampler(rng))


def frame_times(frames: int) -> np.ndarray:
    """Normalised times (F,) in [0, 1] of the frames, so a scene means the same motion at any frame count."""
    return np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)


def build_frames(spec: SceneSpec) -> list[trimesh.Trimesh]:
    """One trimesh per frame (per-vertex PBR: vertex_colors RGBA, vertex_attributes metallic / roughness).

    The whole sequence shares one normalisation (centre of its bounding box to the origin, longest side to
    1 - 2 * MARGIN), so motion and growth survive and every frame lies in the unit cube.
    """
    _, builder = _KIND_FUNCTIONS[spec.kind]
    frames = builder(spec.params, frame_times(spec.frames))
    corners = np.array([[p.vertices.min(0), p.vertices.max(0)] for parts in frames for p in parts])  # (P, 2, 3)
    lo, hi = corners[:, 0].min(0), corners[:, 1].max(0)
    scale = (1.0 - 2.0 * MARGIN) / float(np.max(hi - lo))
    normalise = np.diag([scale, scale, scale, 1.0])
    normalise[:3, 3] = -scale * (lo + hi) / 2.0
    return [to_trimesh([part.transformed(normalise) for part in parts]) for parts in frames]
