"""`helix4d ablate`: the paper's ablations, run with ONE model on a dataset folder, scored against its ground truth.

Every variant generates every sequence from the same condition images with the same seed (so the same noise);
only the variant's setting differs. The variants (docs/design.md §3):

full            temporal, the model's window, anchor on, 4D RoPE: the method
no-anchor       `anchor=False`: a plain sliding window; frame 0 (still the static result) is an ordinary window frame
no-rope4d       every flow's RoPE rebuilt with time_fraction = 0, i.e. 3D RoPE on voxel coordinates only: the model
                no longer sees the frame index (`rope_3d`; RoPE has no parameters, so the weights are unchanged)
full-attention  window = F: full spatio-temporal attention (every frame sees every frame)
per-frame       `mode="per-frame"`: the static model on every frame independently (the baseline)

Frame 0 is the static model's result in every variant, except under no-rope4d for models whose RoPE uses the
"replace" time mode (our tiny/demo presets): there time_fraction = 0 hands the time pairs back to their low
spatial bands, which also moves frame 0 slightly (by their rotation across the 8-voxel latent grid: < 0.012 rad
for demo, < 0.07 rad for tiny). In "add" mode (TRELLIS.2 presets) frame 0 is unchanged bit for bit.

Ground truth: the dataset's O-Voxels, meshed by `helix4d.ovoxel.ovoxel_to_mesh`; the predictions are the
pipeline's meshes. Metrics: `helix4d.eval.evaluate_sequence` under the chosen protocol (default "ours").
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from helix4d.errors import InputError
from helix4d.eval.protocols import OursProtocol, Protocol, evaluate_sequence
from helix4d.eval.tables import cell, finite, nanmean
from helix4d.pipeline.options import SamplingOptions

FLOWS = ("ss_flow", "geometry_flow", "material_flow")


@dataclass(frozen=True)
class Variant:
    """One ablation setting of `Helix4DPipeline.generate`; `full_window` sets the window to the clip length."""

    name: str
    description: str
    mode: str = "temporal"
    anchor: bool = True
    full_window: bool = False
    rope_4d: bool = True

    def settings(self, frames: int, default_window: int) -> dict[str, Any]:
        """What `generate` is called with for a clip of `frames` frames (per-frame mode has no temporal settings)."""
        if self.mode == "per-frame":
            return {"mode": self.mode}
        window = frames if self.full_window else default_window
        return {"mode": self.mode, "anchor": self.anchor, "window": window, "rope": "4d" if self.rope_4d else "3d"}


VARIANTS: tuple[Variant, ...] = (
    Variant("full", "temporal, model window, anchor, 4D RoPE (the method)"),
    Variant("no-anchor", "sliding window only: frame 0 is an ordinary window frame", anchor=False),
    Variant("no-rope4d", "3D RoPE only (time_fraction = 0): the frame index is not encoded", rope_4d=False),
    Variant("full-attention", "window = F: every frame attends to every frame", full_window=True),
    Variant("per-frame", "static model on each frame independently", mode="per-frame"),
)


def variants_by_name(names: Sequence[str] | None) -> list[Variant]:
    """The named variants in the given order (all when `names` is empty or None)."""
    if not names:
        return list(VARIANTS)
    known = {v.name: v for v in VARIANTS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    return [known[n] for n in names]


@contextmanager
def rope_3d(pipe: Any) -> Iterator[None]:
    """Within the block, every flow of `pipe` uses 3D RoPE (its RopeConfig with time_fraction = 0).

    RoPE is parameter-free and rebuilt from `flow.rope` at every forward, so swapping the config is the whole
    change; the original configs come back on exit, even after an error.
    """
    saved = {name: pipe.components[name].rope for name in FLOWS}
    try:
        for name, rope in saved.items():
            pipe.components[name].rope = dataclasses.replace(rope, time_fraction=0.0)
        yield
    finally:
        for name, rope in saved.items():
            pipe.components[name].rope = rope


def generate_variant(pipe: Any, images: np.ndarray, variant: Variant, seed: int = 0, steps: int | None = None) -> Any:
    """`pipe.generate` under `variant` for condition images (F, 4, S, S) -> Asset4D."""
    window = images.shape[0] if variant.full_window else None  # None: the model's window
    sampling = SamplingOptions(seed=seed, steps=steps, window=window, mode=variant.mode, anchor=variant.anchor)
    if variant.rope_4d:
        return pipe.generate(images, sampling)
    with rope_3d(pipe):
        return pipe.generate(images, sampling)


# ------------------------------------------------------------------------------------------------ results


@dataclass
class SequenceResult:
    """One sequence under one variant: its metrics (NaN when it could not be scored, with `error`) and seconds."""

    id: str
    kind: str
    frames: int
    seconds: float
    metrics: dict[str, float]
    error: str | None = None


@dataclass
class VariantResult:
    variant: Variant
    settings: dict[str, Any]
    sequences: list[SequenceResult] = field(default_factory=list)

    def mean(self, kind: str | None = None) -> dict[str, float]:
        """Metric means over the scored sequences (of one `kind`, if given), plus mean seconds per sequence."""
        rows = [s for s in self.sequences if kind is None or s.kind == kind]
        names = list(dict.fromkeys(k for s in rows for k in s.metrics))
        means = {name: nanmean([s.metrics.get(name, math.nan) for s in rows]) for name in names}
        means["seconds"] = nanmean([s.seconds for s in rows])
        return means

    @property
    def failed(self) -> int:
        return sum(s.error is not None for s in self.sequences)


@dataclass
class AblationReport:
    """Every variant's per-sequence results, and the protocol that produced them."""

    protocol: dict[str, Any]
    variants: list[VariantResult]

    def columns(self) -> list[str]:
        return list(dict.fromkeys(k for v in self.variants for k in v.mean() if k != "seconds"))

    def table(self) -> str:
        """Markdown: the protocol, then one row per variant (metric means, seconds per sequence, failures)."""
        p = self.protocol
        columns = self.columns()
        lines = [
            f"ablation on {p['dataset']} ({p['sequences']} sequences, {p['frames']}); model {p['model']}",
            f"sampling: seed {p['seed']} (same noise in every variant), steps {p['steps']}, device {p['device']}",
            f"metrics: protocol {p['eval_protocol']} ({p['units']}), {p['points']} points per frame; "
            "ground truth: the dataset's O-Voxels meshed; seconds: generate() wall time per sequence",
            "",
            "| variant | " + " | ".join(columns) + " | s/seq | failed |",
            "|---" * (len(columns) + 3) + "|",
        ]
        for v in self.variants:
            means = v.mean()
            cells = " | ".join(cell(means.get(c, math.nan)) for c in columns)
            lines.append(f"| {v.variant.name} | {cells} | {cell(means['seconds'])} | {v.failed} |")
        lines += ["", "variants:"] + [
            f"  {v.variant.name}: {v.variant.description} {v.settings}" for v in self.variants
        ]
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: protocol, and per variant its settings, means, per-kind means and per-sequence rows."""
        out = []
        for v in self.variants:
            kinds = sorted({s.kind for s in v.sequences})
            out.append(
                {
                    "name": v.variant.name,
                    "description": v.variant.description,
                    "settings": v.settings,
                    "mean": finite(v.mean()),
                    "failed": v.failed,
                    "by_kind": {
                        k: {"sequences": sum(s.kind == k for s in v.sequences), **finite(v.mean(k))} for k in kinds
                    },
                    "sequences": [
                        {
                            "id": s.id,
                            "kind": s.kind,
                            "frames": s.frames,
                            "seconds": s.seconds,
                            **finite(s.metrics),
                            "error": s.error,
                        }
                        for s in v.sequences
                    ],
                }
            )
        return {"protocol": self.protocol, "variants": out}


# ------------------------------------------------------------------------------------------------ running

Progress = Callable[[str, int, int], None]  # (what is running, completed, total)


def run_ablation(
    dataset: str | Path,
    model: str | Path | None = None,
    sequences: int | None = None,
    frames: int | None = None,
    steps: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    protocol: Protocol | None = None,
    variants: Sequence[Variant] = VARIANTS,
    progress: Progress | None = None,
) -> AblationReport:
    """Run `variants` on the first `sequences` sequences (all by default) of a dataset, each clipped to its first
    `frames` frames (frame 0 = the anchor; all frames by default), and score them against the ground truth."""
    from helix4d.data.dataset import SequenceDataset, clip, load_sequence
    from helix4d.ovoxel import ovoxel_to_mesh
    from helix4d.pipeline.helix4d import Helix4DPipeline

    protocol = protocol or OursProtocol()
    if sequences is not None and sequences < 1:
        raise InputError(f"--sequences must be >= 1, got {sequences}")
    if frames is not None and frames < 1:
        raise InputError(f"--frames must be >= 1, got {frames}")
    if steps is not None and steps < 1:
        raise InputError(f"--steps must be >= 1, got {steps}")
    data = SequenceDataset(dataset)
    entries = data.sequences[:sequences]
    if not entries:
        raise InputError(f"{dataset} holds no finished sequences; build it with `helix4d data synth`")
    pipe = Helix4DPipeline.from_pretrained(model, device=device)
    if data.settings.image_size != pipe.config.image_size:
        raise InputError(
            f"the dataset's images are {data.settings.image_size} px and the model takes "
            f"{pipe.config.image_size} px; rebuild the dataset with --image-size "
            f"{pipe.config.image_size}"
        )
    results = [VariantResult(v, v.settings(frames or data.settings.frames, pipe.config.window)) for v in variants]
    total, done = len(entries) * len(variants), 0
    for entry in entries:
        count = min(frames or entry["frames"], entry["frames"])
        sample = clip(load_sequence(data.root / entry["path"]), 0, count)  # framed as its whole truth (see budget)
        images = sample["images"].numpy()  # (F, 4, S, S)
        gt = [ovoxel_to_mesh(ov) for ov in sample["ovoxels"]]
        for result in results:
            if progress:
                progress(f"{result.variant.name} {sample['id']}", done, total)
            clock = time.perf_counter()
            asset = generate_variant(pipe, images, result.variant, seed, steps)
            seconds = time.perf_counter() - clock
            result.sequences.append(_score(sample["id"], sample["kind"], asset.meshes, gt, protocol, seconds))
            done += 1
    if progress:
        progress("done", done, total)
    first = entries[0]
    described = {
        "dataset": str(dataset),
        "sequences": len(entries),
        "frames": f"first {frames} frames" if frames else f"all frames ({first['frames']} in the first sequence)",
        "model": str(model) if model else "demo (shipped)",
        "model_preset": pipe.config.preset,
        "model_trained": pipe.config.trained,
        "seed": seed,
        "steps": steps if steps is not None else "model default",
        "device": str(pipe.device),
        "eval_protocol": protocol.name,
        "units": protocol.units if protocol.align else "no normalisation or alignment: the meshes' own units",
        "align": protocol.align,
        "points": getattr(protocol, "points", getattr(protocol, "samples", None)),
    }
    return AblationReport(described, results)


def _score(seq_id: str, kind: str, pred: list, gt: list, protocol: Protocol, seconds: float) -> SequenceResult:
    """Metrics of one generated sequence; an unscorable one (e.g. a frame count mismatch) is kept with NaN and its
    reason."""
    try:
        metrics = evaluate_sequence(pred, gt, protocol).metrics
        return SequenceResult(seq_id, kind, len(gt), seconds, metrics)
    except InputError as exc:
        return SequenceResult(seq_id, kind, len(gt), seconds, {}, str(exc))
