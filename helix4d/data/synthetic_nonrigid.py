"""Scene kinds with non-rigid motion of a fixed-topology surface: `deform` (bending, twisting, travelling waves
along a bar) and `sheet` (an open, single-layer waving flag or banner).

Same contract as `synthetic_rigid`: `sample_<kind>(rng) -> params`, `build_<kind>(params, times) -> frames`.
"""

from __future__ import annotations

import numpy as np

from helix4d.data.synthetic_shapes import (
    Frames,
    Params,
    Part,
    grid_sheet,
    material_pbr,
    painted,
    primitive,
    profile,
    random_axis,
    rotation,
    sample_material,
    smoothstep,
    swept_bar,
    translation,
)


def _schedule(name: str, s: float) -> float:
    """Deformation amount in [-1, 1] at time s: ramp up, up-and-back, or a full oscillation."""
    if name == "ramp":
        return float(smoothstep(s))
    if name == "pingpong":
        return float(np.sin(np.pi * s))
    return float(np.sin(2.0 * np.pi * s))  # "oscillate"


# ---------------------------------------------------------------------------------------------- deform


def sample_deform(rng: np.random.Generator) -> Params:
    variant = str(rng.choice(["bend", "twist", "wave"]))
    amount = {
        "bend": rng.uniform(0.6, 1.6) * np.pi,  # total bend angle
        "twist": rng.uniform(0.5, 1.5) * np.pi,  # total twist angle end to end
        "wave": rng.uniform(0.08, 0.16),  # wave amplitude / length
    }[variant]
    return {
        "variant": variant,
        "profile": str(rng.choice(["round", "square", "star"])),
        "length": 1.0,
        "radius": float(rng.uniform(0.06, 0.12)),
        "amount": float(amount),
        "wavelength": float(rng.uniform(0.4, 0.8)),
        "schedule": str(rng.choice(["ramp", "pingpong", "oscillate"])),
        "materials": [sample_material(rng), sample_material(rng)],  # colour gradient end to end
        "axis": random_axis(rng),
        "angle": float(rng.uniform(0.0, np.pi)),
    }


def _deform(verts: np.ndarray, p: Params, s: float) -> np.ndarray:
    """Deform a bar lying along x (x in [-L/2, L/2]) at time s."""
    x, y, z = verts[:, 0], verts[:, 1], verts[:, 2]
    length = p["length"]
    amount = p["amount"] * _schedule(p["schedule"], s)
    out = verts.copy()
    if p["variant"] == "bend":
        k = amount / length  # curvature; the centre line becomes an arc of total angle `amount`
        if abs(k) > 1e-6:
            r = 1.0 / k
            theta = k * x
            out[:, 0] = (r - y) * np.sin(theta)
            out[:, 1] = r - (r - y) * np.cos(theta)
    elif p["variant"] == "twist":
        phi = amount * x / length
        out[:, 1] = y * np.cos(phi) - z * np.sin(phi)
        out[:, 2] = y * np.sin(phi) + z * np.cos(phi)
    else:  # travelling wave, like a swimming eel: lateral displacement grows towards the tail
        phase = 2.0 * np.pi * (x / p["wavelength"] - 2.0 * s)
        envelope = 0.3 + 0.7 * (x / length + 0.5)
        out[:, 2] = z + amount * length * envelope * np.sin(phase)
    return out


def build_deform(p: Params, times: np.ndarray) -> Frames:
    bar = swept_bar(profile(p["profile"], p["radius"]), p["length"], rings=48)
    along = (bar.vertices[:, 0] / p["length"] + 0.5)[:, None]  # (V, 1) in [0, 1]
    pbr = (1.0 - along) * material_pbr(p["materials"][0], 1) + along * material_pbr(p["materials"][1], 1)
    rest = Part(np.asarray(bar.vertices), np.asarray(bar.faces), pbr)
    pose = rotation(p["axis"], p["angle"])
    return [[Part(_deform(rest.vertices, p, s), rest.faces, rest.pbr).transformed(pose)] for s in times]


# ---------------------------------------------------------------------------------------------- sheet


def sample_sheet(rng: np.random.Generator) -> Params:
    colours = [sample_material(rng, metal_chance=0.0) for _ in range(int(rng.integers(1, 4)))]
    return {
        "variant": str(rng.choice(["flag", "banner"])),  # attached along a vertical pole / a horizontal rod
        "width": float(rng.uniform(0.8, 1.2)),
        "height": float(rng.uniform(0.5, 0.8)),
        "amplitude": float(rng.uniform(0.06, 0.14)),
        "wavelength": float(rng.uniform(0.35, 0.7)),
        "cycles": float(rng.integers(1, 3)),
        "ripple": float(rng.uniform(0.0, 0.04)),
        "droop": float(rng.uniform(0.0, 0.15)),
        "phase": float(rng.uniform(0.0, 2.0 * np.pi)),
        "stripes": colours,  # bands across the sheet
        "pole": bool(rng.random() < 0.7),
        "pole_material": sample_material(rng),
        "yaw": float(rng.uniform(-0.5, 0.5)),
    }


def build_sheet(p: Params, times: np.ndarray) -> Frames:
    """A single-layer open sheet attached along x = 0, waving with a wave that grows towards the free edge."""
    w, h = p["width"], p["height"]
    sheet = grid_sheet(w, h, nu=28, nv=18)
    rest = np.asarray(sheet.vertices)
    u, v = rest[:, 0] / w, (rest[:, 1] + h / 2) / h  # (V,) in [0, 1]
    bands = np.minimum((v * len(p["stripes"])).astype(int), len(p["stripes"]) - 1)
    pbr = np.concatenate([material_pbr(p["stripes"][b], 1) for b in bands])
    parts_pole = []
    if p["pole"]:
        r = 0.02 * h
        pole = primitive({"shape": "cylinder", "size": [2 * r, 1.5 * h, 2 * r]})
        parts_pole = [painted(pole, p["pole_material"]).transformed(translation([-r, -0.2 * h, 0.0]))]
    # flag: sheet to the right of a vertical pole; banner: rotated so it hangs down from a horizontal rod.
    hang = rotation([0, 0, 1], -np.pi / 2) if p["variant"] == "banner" else np.eye(4)
    attach = rotation([0, 1, 0], p["yaw"]) @ hang
    frames = []
    for s in times:
        phase = 2.0 * np.pi * (rest[:, 0] / p["wavelength"] - p["cycles"] * s) + p["phase"]
        verts = rest.copy()
        verts[:, 2] = p["amplitude"] * u * np.sin(phase) + p["ripple"] * u * np.sin(2 * np.pi * 2.0 * v + phase)
        verts[:, 1] -= p["droop"] * h * u * u
        frames.append(
            [Part(verts, np.asarray(sheet.faces), pbr).transformed(attach)]
            + [part.transformed(attach) for part in parts_pole]
        )
    return frames
