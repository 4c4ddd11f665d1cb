"""`helix4d evaluate PRED GT`: find the sequences, load their per-frame meshes, score them, print a table.

A *sequence folder* is any of
  (a) a folder of per-frame mesh files (.glb .gltf .ply .obj .stl .off), in natural name order;
  (b) a `helix4d generate` output folder: its meshes are in `frames/` (frame_0000.glb, ...);
  (c) a dataset sequence folder (`helix4d data synth` / `data build`): mesh files in `meshes/` if present,
      otherwise `ovoxels.npz` turned into meshes by `helix4d.ovoxel.ovoxel_to_mesh`.
PRED and GT are each a sequence folder or a folder of them (a dataset root with manifest.json lists its own);
sequences are paired by folder name (the dataset's sequence id).

Image metrics (`images=True`, or a CLIP / I3D extractor given) need dataset ground truth: the prediction,
mapped into the ground truth's coordinates by the protocol's alignment, is rendered from the dataset's
conditioning camera (view 0) and compared with the rendered input frames `views/v00/FFFF.png`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from helix4d.errors import InputError
from helix4d.eval.protocols import Protocol, SequenceScores, evaluate_sequence
from helix4d.eval.tables import cell, finite

MESH_SUFFIXES = (".glb", ".gltf", ".ply", ".obj", ".stl", ".off")


# ------------------------------------------------------------------------------------------------ loading


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _mesh_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES]
    return sorted(files, key=_natural_key)


def _sequence_source(folder: Path) -> list[Path] | Path | None:
    """Mesh files of a sequence folder, its ovoxels.npz, or None when `folder` is not a sequence."""
    for candidate in (folder / "frames", folder / "meshes", folder):
        files = _mesh_files(candidate)
        if files:
            return files
    npz = folder / "ovoxels.npz"
    return npz if npz.is_file() else None


def load_mesh_file(path: Path, allow_empty: bool = False) -> trimesh.Trimesh:
    """One frame's mesh; a scene (GLB with several nodes) is flattened with its transforms applied. An empty file is
    an error unless `allow_empty` (a predicted frame where nothing was generated: scored as the worst error)."""
    from helix4d.ovoxel import load_mesh

    loaded = load_mesh(path)
    if isinstance(loaded, trimesh.Scene):
        loaded = loaded.to_mesh() if loaded.geometry else trimesh.Trimesh()
    if len(loaded.faces) == 0 and not allow_empty:
        raise InputError(f"{path} holds no triangles")
    return loaded


def load_sequence_meshes(path: str | Path, allow_empty: bool = False) -> list[trimesh.Trimesh]:
    """Per-frame meshes of one sequence folder (kinds (a)-(c) of the module docstring); `allow_empty` for
    predictions (see `load_mesh_file`)."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(
            f"{path} is not a folder; pass a folder of per-frame meshes, a `helix4d generate` "
            "output folder or a dataset sequence folder"
        )
    source = _sequence_source(path)
    if source is None:
        raise InputError(
            f"{path} holds no sequence: expected per-frame mesh files ({', '.join(MESH_SUFFIXES)}) "
            "directly or in frames/ or meshes/, or a dataset ovoxels.npz"
        )
    if isinstance(source, Path):
        from helix4d.data.layout import load_ovoxels
        from helix4d.ovoxel import ovoxel_to_mesh

        return [ovoxel_to_mesh(ov) for ov in load_ovoxels(source)]
    return [load_mesh_file(p, allow_empty) for p in source]


