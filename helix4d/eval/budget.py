"""`helix4d eval budget DATA`: the error budget (docs/design.md §12) — how much error each stage of a model adds.

On every sequence of a held-out dataset (ground truth: the source meshes, rebuilt from the recorded scene spec of
synthetic sequences; the dataset's O-Voxels meshed for imported assets) it scores, under one protocol:

ceiling      the ground truth's own O-Voxels meshed: what the format at this resolution can show at best
vae          the geometry and material SC-VAEs' round trip (encode, decode with their own pruning)
stages_2_3   stages 2 and 3 sampled on the true coarse structure (stage 1 replaced by the truth), temporal mode
temporal     the whole pipeline, Helix4D's temporal mode
cleaned      the temporal row's meshes after the export's surface clean-up (`helix4d.export.cleanup`), as written
per_frame    the whole pipeline, the static model on every frame
video        the whole pipeline (temporal) on the sequence's video.mp4 through `generate`'s own decoding, matting
             and crop: what a user gets, against the dataset's renders (the rows above)

Besides the protocol's metrics (CD-3D, CD-4D, F-score, jitter), every row reports `boundary_edges` (edges with one
face per frame: hole rims, and the true rims of open sheets — compare with the ceiling row), `empty_frames`,
`colour_error` (mean |Δ| per channel between each output voxel's base colour and that of the nearest true voxel),
`colour_delta_e` (the same pairs' CIE76 ΔE: hue-sensitive, above ~10 is another colour), `object_colour_error` (|Δ|
of the frame's mean base colour), `alpha_error` (as colour_error, for alpha) and, where it applies, `coarse_iou`:
the coarse structure's IoU against the truth (the SS-VAE's round trip in the vae row, stage 1's generated structure
in the pipeline rows).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import trimesh
from scipy.spatial import cKDTree

from helix4d.errors import InputError
from helix4d.eval.metrics import delta_e
from helix4d.eval.protocols import OursProtocol, Protocol, evaluate_sequence
from helix4d.eval.tables import cell, finite, nanmean
from helix4d.export.cleanup import boundary_edges, clean_mesh
from helix4d.ovoxel import OVoxel
from helix4d.ovoxel.representation import voxel_features
from helix4d.pipeline.options import SamplingOptions

ROWS: dict[str, str] = {
    "ceiling": "O-Voxels of the ground truth (the format's ceiling)",
    "vae": "geometry + material SC-VAE round trip, own pruning (coarse IoU: SS-VAE round trip)",
    "stages_2_3": "stages 2 + 3 given the true coarse structure (temporal)",
    "temporal": "full pipeline, temporal (Helix4D)",
    "cleaned": "full pipeline, temporal, after the export's surface clean-up (the meshes as written)",
    "per_frame": "full pipeline, per-frame (static model on every frame)",
    "video": "full pipeline, temporal, from the sequence's video.mp4 as `generate` reads it (decoding, matting, crop)",
}
HEADLINE = (
    "cd_3d",
    "cd_4d",
    "f_score@0.02",
    "jitter_abs",
    "coarse_iou",
    "boundary_edges",
    "empty_frames",
    "colour_error",
    "colour_delta_e",
    "object_colour_error",
    "alpha_error",
)

Progress = Callable[[str, int, int], None]  # (what is running, completed, total)


@dataclass
class BudgetSequence:
    """One sequence's metrics per row (NaN where a row does not apply)."""

    id: str
    kind: str
    frames: int
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class BudgetReport:
    settings: dict[str, Any]
    sequences: list[BudgetSequence]

    @property
    def kinds(self) -> list[str]:
        return sorted({s.kind for s in self.sequences})

    def mean(self, row: str, kind: str | None = None) -> dict[str, float]:
        """Metric means of one row over the sequences (of one `kind`, if given), NaNs skipped."""
        chosen = [s.rows[row] for s in self.sequences if (kind is None or s.kind == kind) and row in s.rows]
        names = list(dict.fromkeys(k for r in chosen for k in r))
        return {n: nanmean([r.get(n, math.nan) for r in chosen]) for n in names}

    def table(self) -> str:
        """Markdown: settings, the budget averaged over all sequences, then CD-3D / F-score per phenomenon."""
        s = self.settings
        lines = [
            f"error budget of {s['model']} on {s['dataset']} ({s['sequences']} sequences, {s['frames']})",
            f"seen as: look {s.get('look', 'canonical')}, renderer {s.get('renderer', 'raster')} "
            "(the dataset's settings)",
            f"ground truth: {s['ground_truth']}; protocol {s['protocol']} ({s['units']}), {s['points']} points/frame",
            f"sampling: {s['steps']} steps, seed {s['seed']}, device {s['device']}",
            "",
            "| row | " + " | ".join(HEADLINE) + " |",
            "|---" * (len(HEADLINE) + 1) + "|",
        ]
        for row in ROWS:
            means = self.mean(row)
            lines.append(f"| {row} | " + " | ".join(cell(means.get(k, math.nan), 3) for k in HEADLINE) + " |")
        lines += [
            "",
            "per phenomenon (CD-3D / F-score@0.02):",
            "",
            "| kind | " + " | ".join(ROWS) + " |",
            "|---" * (len(ROWS) + 1) + "|",
        ]
        for kind in self.kinds:
            cells = []
            for row in ROWS:
                m = self.mean(row, kind)
                cells.append(f"{cell(m.get('cd_3d', math.nan), 3)} / {cell(m.get('f_score@0.02', math.nan), 3)}")
            lines.append(f"| {kind} | " + " | ".join(cells) + " |")
        lines += ["", "rows:"] + [f"  {name}: {text}" for name, text in ROWS.items()]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "mean": {row: finite(self.mean(row)) for row in ROWS},
            "by_kind": {k: {row: finite(self.mean(row, k)) for row in ROWS} for k in self.kinds},
            "sequences": [
                {
                    "id": s.id,
                    "kind": s.kind,
                    "frames": s.frames,
                    "seconds": s.seconds,
                    "rows": {r: finite(m) for r, m in s.rows.items()},
                }
                for s in self.sequences
            ],
        }


