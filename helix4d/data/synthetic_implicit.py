"""Scene kinds whose topology or volume changes, meshed per frame from implicit fields (metaballs) with marching
cubes: `split` (one body pinching into 2-3), `merge` (the reverse) and `grow` (a plant growing, a blob melting onto
the floor, a balloon inflating).

Same contract as `synthetic_rigid`: `sample_<kind>(rng) -> params`, `build_<kind>(params, times) -> frames`.
The marching-cubes box and cell size are fixed for the whole sequence, so frames are sampled consistently.
"""

from __future__ import annotations

import numpy as np

from helix4d.data.synthetic_shapes import (
    Frames,
    Params,
    Part,
    gaussian_blobs,
    implicit_part,
    material_pbr,
    painted,
    primitive,
    random_axis,
    rotation,
    sample_material,
    sample_shape,
    smoothstep,
)

ISO = 0.5
_CELLS = 44  # marching-cubes cells along the longest side of a sequence's box (keeps frames under ~5k faces)


def _blend_pbr(fields: np.ndarray, materials: list[Params]) -> np.ndarray:
    """Per-vertex PBR (V, 6) mixing blob materials by each blob's share of the field (V, B)."""
    share = fields / np.maximum(fields.sum(axis=1, keepdims=True), 1e-12)
    table = np.concatenate([material_pbr(m, 1) for m in materials])  # (B, 6)
    return share @ table


# ---------------------------------------------------------------------------------------------- split / merge


def sample_split(rng: np.random.Generator) -> Params:
    """One blob whose 2-3 lobes drift apart until they separate (the component count goes 1 -> n)."""
    children = 2 if rng.random() < 0.7 else 3
    axis = np.asarray(random_axis(rng))
    if children == 2:
        directions = [axis, -axis]
    else:  # three directions 120 degrees apart in a random plane
        ortho = np.cross(axis, random_axis(rng))
        ortho /= np.linalg.norm(ortho)
        directions = [np.cos(a) * axis + np.sin(a) * ortho for a in (0.0, 2 * np.pi / 3, 4 * np.pi / 3)]
    sigma = 0.3
    return {
        "directions": [[float(c) for c in d] for d in directions],
        "sigma": sigma,
        "radii": [[float(sigma * rng.uniform(0.8, 1.2)) for _ in range(3)] for _ in directions],
        "weights": [float(rng.uniform(0.85, 1.3)) for _ in directions],
        "start_separation": float(sigma * rng.uniform(0.1, 0.4)),
        "end_separation": float(sigma * rng.uniform(3.6, 4.2)),
        "window": [float(rng.uniform(0.0, 0.2)), float(rng.uniform(0.8, 1.0))],
        "materials": [sample_material(rng) for _ in directions],
        "spin_axis": random_axis(rng),
        "spin": float(rng.uniform(-0.5, 0.5) * np.pi),
    }


def sample_merge(rng: np.random.Generator) -> Params:
    """Two or three separate blobs that flow together into one (the split played backwards)."""
    return sample_split(rng)


def _blob_centres(p: Params, s: float) -> np.ndarray:
    s0, s1 = p["window"]
    u = smoothstep((s - s0) / max(s1 - s0, 1e-6))
    separation = p["start_separation"] + (p["end_separation"] - p["start_separation"]) * u
    dirs = np.asarray(p["directions"])  # (B, 3)
    scale = 0.5 if len(dirs) == 2 else 1.0 / np.sqrt(3.0)  # centre distance = separation
    return (rotation(p["spin_axis"], p["spin"] * s)[:3, :3] @ (dirs * separation * scale).T).T


def _build_blobs(p: Params, times: np.ndarray) -> Frames:
    radii, weights = np.asarray(p["radii"]), np.asarray(p["weights"])
    reach = np.max(np.linalg.norm(_blob_centres(p, 1.0), axis=1)) + 2.2 * radii.max()
    spacing = 2.0 * reach / _CELLS
    frames = []
    for s in times:
        centres = _blob_centres(p, s)

        def field(x: np.ndarray) -> np.ndarray:
            return gaussian_blobs(x, centres, radii, weights).sum(axis=1)

        def colour(x: np.ndarray) -> np.ndarray:
            return _blend_pbr(gaussian_blobs(x, centres, radii, weights), p["materials"])

        frames.append([implicit_part(field, [-reach] * 3, [reach] * 3, spacing, colour, ISO)])
    return frames


