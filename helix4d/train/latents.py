"""Latent pre-encoding: run the trained VAEs over a dataset once, so flow training never re-runs them.

For every sequence it stores the condition images exactly as inference frames them (one crop box over the whole
sequence), the SS latent grids, the coarse voxels and the geometry / material latents on them, in
`LATENTS/<id>.pt`, and writes each stage's per-channel mean/std into the model's `pipeline.json`
(flows are trained and sampled on standardised latents).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from rich.progress import Progress
from torch import Tensor

from helix4d.data.dataset import SequenceDataset
from helix4d.data.layout import OVOXELS, load_ovoxels
from helix4d.errors import ConfigError, InputError
from helix4d.io.files import check_output_dir, write_json_atomic
from helix4d.pipeline.architecture import LatentEncoders, architecture_of
from helix4d.pipeline.config import LatentStats, PipelineConfig
from helix4d.pipeline.folder import read_pipeline_config
from helix4d.sparse import frame_coords
from helix4d.train.checkpoint import atomic_save

INDEX = "index.json"


STAGES = ("ss", "geometry", "material")
STATS_MODES = ("auto", "measure", "keep")


def measures_stats(pipeline: PipelineConfig, only: tuple[str, ...], stats: str) -> bool:
    """Whether `encode_dataset` measures the latent statistics (its `stats` rule) or keeps the model's."""
    return stats == "measure" or (stats == "auto" and not (pipeline.trained and set(only) == set(STAGES)))


@torch.no_grad()
def encode_dataset(
    model: Path,
    data: Path,
    out: Path,
    device: str = "cpu",
    only: tuple[str, ...] = STAGES,
    stats: str = "auto",
) -> dict[str, LatentStats]:
    """Encode every sequence of `data` with the VAEs of `model`; returns the encoded stages' latent statistics.

    `only` re-encodes a subset of stages into existing latents (after retraining one VAE): the other stages'
    latents and statistics are kept. A first encode may name a subset that includes 'ss': stage-1 latents alone
    (with the true coarse voxels) cost a ninth of all three stages, so stage-1 studies on thousands of sequences
    start in minutes; the other stages can be added later with `only`. An interrupted encode (no index.json yet)
    continues where it stopped: rerun it with the same model and data. A sequence whose condition images show no
    object is skipped with a warning and listed in index.json's "skipped".

    stats: 'measure' writes the encoded stages' statistics into the model's pipeline.json; 'keep' leaves the
    model's; 'auto' keeps them once a flow has been trained on them (pipeline.json "trained": continuing a trained
    model on new data must not shift the normalisation its flows learnt) unless `only` names a subset (a retrained
    VAE's new latent space), and measures them otherwise.
    """
    unknown = set(only) - set(STAGES)
    if unknown or not only:
        raise InputError(f"stages to encode must be among {', '.join(STAGES)}, got {', '.join(only) or 'none'}")
    if stats not in STATS_MODES:
        raise InputError(f"stats must be one of {', '.join(STATS_MODES)}, got {stats!r}")
    check_output_dir(out, inputs=(model, data), reuse=is_latents_folder)
    fresh = not (out / INDEX).is_file()  # the records are (still) being made: images framed as inference does
    if fresh and "ss" not in only:
        raise InputError(f"{out} holds no latents to add {', '.join(only)} to; encode 'ss' (or every stage) first")
    pipeline = read_pipeline_config(model)
    encoders = architecture_of(pipeline).latent_encoders(model, pipeline, device)
    dataset = SequenceDataset(data)
    if dataset.settings.resolution != pipeline.resolution or dataset.settings.image_size != pipeline.image_size:
        raise InputError(
            f"dataset {data} (R={dataset.settings.resolution}, S={dataset.settings.image_size}) does not match "
            f"the model (R={pipeline.resolution}, S={pipeline.image_size}); build the data with the model's settings"
        )
    out.mkdir(parents=True, exist_ok=True)
    measure = set(only) if measures_stats(pipeline, only, stats) else set()
    resuming = fresh  # no index yet: an interrupted encode, whose finished records stay
    sums: dict[str, list[Tensor]] = {stage: [] for stage in only}
    index: list[dict] = []
    skipped: list[dict] = [] if fresh else json.loads((out / INDEX).read_text()).get("skipped", [])
    passed_over = {s["id"] for s in skipped}  # an update keeps the sequences the full encode skipped out
    with Progress() as bar:
        task = bar.add_task("encoding latents", total=len(dataset))
        for i, entry in enumerate(dataset.sequences):
            bar.advance(task)
            if entry["id"] in passed_over:
                continue
            path = out / f"{entry['id']}.pt"
            if resuming and path.is_file():
                record = torch.load(path, weights_only=True)
                missing = tuple(stage for stage in only if stage not in record)  # resumed with more stages
                if missing:
                    _encode(record, load_ovoxels(data / entry["path"] / OVOXELS), missing, encoders, device)
                    atomic_save(record, path)
            elif fresh:  # a fresh record: images framed as inference frames them
                try:
                    sample = dataset[i]
                except InputError as exc:  # e.g. an object the renders do not show: skip it, keep the rest
                    skipped.append({"id": entry["id"], "error": str(exc)})
                    bar.console.print(f"skipped {entry['id']}: {exc}", style="yellow", markup=False, highlight=False)
                    continue
                record = {
                    "images": (sample["images"] * 255).round().to(torch.uint8),
                    "id": entry["id"],
                    "kind": entry["kind"],
                }
                _encode(record, sample["ovoxels"], only, encoders, device)
                atomic_save(record, path)
            else:  # update the stored record; images and the other stages stay
                record = torch.load(path, weights_only=True)
                _encode(record, load_ovoxels(data / entry["path"] / OVOXELS), only, encoders, device)
                atomic_save(record, path)
            measure |= _stale_stats(pipeline, record, only, stats)
            for stage in measure:
                z = record[stage]
                sums[stage].append(z.permute(0, 2, 3, 4, 1).reshape(-1, z.shape[1]) if stage == "ss" else z)
            index.append({"id": entry["id"], "kind": entry["kind"], "frames": record["ss"].shape[0]})
    stages = [s for s in STAGES if s in only or (not fresh and s in encoded_stages(out))]
    write_json_atomic(
        out / INDEX,
        {"model": str(model), "data": str(data), "stages": stages, "sequences": index, "skipped": skipped},
    )
    if measure:
        for stage in measure:
            x = torch.cat(sums[stage])
            pipeline.latent_stats[stage] = LatentStats(x.mean(0).tolist(), x.std(0).clamp(min=1e-3).tolist())
        write_json_atomic(model / "pipeline.json", pipeline.to_dict())
    return {stage: pipeline.latent_stats[stage] for stage in only}