def find_sequences(path: str | Path) -> dict[str, Path]:
    """Sequence folders under `path` by name: `path` itself if it is one, the sequences a dataset manifest lists,
    or its sub-folders that are sequences."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"{path} is not a folder")
    if (path / "manifest.json").is_file():
        from helix4d.data.layout import read_manifest

        return {s["id"]: path / s["path"] for s in read_manifest(path)["sequences"]}
    if _sequence_source(path) is not None:
        return {path.resolve().name: path}
    found = {p.name: p for p in sorted(path.iterdir()) if p.is_dir() and _sequence_source(p) is not None}
    if not found:
        raise InputError(
            f"{path} holds no sequences: expected per-frame meshes, frames/, ovoxels.npz, a dataset "
            "manifest.json, or sub-folders holding one of these"
        )
    return found


def pair_sequences(pred: str | Path, gt: str | Path) -> tuple[list[tuple[str, Path, Path]], list[str]]:
    """(name, pred folder, gt folder) for every prediction with a ground truth of the same name, and the names of
    predictions without one. One sequence against one sequence pairs whatever their names."""
    preds, gts = find_sequences(pred), find_sequences(gt)
    if len(preds) == 1 and len(gts) == 1:
        (name, p), (_, g) = next(iter(preds.items())), next(iter(gts.items()))
        return [(name, p, g)], []
    pairs = [(name, p, gts[name]) for name, p in preds.items() if name in gts]
    unmatched = [name for name in preds if name not in gts]
    if not pairs:
        raise InputError(
            f"no prediction in {pred} has a ground-truth sequence of the same name in {gt} "
            f"(predictions: {', '.join(list(preds)[:5])}...); name each prediction folder after "
            "its sequence id"
        )
    return pairs, unmatched


# ------------------------------------------------------------------------------------------------ running


@dataclass
class SequenceReport:
    """One sequence's scores: geometry under the protocol, plus image metrics when they were computed."""

    name: str
    scores: SequenceScores
    images: dict[str, float] = field(default_factory=dict)

    def values(self) -> dict[str, float]:
        return {**self.scores.metrics, **self.images}


@dataclass
class EvaluationReport:
    """Every sequence's scores and their means; `fvd` is set-level (all sequences), when requested."""

    protocol: str
    units: str
    align: bool
    sequences: list[SequenceReport]
    unmatched: list[str] = field(default_factory=list)
    fvd: float | None = None

    def mean(self) -> dict[str, float]:
        names = list(dict.fromkeys(k for s in self.sequences for k in s.values()))
        means = {}
        for name in names:
            values = np.array([s.values().get(name, math.nan) for s in self.sequences], np.float64)
            means[name] = float(values[~np.isnan(values)].mean()) if (~np.isnan(values)).any() else math.nan
        return means

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict; null where a value is undefined (NaN) or infinite (PSNR of identical images)."""
        return {
            "protocol": self.protocol,
            "units": self.units,
            "align": self.align,
            "sequences": [{"name": s.name, "frames": s.scores.frames, **finite(s.values())} for s in self.sequences],
            "mean": finite(self.mean()),
            "fvd": None if self.fvd is None else finite({"fvd": self.fvd})["fvd"],
            "unmatched": self.unmatched,
        }

    def table(self) -> str:
        """A markdown table: one row per sequence and a mean row, headed by the protocol that produced it."""
        columns = list(self.mean())
        lines = [
            f"protocol: {self.protocol} ({self.units})",
            "| sequence | frames | " + " | ".join(columns) + " |",
            "|---" * (len(columns) + 2) + "|",
        ]
        for s in self.sequences:
            values = s.values()
            lines.append(
                f"| {s.name} | {s.scores.frames} | " + " | ".join(cell(values.get(c, math.nan)) for c in columns) + " |"
            )
        means = self.mean()
        lines.append(f"| mean ({len(self.sequences)}) | | " + " | ".join(cell(means[c]) for c in columns) + " |")
        if self.fvd is not None:
            lines.append(f"FVD ({len(self.sequences)} sequences): {self.fvd:.2f}")
        if self.unmatched:
            lines.append(f"no ground truth for: {', '.join(self.unmatched)}")
        return "\n".join(lines)


def run_evaluation(
    pred: str | Path,
    gt: str | Path,
    protocol: Protocol,
    images: bool = False,
    clip: str | Path | None = None,
    i3d: str | Path | None = None,
    device: str = "cpu",
) -> EvaluationReport:
    """Pair PRED's sequences with GT's, score each under `protocol`, and (optionally) add image metrics."""
    pairs, unmatched = pair_sequences(pred, gt)
    clip_fn = i3d_fn = None
    if clip is not None:
        from helix4d.eval.features import load_clip_extractor

        clip_fn = load_clip_extractor(clip, device)
    if i3d is not None:
        from helix4d.eval.features import load_i3d_extractor

        i3d_fn = load_i3d_extractor(i3d, device)
    renders = _InputViews() if (images or clip_fn or i3d_fn) else None
    reports, videos = [], ([], [])
    for name, pred_dir, gt_dir in pairs:
        pred_meshes, gt_meshes = load_sequence_meshes(pred_dir, allow_empty=True), load_sequence_meshes(gt_dir)
        try:
            scores = evaluate_sequence(pred_meshes, gt_meshes, protocol)
        except InputError as exc:
            raise InputError(f"sequence {name}: {exc}") from None
        report = SequenceReport(name, scores)
        if renders is not None:
            rendered, frames = renders.pair(gt_dir, [_mapped(m, scores) for m in pred_meshes])
            report.images = _image_scores(rendered, frames, clip_fn)
            videos[0].append(rendered)
            videos[1].append(frames)
        reports.append(report)
    fvd_value = None
    if i3d_fn is not None:
        fvd_value = _fvd(videos, i3d_fn)
    units = protocol.units if protocol.align else "no normalisation or alignment: the meshes' own units"
    return EvaluationReport(protocol.name, units, protocol.align, reports, unmatched, fvd_value)


def _mapped(mesh: trimesh.Trimesh, scores: SequenceScores) -> trimesh.Trimesh:
    """A copy of `mesh` in the ground truth's coordinates (keeps its colours and PBR attributes)."""
    moved = mesh.copy()
    moved.vertices = scores.pred_to_gt(np.asarray(mesh.vertices, np.float64))
    return moved


