"""Scene kinds made of rigid pieces: `rigid`, `articulated`, `container` and `transparent`.

Each kind is a pair: `sample_<kind>(rng) -> params` (all randomness, JSON-ready) and
`build_<kind>(params, times) -> frames` where `times` (F,) runs from 0 to 1 and a frame is a list of `Part`s.
"""

from __future__ import annotations

import numpy as np

from helix4d.data.synthetic_shapes import (
    Frames,
    Params,
    Part,
    painted,
    primitive,
    random_axis,
    rotation,
    sample_material,
    sample_shape,
    slab,
    smoothstep,
    translation,
)

# ---------------------------------------------------------------------------------------------- rigid bodies


def sample_body(rng: np.random.Generator, alpha: float = 1.0, max_parts: int = 3, travel: float = 0.8) -> Params:
    """A rigid body of 1..max_parts primitives and its path: a translation with a bob, plus a spin."""
    parts = []
    for i in range(int(rng.integers(1, max_parts + 1))):
        offset = [0.0, 0.0, 0.0] if i == 0 else [float(c) for c in 0.45 * np.asarray(random_axis(rng))]
        parts.append(
            {
                **sample_shape(rng, scale=0.6 if i == 0 else 0.35),
                "offset": offset,
                "axis": random_axis(rng),
                "angle": float(rng.uniform(0.0, np.pi)),
                "material": sample_material(rng, alpha=alpha),
            }
        )
    direction = np.asarray(random_axis(rng))
    half = 0.5 * travel * rng.uniform(0.3, 1.0) * direction
    return {
        "parts": parts,
        "path": {
            "start": [float(c) for c in -half],
            "end": [float(c) for c in half],
            "bob": float(rng.uniform(0.0, 0.2)),
            "bob_cycles": float(rng.integers(1, 3)),
            "spin_axis": random_axis(rng),
            "spin": float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5 * np.pi, 2.0 * np.pi)),
        },
    }


def body_parts(body: Params) -> list[Part]:
    """The body's parts in its rest pose."""
    out = []
    for part in body["parts"]:
        pose = translation(part["offset"]) @ rotation(part["axis"], part["angle"])
        out.append(painted(primitive(part), part["material"]).transformed(pose))
    return out


def path_pose(path: Params, s: float) -> np.ndarray:
    """4x4 pose at time s in [0, 1]: eased translation from start to end, a vertical bob, a steady spin."""
    start, end = np.asarray(path["start"]), np.asarray(path["end"])
    pos = start + (end - start) * smoothstep(s)
    pos[1] += path["bob"] * np.sin(2.0 * np.pi * path["bob_cycles"] * s)
    return translation(pos) @ rotation(path["spin_axis"], path["spin"] * s)


def animate_bodies(bodies: list[Params], times: np.ndarray) -> Frames:
    rest = [body_parts(body) for body in bodies]
    return [
        [part.transformed(path_pose(body["path"], s)) for body, parts in zip(bodies, rest) for part in parts]
        for s in times
    ]


def sample_rigid(rng: np.random.Generator) -> Params:
    count = 1 if rng.random() < 0.7 else 2
    bodies = [sample_body(rng) for _ in range(count)]
    if count == 2:  # keep the two bodies apart
        for body, side in zip(bodies, (-0.45, 0.45)):
            for key in ("start", "end"):
                body["path"][key][0] += side
    return {"bodies": bodies}


def build_rigid(p: Params, times: np.ndarray) -> Frames:
    return animate_bodies(p["bodies"], times)


def sample_transparent(rng: np.random.Generator) -> Params:
    """A semi-transparent body (alpha 0.3-0.7) moving, sometimes in front of an opaque one."""
    body = sample_body(rng, alpha=float(rng.uniform(0.3, 0.7)), max_parts=2)
    bodies = [body]
    if rng.random() < 0.5:
        companion = sample_body(rng, max_parts=1, travel=0.2)
        for key in ("start", "end"):
            body["path"][key][2] += 0.35
            companion["path"][key][2] -= 0.35
        bodies.append(companion)
    return {"bodies": bodies}


def build_transparent(p: Params, times: np.ndarray) -> Frames:
    return animate_bodies(p["bodies"], times)


# ---------------------------------------------------------------------------------------------- articulated