def _stale_stats(pipeline: PipelineConfig, record: dict, only: tuple[str, ...], stats: str) -> set[str]:
    """The stages whose stored statistics cannot apply to these latents (another channel count: a VAE of another
    width), which 'auto' measures afresh and 'keep' refuses."""
    stale = set()
    for stage in only:
        channels = record[stage].shape[1]
        if len(pipeline.latent_stats[stage].mean) != channels:
            if stats == "keep":
                raise ConfigError(
                    f"the model's {stage} statistics have {len(pipeline.latent_stats[stage].mean)} channels but its "
                    f"{stage} latents {channels} (a VAE of another width): encode with --stats measure"
                )
            stale.add(stage)
    return stale


def encoded_stages(latents: Path) -> list[str]:
    """The stages whose latents `latents` holds (folders from before stage-1-only encodes hold all three)."""
    return json.loads((latents / INDEX).read_text()).get("stages", list(STAGES))


def is_latents_folder(folder: Path) -> bool:
    """Whether `folder` holds only latents (finished or interrupted), which encoding may update or complete."""
    return all(p.is_file() and (p.suffix == ".pt" or p.name == INDEX) for p in folder.iterdir())


def _encode(record: dict, ovoxels: list, only: tuple[str, ...], encoders: LatentEncoders, device: str) -> None:
    """Add the `only` stages' latents of one sequence's O-Voxels to its record (in place)."""
    fine = frame_coords([v.coords for v in ovoxels], device)
    if "ss" in only:
        record["ss"] = encoders.ss(fine, len(ovoxels)).cpu()  # (F, C, r, r, r)
        if "geometry" not in only and "coarse" not in record:  # the voxels the geometry encoder would give
            record["coarse"] = encoders.coarse(fine, len(ovoxels)).cpu()  # (M, 4) [frame, x, y, z]
    if "geometry" in only:
        geo = encoders.geometry(ovoxels)
        record["geometry"], record["coarse"] = geo.feats.cpu(), geo.coords.cpu()
    if "material" in only:
        mat = encoders.material(ovoxels)
        if not torch.equal(record["coarse"], mat.coords.cpu()):
            raise RuntimeError("geometry and material encoders disagree on the coarse voxels")
        record["material"] = mat.feats.cpu()