def build_split(p: Params, times: np.ndarray) -> Frames:
    return _build_blobs(p, times)


def build_merge(p: Params, times: np.ndarray) -> Frames:
    return _build_blobs(p, 1.0 - times)


# ---------------------------------------------------------------------------------------------- grow


def sample_grow(rng: np.random.Generator) -> Params:
    variant = str(rng.choice(["plant", "melt", "inflate"]))
    floor = sample_material(rng, metal_chance=0.0)
    floor["color"] = [float(0.3 + 0.4 * c) for c in floor["color"]]  # muted
    window = [float(rng.uniform(0.0, 0.2)), float(rng.uniform(0.8, 1.0))]  # when the change happens
    common = {"variant": variant, "floor": floor, "window": window}
    if variant == "plant":
        leaves = int(rng.integers(0, 3))
        return {
            **common,
            "height": float(rng.uniform(0.7, 1.0)),
            "bend": [float(c) for c in rng.uniform(-0.2, 0.2, size=2)],  # sideways offset of the tip (x, z)
            "stem_radius": float(rng.uniform(0.04, 0.07)),
            "cap_radius": [float(rng.uniform(0.12, 0.22)), float(rng.uniform(0.08, 0.18))],  # horizontal, vertical
            "leaves": [
                {
                    "at": float(rng.uniform(0.35, 0.7)),
                    "direction": float(rng.uniform(0, 2 * np.pi)),
                    "radius": float(rng.uniform(0.06, 0.1)),
                }
                for _ in range(leaves)
            ],
            "start": float(rng.uniform(0.15, 0.3)),  # size at the first frame, as a fraction of full grown
            "stem_material": sample_material(rng, metal_chance=0.0),
            "cap_material": sample_material(rng),
        }
    if variant == "melt":
        drips = int(rng.integers(2, 5))
        return {
            **common,
            "radius": float(rng.uniform(0.25, 0.35)),
            "flatten": float(rng.uniform(0.6, 0.8)),  # final height loss (fraction)
            "drips": [
                {"direction": float(rng.uniform(0, 2 * np.pi)), "radius": float(rng.uniform(0.05, 0.09))}
                for _ in range(drips)
            ],
            "material": sample_material(rng),
        }
    return {  # inflate: a primitive swelling from small to full size with a squash-and-stretch wobble
        **common,
        "shape": sample_shape(rng, scale=0.6, shapes=("sphere", "capsule", "torus", "box")),
        "start": float(rng.uniform(0.2, 0.4)),
        "wobble": float(rng.uniform(0.05, 0.2)),
        "material": sample_material(rng),
    }


def build_grow(p: Params, times: np.ndarray) -> Frames:
    return {"plant": _build_plant, "melt": _build_melt, "inflate": _build_inflate}[p["variant"]](p, times)


def _growth(p: Params, s: float) -> float:
    s0, s1 = p["window"]
    return float(smoothstep((s - s0) / max(s1 - s0, 1e-6)))


def _floor(p: Params, radius: float) -> Part:
    """A thin disc whose top is the plane y = 0."""
    disc = primitive({"shape": "cylinder", "size": [2 * radius, 0.04, 2 * radius]})
    disc.apply_translation([0.0, -0.02, 0.0])
    return painted(disc, p["floor"])