def sample_articulated(rng: np.random.Generator) -> Params:
    variant = str(rng.choice(["lid", "door", "arm"]))
    if variant == "arm":
        return {
            "variant": "arm",
            "base": {"radius": float(rng.uniform(0.15, 0.25)), "height": float(rng.uniform(0.08, 0.2))},
            "lengths": [float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.3, 0.5))],
            "thickness": float(rng.uniform(0.06, 0.1)),
            # joint angles from vertical: offset + amplitude * sin(2 pi (cycles s) + phase)
            "joints": [
                {
                    "offset": float(rng.uniform(-0.3, 0.3)),
                    "amplitude": float(rng.uniform(0.4, 0.9)),
                    "cycles": float(rng.uniform(0.5, 1.5)),
                    "phase": float(rng.uniform(0, 2 * np.pi)),
                }
                for _ in range(2)
            ],
            "yaw": float(rng.uniform(-np.pi, np.pi)),
            "tool": sample_shape(rng, scale=0.14, shapes=("sphere", "box", "cone")),
            "materials": [sample_material(rng) for _ in range(3)],  # base, links, joints + tool
        }
    inside = sample_shape(rng, scale=0.22, shapes=("sphere", "box", "torus")) if rng.random() < 0.6 else None
    return {
        "variant": variant,  # "lid": hinged top; "door": hinged front
        "extents": [float(rng.uniform(0.5, 0.9)), float(rng.uniform(0.35, 0.6)), float(rng.uniform(0.45, 0.8))],
        "wall": float(rng.uniform(0.025, 0.05)),
        "max_open": float(rng.uniform(0.45, 0.8) * np.pi),
        "schedule": str(rng.choice(["open", "open_close"])),
        "window": [float(rng.uniform(0.0, 0.3)), float(rng.uniform(0.6, 1.0))],
        "inside": inside,
        "materials": [sample_material(rng) for _ in range(3)],  # body, panel, inside object
        "yaw": float(rng.uniform(-0.6, 0.6)),
    }


def build_articulated(p: Params, times: np.ndarray) -> Frames:
    return _build_arm(p, times) if p["variant"] == "arm" else _build_box(p, times)


def _build_box(p: Params, times: np.ndarray) -> Frames:
    """An open box whose lid (top) or door (front) swings about a hinge on one edge."""
    w, h, d = p["extents"]
    t = p["wall"]
    body_mat, panel_mat, inside_mat = p["materials"]
    walls = [
        slab([w, t, d], [0, -h / 2 + t / 2, 0]),  # bottom
        slab([w, h, t], [0, 0, -d / 2 + t / 2]),  # back
        slab([t, h, d], [-w / 2 + t / 2, 0, 0]),  # left
        slab([t, h, d], [w / 2 - t / 2, 0, 0]),  # right
    ]
    if p["variant"] == "lid":
        walls.append(slab([w, h, t], [0, 0, d / 2 - t / 2]))  # front
        panel = slab([w, t, d], [0, h / 2 + t / 2, 0])
        knob = slab([0.2 * w, t, 1.5 * t], [0, h / 2 + t / 2, d / 2 + 0.75 * t])
        hinge_point, hinge_axis = [0, h / 2, -d / 2], [1.0, 0.0, 0.0]
    else:
        walls.append(slab([w, t, d], [0, h / 2 - t / 2, 0]))  # top
        panel = slab([w, h, t], [0, 0, d / 2 + t / 2])
        knob = slab([1.5 * t, 0.2 * h, 1.5 * t], [w / 2 - 2 * t, 0, d / 2 + 1.5 * t])
        hinge_point, hinge_axis = [-w / 2, 0, d / 2], [0.0, 1.0, 0.0]
    fixed = [painted(m, body_mat) for m in walls]
    if p["inside"] is not None:
        obj = painted(primitive(p["inside"]), inside_mat)
        fixed.append(obj.transformed(translation([0.0, -h / 2 + t + 0.5 * p["inside"]["size"][1], 0.0])))
    moving = [painted(panel, panel_mat), painted(knob, body_mat)]
    s0, s1 = p["window"]
    yaw = rotation([0, 1, 0], p["yaw"])
    frames = []
    for s in times:
        u = (s - s0) / max(s1 - s0, 1e-6)
        amount = smoothstep(u) if p["schedule"] == "open" else np.sin(np.pi * np.clip(u, 0.0, 1.0))
        hinge = rotation(hinge_axis, -p["max_open"] * float(amount), hinge_point)
        frames.append([part.transformed(yaw) for part in fixed] + [part.transformed(yaw @ hinge) for part in moving])
    return frames