def _image_scores(rendered: np.ndarray, frames: np.ndarray, clip_fn: Any) -> dict[str, float]:
    from helix4d.eval.features import clip_similarity
    from helix4d.eval.images import composite, image_metrics

    scores = image_metrics(rendered, frames)
    if clip_fn is not None:
        scores["clip"] = clip_similarity(composite(rendered), composite(frames), clip_fn)
    return scores


def _fvd(videos: tuple[list[np.ndarray], list[np.ndarray]], i3d_fn: Any) -> float:
    from helix4d.eval.features import fvd
    from helix4d.eval.images import composite

    if len(videos[0]) < 2:
        raise InputError(
            "FVD compares distributions of videos: evaluate at least 2 sequences (10+ for a meaningful number)"
        )
    frames = min(len(v) for v in videos[0])  # I3D takes one length per batch
    pred = np.stack([composite(v[:frames]) for v in videos[0]])
    real = np.stack([composite(v[:frames]) for v in videos[1]])
    return fvd(pred, real, i3d_fn)


class _InputViews:
    """Renders predictions from a dataset sequence's conditioning camera and reads its input frames."""

    def __init__(self) -> None:
        self._renderers: dict[tuple[int, int], Any] = {}

    def pair(self, gt_dir: Path, meshes: list[trimesh.Trimesh]) -> tuple[np.ndarray, np.ndarray]:
        """(rendered (F, H, W, 4), input (F, H, W, 4)) uint8 for one sequence."""
        from PIL import Image

        from helix4d.data.layout import META, camera_from_dict, read_json, view_png
        from helix4d.eval.images import render_frames
        from helix4d.render import Renderer

        if not (gt_dir / META).is_file():
            raise InputError(f"image metrics need dataset ground truth with {META} and views/; {gt_dir} has none")
        camera = camera_from_dict(read_json(gt_dir / META)["cameras"][0])
        paths = [view_png(gt_dir, 0, f) for f in range(len(meshes))]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise InputError(f"input frame {missing[0]} is missing; image metrics need views/v00/ for every frame")
        frames = np.stack([np.asarray(Image.open(p).convert("RGBA")) for p in paths])
        size = (frames.shape[2], frames.shape[1])
        if size not in self._renderers:
            self._renderers[size] = Renderer(*size)
        return render_frames(self._renderers[size], camera, meshes), frames