def _segment_field(x: np.ndarray, a: np.ndarray, b: np.ndarray, radius: float) -> np.ndarray:
    """exp(-(distance to segment ab / radius)^2) for points (N, 3)."""
    ab = b - a
    t = np.clip((x - a) @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    d = x - (a + t[:, None] * ab)
    return np.exp(-np.sum(d * d, axis=1) / radius**2)


def _build_plant(p: Params, times: np.ndarray) -> Frames:
    full = p["height"] + p["cap_radius"][1]
    half_width = max(abs(c) for c in p["bend"]) + max(p["cap_radius"][0], 0.2) + 0.1
    lo, hi = [-half_width, -0.05, -half_width], [half_width, full + 0.1, half_width]
    spacing = max(hi[1] - lo[1], 2 * half_width) / _CELLS
    floor = _floor(p, 1.2 * half_width)
    frames = []
    for s in times:
        g = p["start"] + (1.0 - p["start"]) * _growth(p, s)
        height = p["height"] * g
        tip = np.array([p["bend"][0] * g, height, p["bend"][1] * g])
        mid = np.array([0.3 * tip[0], 0.5 * height, 0.3 * tip[2]])
        stem_r = p["stem_radius"] * (0.6 + 0.4 * g)
        cap = np.array([p["cap_radius"][0], p["cap_radius"][1], p["cap_radius"][0]]) * g
        leaf_centres = [
            mid * leaf["at"] * 2.0 if leaf["at"] < 0.5 else mid + (tip - mid) * (2.0 * leaf["at"] - 1.0)
            for leaf in p["leaves"]
        ]
        leaf_centres = [
            c + 1.5 * leaf["radius"] * g * np.array([np.cos(leaf["direction"]), 0.0, np.sin(leaf["direction"])])
            for c, leaf in zip(leaf_centres, p["leaves"])
        ]
        leaf_radii = [leaf["radius"] * g * np.array([1.6, 0.5, 1.6]) for leaf in p["leaves"]]

        def parts(x: np.ndarray) -> np.ndarray:  # (N, 2): stem + leaves, cap
            stem = np.maximum(_segment_field(x, np.zeros(3), mid, stem_r), _segment_field(x, mid, tip, stem_r))
            if leaf_centres:
                leaves = gaussian_blobs(x, np.asarray(leaf_centres), np.asarray(leaf_radii), np.ones(len(leaf_radii)))
                stem = stem + leaves.sum(axis=1)
            head = gaussian_blobs(x, tip[None], cap[None], np.ones(1))[:, 0]
            return np.stack([stem, head], axis=1)

        body = implicit_part(
            lambda x: parts(x).sum(axis=1),
            lo,
            hi,
            spacing,
            lambda x: _blend_pbr(parts(x) ** 4, [p["stem_material"], p["cap_material"]]),
            ISO,
        )
        frames.append([floor, body])
    return frames


def _build_melt(p: Params, times: np.ndarray) -> Frames:
    r = p["radius"]
    spread = 1.0 / np.sqrt(1.0 - p["flatten"])  # volume-preserving widening at the end
    half_width = r * spread * 1.6 + 0.1
    lo, hi = [-half_width, -0.05, -half_width], [half_width, 2.2 * r, half_width]
    spacing = 2 * half_width / _CELLS
    floor = _floor(p, 1.1 * half_width)
    frames = []
    for s in times:
        m = _growth(p, s)
        height = 1.0 - p["flatten"] * m
        width = 1.0 / np.sqrt(height)
        centre = np.array([[0.0, 0.9 * r * height, 0.0]])
        radii = np.array([[r * width, r * height, r * width]])
        drip_c = [
            [
                np.cos(d["direction"]) * r * width * (0.6 + 0.5 * m),
                r * (1.2 - 1.1 * m) * height + 0.05 * (1 - m),
                np.sin(d["direction"]) * r * width * (0.6 + 0.5 * m),
            ]
            for d in p["drips"]
        ]
        drip_r = [[d["radius"] * (1 + m)] * 2 + [d["radius"] * (1 + m)] for d in p["drips"]]
        centres = np.concatenate([centre, np.asarray(drip_c)])
        all_radii = np.concatenate([radii, np.asarray(drip_r)])
        weights = np.concatenate([[1.2], np.full(len(drip_c), 0.7)])

        def field(x: np.ndarray) -> np.ndarray:
            return gaussian_blobs(x, centres, all_radii, weights).sum(axis=1)

        def colour(x: np.ndarray) -> np.ndarray:
            return material_pbr(p["material"], len(x))

        frames.append([floor, implicit_part(field, lo, hi, spacing, colour, ISO)])
    return frames


def _build_inflate(p: Params, times: np.ndarray) -> Frames:
    base = painted(primitive(p["shape"]), p["material"])
    size = p["shape"]["size"]
    floor = _floor(p, 0.9 * max(size[0], size[2]) + 0.1)
    frames = []
    for s in times:
        g = p["start"] + (1.0 - p["start"]) * _growth(p, s)
        squash = 1.0 + p["wobble"] * np.sin(4.0 * np.pi * s) * (1.0 - g) * 2.0
        scale = np.diag([g / np.sqrt(squash), g * squash, g / np.sqrt(squash), 1.0])
        lift = np.eye(4)
        lift[1, 3] = -base.vertices[:, 1].min() * g * squash  # rest on the floor
        frames.append([floor, base.transformed(lift @ scale)])
    return frames