def run_budget(
    dataset: str | Path,
    model: str | Path | None = None,
    sequences: int | None = None,
    frames: int | None = None,
    steps: int | None = 12,
    seed: int = 0,
    device: str = "cpu",
    protocol: Protocol | None = None,
    rows: Sequence[str] = tuple(ROWS),
    progress: Progress | None = None,
) -> BudgetReport:
    """The error budget of `model` (default: the shipped demo model) on the first `sequences` sequences of a
    dataset, each clipped to its first `frames` frames; `rows` picks a subset of `ROWS`."""
    from helix4d.data.dataset import SequenceDataset
    from helix4d.pipeline.helix4d import Helix4DPipeline

    protocol = protocol or OursProtocol()
    unknown = [r for r in rows if r not in ROWS]
    if unknown or not rows:
        raise InputError(f"--rows takes a comma-separated subset of {','.join(ROWS)}, got {','.join(rows) or 'none'}")
    for name, value in (("--sequences", sequences), ("--frames", frames), ("--steps", steps)):
        if value is not None and value < 1:
            raise InputError(f"{name} must be >= 1, got {value}")
    data = SequenceDataset(dataset)
    entries = data.sequences[:sequences]
    if not entries:
        raise InputError(f"{dataset} holds no finished sequences; build it with `helix4d data synth`")
    pipe = Helix4DPipeline.from_pretrained(model, device=device)
    if (data.settings.image_size, data.settings.resolution) != (pipe.config.image_size, pipe.config.resolution):
        raise InputError(
            f"the dataset has images of {data.settings.image_size} px and O-Voxels at "
            f"{data.settings.resolution}³, the model takes {pipe.config.image_size} px and "
            f"{pipe.config.resolution}³; build the dataset with the model's settings"
        )
    if not pipe.architecture.own_vaes and "vae" in rows:
        rows = [r for r in rows if r != "vae"]  # e.g. converted TRELLIS.2 folders: decoders only, no round trip
    results, sources = [], set()
    for i, entry in enumerate(entries):
        if progress:
            progress(f"budget {entry['id']}", i, len(entries))
        clock = time.perf_counter()
        result, source = _budget_sequence(pipe, data.root / entry["path"], frames, rows, steps, seed, protocol)
        result.seconds = time.perf_counter() - clock
        results.append(result)
        sources.add(source)
    if progress:
        progress("done", len(entries), len(entries))
    settings = {
        "dataset": str(dataset),
        "sequences": len(entries),
        "look": data.settings.look,
        "renderer": data.settings.renderer,
        "frames": f"first {frames} frames" if frames else "all frames",
        "model": str(model) if model else "demo (shipped)",
        "model_trained": pipe.config.trained,
        "ground_truth": " and ".join(sorted(sources)),
        "protocol": protocol.name,
        "units": protocol.units if protocol.align else "no alignment: the unit cube",
        "points": getattr(protocol, "points", getattr(protocol, "samples", None)),
        "steps": steps if steps is not None else "model default",
        "seed": seed,
        "device": str(pipe.device),
        "rows": list(rows),
    }
    return BudgetReport(settings, results)