def _build_arm(p: Params, times: np.ndarray) -> Frames:
    """A two-link arm on a turntable base: two hinge joints in a vertical plane plus a slow yaw."""
    base_mat, link_mat, joint_mat = p["materials"]
    rb, hb = p["base"]["radius"], p["base"]["height"]
    l1, l2 = p["lengths"]
    th = p["thickness"]
    base = painted(primitive({"shape": "cylinder", "size": [2 * rb, hb, 2 * rb]}), base_mat)
    base = base.transformed(translation([0, hb / 2, 0]))
    link1 = painted(slab([th, l1, th], [0, l1 / 2, 0]), link_mat)
    link2 = painted(slab([0.8 * th, l2, 0.8 * th], [0, l2 / 2, 0]), link_mat)
    joint = painted(primitive({"shape": "sphere", "size": [1.6 * th] * 3}), joint_mat)
    tool = painted(primitive(p["tool"]), joint_mat)
    frames = []
    for s in times:
        a1, a2 = (j["offset"] + j["amplitude"] * np.sin(2 * np.pi * j["cycles"] * s + j["phase"]) for j in p["joints"])
        yaw = rotation([0, 1, 0], p["yaw"] * s)
        shoulder = yaw @ translation([0, hb, 0]) @ rotation([0, 0, 1], -a1)
        elbow = shoulder @ translation([0, l1, 0]) @ rotation([0, 0, 1], -a2)
        wrist = elbow @ translation([0, l2 + 0.5 * p["tool"]["size"][1], 0])
        frames.append(
            [
                base.transformed(yaw),
                joint.transformed(shoulder),
                link1.transformed(shoulder),
                joint.transformed(elbow),
                link2.transformed(elbow),
                tool.transformed(wrist),
            ]
        )
    return frames


# ---------------------------------------------------------------------------------------------- container


def sample_container(rng: np.random.Generator) -> Params:
    """A transparent shell with thick walls (outer and inner surfaces) and an opaque object moving inside."""
    radius, wall = 0.5, float(rng.uniform(0.02, 0.05))
    glass = sample_material(rng, alpha=float(rng.uniform(0.2, 0.5)), metal_chance=0.0)
    glass["color"] = [float(0.6 + 0.4 * c) for c in glass["color"]]  # pale tint
    glass["roughness"] = float(rng.uniform(0.05, 0.3))
    inner = sample_shape(rng, scale=float(rng.uniform(0.2, 0.28)), shapes=("sphere", "box", "torus", "cone", "capsule"))
    # Keep the object inside the cavity: its bounding sphere (<= 0.87 * largest extent) plus its path radius.
    reach = radius - wall - 0.87 * max(inner["size"]) - 0.03
    return {
        "shape": str(rng.choice(["sphere", "box", "cylinder"])),
        "radius": radius,
        "wall": wall,
        "glass": glass,
        "inner": inner,
        "inner_material": sample_material(rng),
        # Lissajous path inside the cavity: amplitude, cycles, phase per axis
        "amplitude": [float(reach * rng.uniform(0.4, 1.0) / np.sqrt(3.0)) for _ in range(3)],
        "cycles": [float(rng.integers(1, 3)) for _ in range(3)],
        "phase": [float(rng.uniform(0, 2 * np.pi)) for _ in range(3)],
        "spin_axis": random_axis(rng),
        "spin": float(rng.uniform(np.pi, 3 * np.pi)),
    }


def _shell(shape: str, radius: float) -> Params:
    size = [2 * radius] * 3
    return {"shape": shape, "size": size}


def build_container(p: Params, times: np.ndarray) -> Frames:
    outer = painted(primitive(_shell(p["shape"], p["radius"])), p["glass"])
    inner_wall = painted(primitive(_shell(p["shape"], p["radius"] - p["wall"])), p["glass"])
    inner_wall = Part(inner_wall.vertices, inner_wall.faces[:, ::-1], inner_wall.pbr)  # faces point into the cavity
    obj = painted(primitive(p["inner"]), p["inner_material"])
    amp, cyc, ph = (np.asarray(p[k]) for k in ("amplitude", "cycles", "phase"))
    frames = []
    for s in times:
        pos = amp * np.sin(2 * np.pi * cyc * s + ph)
        pose = translation(pos) @ rotation(p["spin_axis"], p["spin"] * s)
        frames.append([outer, inner_wall, obj.transformed(pose)])
    return frames
