"""The fit check: can one stage of a model learn the very sequences it is trained on?

A design that cannot fit 16 of its own training sequences will not learn from 720, and more hours of the same do
not change that. So every design change is first checked here: a copy of the model is encoded on DATA, one stage
is trained briefly on exactly those sequences, and then that stage alone is scored on the same sequences, per
phenomenon (kind), by the number that stage is responsible for:

    ss        coarse IoU of stage 1 (every frame on its own, static), against the true coarse structure;
    geometry  CD-3D and F@0.02 of stages 2-3 given the true coarse structure (protocol "ours");
    material  base-colour error of stage 3 given the true coarse structure and geometry latents, as the error
              budget measures it (`helix4d.eval.budget.material_errors`): mean |Δ| of sRGB in [0, 1] and CIE76 ΔE
              (above ~10 is another colour) at every output voxel against the nearest true voxel; and the material
              VAE's round trip on the same voxels (the floor stage 3 cannot beat).

Static (per-frame) scores on purpose: the temporal layers start as copies of the static ones, so a static stage
that cannot fit bounds what the temporal model can do.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from helix4d.errors import InputError
from helix4d.io.files import check_output_dir

STAGES = ("ss", "geometry", "material")
# Per stage: the metrics reported (in order) and the training defaults of the stage's demo recipe.
METRICS = {
    "ss": ("coarse_iou",),
    "geometry": ("cd_3d", "f_score@0.02"),
    "material": ("colour_error", "colour_delta_e", "vae_delta_e"),
}
BATCH = {"ss": 32, "geometry": 16, "material": 16}
TRAINS_ENCODER = {"ss": True, "geometry": True, "material": False}  # as configs/demo: stage 3 reads stage 2's


@dataclasses.dataclass(frozen=True)
class FitSettings:
    """One fit check. steps/batch_size/lr: the brief training (batch_size None: the stage's demo batch);
    sampling_steps: flow steps when scoring; seed: training and sampling seed."""

    stage: str = "ss"
    steps: int = 800
    batch_size: int | None = None
    lr: float = 4e-4
    min_lr: float = 1e-4
    sampling_steps: int = 12
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise InputError(f"--stage must be one of {', '.join(STAGES)}, got {self.stage!r}")
        for name in ("steps", "sampling_steps"):
            if not 1 <= getattr(self, name) <= 10**7:
                raise InputError(f"--{name.replace('_', '-')} must be in [1, 10000000], got {getattr(self, name)}")
        if self.batch_size is not None and not 1 <= self.batch_size <= 4096:
            raise InputError(f"--batch-size must be in [1, 4096], got {self.batch_size}")
        if not (np.isfinite(self.lr) and 0 < self.lr <= 1):
            raise InputError(f"--lr must be in (0, 1], got {self.lr}")


@dataclasses.dataclass
class FitReport:
    """Per-sequence scores after the brief training, their means per kind, and the training loss curve."""

    settings: dict[str, Any]
    sequences: list[dict[str, Any]]  # {"id", "kind", metric: value}
    losses: list[tuple[int, float]]  # (step, loss) as logged

    def by_kind(self) -> dict[str, dict[str, float]]:
        """kind -> metric -> mean over that kind's sequences (plus "sequences": how many)."""
        groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in self.sequences:
            groups[s["kind"]].append(s)
        metrics = METRICS[self.settings["stage"]]
        out = {}
        for kind in sorted(groups):
            rows = groups[kind]
            out[kind] = {"sequences": len(rows), **{m: float(np.nanmean([r[m] for r in rows])) for m in metrics}}
        return out

    def mean(self) -> dict[str, float]:
        return {m: float(np.nanmean([s[m] for s in self.sequences])) for m in METRICS[self.settings["stage"]]}

    def to_dict(self) -> dict[str, Any]:
        return {
            "settings": self.settings,
            "mean": self.mean(),
            "by_kind": self.by_kind(),
            "sequences": self.sequences,
            "losses": self.losses,
        }


def run_fit(
    data: str | Path,
    settings: FitSettings,
    model: str | Path | None = None,
    work: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> FitReport:
    """Train a copy of `model`'s (default: the shipped demo model's) stage `settings.stage` on the sequences of
    `data` and score it on them. `work` keeps the copy, its latents and the run (default: a temporary folder,
    removed afterwards); `data` and `model` are only read."""
    from helix4d.pipeline.helix4d import DEMO_MODEL

    source = Path(model) if model is not None else DEMO_MODEL
    if not (source / "pipeline.json").is_file():
        raise InputError(f"{source} is not a model folder (no pipeline.json)")
    if work is None:
        with tempfile.TemporaryDirectory(prefix="helix4d-fit-") as tmp:
            return _fit(Path(data), settings, source, Path(tmp), progress)
    check_output_dir(work, inputs=(data, source))  # a new or empty folder: it receives a model copy and a run
    return _fit(Path(data), settings, source, Path(work), progress)


def _fit(
    data: Path, settings: FitSettings, source: Path, work: Path, progress: Callable[[str, int, int], None] | None
) -> FitReport:
    from helix4d.train.config import TrainConfig
    from helix4d.train.engine import train
    from helix4d.train.latents import encode_dataset

    model, latents, run = work / "model", work / "latents", work / "run"
    shutil.copytree(source, model)
    if progress:
        progress("encoding latents", 0, 3)
    encode_dataset(model, data, latents, device=settings.device, stats="keep")
    if progress:
        progress(f"training stage {settings.stage}", 1, 3)
    config = TrainConfig(
        task="flow",
        task_options={
            "model": str(model),
            "stage": settings.stage,
            "latents": str(latents),
            "train_image_encoder": TRAINS_ENCODER[settings.stage],
        },
        out=str(run),
        seed=settings.seed,
        steps=settings.steps,
        batch_size=settings.batch_size or BATCH[settings.stage],
        lr=settings.lr,
        min_lr=min(settings.min_lr, settings.lr),  # a fit at a lower peak rate decays no further than its peak
        warmup_steps=min(50, settings.steps // 4),
        ema_decay=0.0,  # a fit check reads the weights it trained, not an average lagging behind them
        checkpoint_every=settings.steps,
        keep_checkpoints=1,
        log_every=max(1, settings.steps // 20),
        precision="fp32",
        device=settings.device,
    )
    train(config)
    if progress:
        progress(f"scoring stage {settings.stage}", 2, 3)
    sequences = score_stage(model, latents, data, settings)
    losses = _logged_losses(run / "metrics.jsonl")
    record = {
        **dataclasses.asdict(settings),
        "batch_size": config.batch_size,
        "data": str(data),
        "model": str(source),
        "sequences": len(sequences),
    }
    return FitReport(record, sequences, losses)


def score_stage(model: Path, latents: Path, data: Path, settings: FitSettings) -> list[dict[str, Any]]:
    """Per sequence of the encoded `latents`: the stage's metrics (see the module docstring), every frame static.
    The condition images are the encoded ones, i.e. exactly what the stage was trained on."""
    import torch

    from helix4d.data import layout
    from helix4d.eval.budget import coarse_voxels, ground_truth_meshes, material_errors, voxel_iou
    from helix4d.eval.evaluate import evaluate_sequence
    from helix4d.eval.protocols import OursProtocol
    from helix4d.pipeline.helix4d import Helix4DPipeline
    from helix4d.pipeline.options import SamplingOptions
    from helix4d.train.latents import INDEX

    pipe = Helix4DPipeline.from_pretrained(model, device=settings.device)
    sampling = SamplingOptions(seed=settings.seed, steps=settings.sampling_steps, mode="per-frame", chunk=0)
    index = layout.read_json(latents / INDEX)
    folders = {s["id"]: data / s["path"] for s in layout.read_manifest(data)["sequences"]}
    out = []
    with torch.no_grad():
        for entry in index["sequences"]:
            record = torch.load(latents / f"{entry['id']}.pt", weights_only=True)
            images = record["images"].float().numpy() / 255.0  # (F, 4, S, S)
            truth = layout.load_ovoxels(folders[entry["id"]] / layout.OVOXELS)
            row: dict[str, Any] = {"id": entry["id"], "kind": entry["kind"]}
            if settings.stage == "ss":
                true_coarse = coarse_voxels(truth, pipe.geometry_vae.downsampling)
                predicted = pipe.coarse_structure(images, sampling)
                row["coarse_iou"] = float(np.mean([voxel_iou(p, t) for p, t in zip(predicted, true_coarse)]))
            else:
                coarse = record["coarse"]
                per_frame = [coarse[coarse[:, 0] == f, 1:] for f in range(len(truth))]
                if settings.stage == "geometry":
                    asset = pipe.generate(images, sampling, coarse=per_frame)
                    gt = ground_truth_meshes(folders[entry["id"]], truth)[0]
                    metrics = evaluate_sequence(asset.meshes, gt, OursProtocol()).metrics
                    row.update({"cd_3d": metrics["cd_3d"], "f_score@0.02": metrics["f_score@0.02"]})
                else:
                    asset = pipe.generate(images, sampling, coarse=per_frame, geometry=record["geometry"])
                    errors = material_errors(asset.ovoxels, truth)
                    row.update({k: errors[k] for k in ("colour_error", "colour_delta_e")})
                    round_trip = pipe.decode_latents(per_frame, record["geometry"], record["material"])
                    row["vae_delta_e"] = material_errors(round_trip, truth)["colour_delta_e"]
            out.append(row)
    return out


def _logged_losses(metrics: Path) -> list[tuple[int, float]]:
    import json

    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    return [(int(r["step"]), float(r["loss"])) for r in rows if "loss" in r and "step" in r]


def format_fit(report: FitReport) -> str:
    """The per-kind table as plain text (the CLI prints it with rich)."""
    metrics = METRICS[report.settings["stage"]]
    lines = ["kind          n  " + "  ".join(f"{m:>14}" for m in metrics)]
    for kind, row in report.by_kind().items():
        lines.append(f"{kind:<12} {row['sequences']:>2}  " + "  ".join(f"{row[m]:>14.3f}" for m in metrics))
    mean = report.mean()
    lines.append(f"{'all':<12} {len(report.sequences):>2}  " + "  ".join(f"{mean[m]:>14.3f}" for m in metrics))
    return "\n".join(lines)