@torch.no_grad()
def _budget_sequence(
    pipe: Any, folder: Path, frames: int | None, rows: Sequence[str], steps: int | None, seed: int, protocol: Protocol
) -> tuple[BudgetSequence, str]:
    from helix4d.data.dataset import clip, load_sequence
    from helix4d.data.layout import VIDEO
    from helix4d.ovoxel import ovoxel_to_mesh

    # Framed over the whole sequence, then cut: the ground truth lives in the whole sequence's box, so images
    # framed over the first frames only would show a moving object elsewhere than its truth (coarse IoU 0.66
    # instead of 0.92 for one model on its own training sequences).
    sample = load_sequence(folder)
    count = len(sample["ovoxels"])
    if frames and count < frames:
        raise InputError(f"{folder} has {count} frames, fewer than --frames {frames}")
    if frames:
        sample, count = clip(sample, 0, frames), frames
    truth = sample["ovoxels"]
    gt, source = ground_truth_meshes(folder, truth)
    images = sample["images"].numpy()
    true_coarse = coarse_voxels(truth, pipe.geometry_vae.downsampling)
    result = BudgetSequence(sample["id"], sample["kind"], count)

    def score(ovoxels: list[OVoxel], coarse: list[np.ndarray] | None, cleaned: bool = False) -> dict[str, float]:
        meshes = [ovoxel_to_mesh(v) for v in ovoxels]
        if cleaned:
            meshes = [clean_mesh(m) if len(m.faces) else m for m in meshes]
        metrics = evaluate_sequence(meshes, gt, protocol).metrics
        metrics.update(boundary_edges=float(np.mean([boundary_edge_count(m) for m in meshes])))
        metrics.update(material_errors(ovoxels, truth))
        if coarse is not None:
            metrics["coarse_iou"] = float(np.mean([voxel_iou(p, t) for p, t in zip(coarse, true_coarse)]))
        return metrics

    if "ceiling" in rows:
        result.rows["ceiling"] = score(truth, None)
    if "vae" in rows:
        ovoxels, coarse = vae_round_trip(pipe, truth)
        result.rows["vae"] = score(ovoxels, coarse)
    sampling = SamplingOptions(seed=seed, steps=steps)
    if "stages_2_3" in rows:
        asset = pipe.generate(images, sampling, coarse=[torch.from_numpy(c) for c in true_coarse])
        result.rows["stages_2_3"] = score(asset.ovoxels, None)
    if "temporal" in rows or "cleaned" in rows:  # one temporal generation for both rows
        asset = pipe.generate(images, dataclasses.replace(sampling, mode="temporal"))
        if "temporal" in rows:
            result.rows["temporal"] = score(asset.ovoxels, asset.coarse)
        if "cleaned" in rows:
            result.rows["cleaned"] = score(asset.ovoxels, asset.coarse, cleaned=True)
    if "per_frame" in rows:
        asset = pipe.generate(images, dataclasses.replace(sampling, mode="per-frame"))
        result.rows["per_frame"] = score(asset.ovoxels, asset.coarse)
    if "video" in rows:
        asset = pipe(folder / VIDEO, dataclasses.replace(sampling, mode="temporal"), max_frames=count)
        result.rows["video"] = score(asset.ovoxels, asset.coarse)
    return result, source


# ------------------------------------------------------------------------------------------------ pieces


def ground_truth_meshes(folder: Path, ovoxels: list[OVoxel]) -> tuple[list[trimesh.Trimesh], str]:
    """The source meshes of a synthetic sequence (rebuilt from its recorded spec, already in the unit cube), else
    the dataset's O-Voxels meshed; and which of the two it is."""
    from helix4d.data import layout
    from helix4d.data.look import Look
    from helix4d.data.synthetic import SceneSpec, build_frames
    from helix4d.ovoxel import ovoxel_to_mesh

    meta = layout.read_json(folder / layout.META)
    source = meta["source"]
    if source.get("type") == "synthetic":
        meshes = build_frames(SceneSpec.from_dict(source["spec"]))[: len(ovoxels)]
        if "look" in meta:  # a randomised look recoloured the surfaces the model saw (and the dataset's O-Voxels)
            meshes = Look.from_dict(meta["look"]).recolour.apply(meshes)
        return meshes, "source meshes (synthetic spec)"
    return [ovoxel_to_mesh(v) for v in ovoxels], "the dataset's O-Voxels meshed"


def coarse_voxels(ovoxels: list[OVoxel], downsampling: int) -> list[np.ndarray]:
    """Per frame the (n, 3) voxels of the latent grid that hold fine O-Voxels: the true coarse structure."""
    return [np.unique(v.coords.astype(np.int64) // downsampling, axis=0) for v in ovoxels]


def vae_round_trip(pipe: Any, truth: list[OVoxel]) -> tuple[list[OVoxel], list[np.ndarray]]:
    """The O-Voxels after encoding and decoding with the model's SC-VAEs, and the SS-VAE's coarse round trip."""
    geo_latent = pipe.geometry_vae.encode(
        voxel_features(truth, [v.geometry_features(oriented=True) for v in truth]).to(pipe.device)
    )[0]
    mat_latent = pipe.material_vae.encode(
        voxel_features(truth, [v.material_features() for v in truth]).to(pipe.device)
    )[0]
    if not torch.equal(geo_latent.coords, mat_latent.coords):
        raise RuntimeError("geometry and material encoders disagree on the coarse voxels")
    coarse = geo_latent.coords
    per_frame = [coarse[coarse[:, 0] == f, 1:].cpu() for f in range(len(truth))]
    ovoxels = pipe.decode_latents(per_frame, geo_latent.feats, mat_latent.feats)

    ss_vae, r = pipe.ss_vae, pipe.ss_vae.config.resolution
    occupancy = torch.zeros(len(truth), 1, r, r, r, device=pipe.device)
    occupancy[coarse[:, 0], 0, coarse[:, 1], coarse[:, 2], coarse[:, 3]] = 1.0
    logits = ss_vae.decode(ss_vae.encode(occupancy)[0])[:, 0]  # (F, R, R, R)
    round_trip = [(logits[f] > pipe.config.occupancy_threshold).nonzero().cpu().numpy() for f in range(len(truth))]
    return ovoxels, round_trip


def voxel_iou(pred: np.ndarray, true: np.ndarray) -> float:
    """IoU of two (n, 3) integer voxel sets (1 when both are empty)."""
    a = {tuple(c) for c in np.asarray(pred).tolist()}
    b = {tuple(c) for c in np.asarray(true).tolist()}
    return len(a & b) / len(a | b) if a | b else 1.0


def boundary_edge_count(mesh: trimesh.Trimesh) -> int:
    """Edges used by exactly one face: the rims of holes (and of open sheets)."""
    return len(boundary_edges(mesh)) if len(mesh.faces) else 0


def material_errors(pred: list[OVoxel], truth: list[OVoxel]) -> dict[str, float]:
    """Colour and alpha errors of each output voxel against the nearest true voxel, and of the frame's mean
    colour; frames with no output voxels count as NaN (they are scored by `empty_frames`)."""
    voxel, hue, obj, alpha = [], [], [], []
    for p, t in zip(pred, truth):
        if len(p) == 0 or len(t) == 0:
            continue
        nearest = cKDTree(t.coords.astype(np.float64)).query(p.coords.astype(np.float64))[1]
        diff = np.abs(p.attrs - t.attrs[nearest])  # (n, 6): base colour RGB, metallic, roughness, alpha
        voxel.append(diff[:, :3].mean())
        hue.append(delta_e(p.attrs[:, :3], t.attrs[nearest, :3]).mean())
        alpha.append(diff[:, 5].mean())
        obj.append(np.abs(p.attrs[:, :3].mean(0) - t.attrs[:, :3].mean(0)).mean())
    return {
        "colour_error": nanmean(voxel),
        "colour_delta_e": nanmean(hue),
        "object_colour_error": nanmean(obj),
        "alpha_error": nanmean(alpha),
    }
