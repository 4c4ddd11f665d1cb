"""Latent pre-encoding: run the trained VAEs over a dataset once, so flow training never re-runs them.

For every sequence it stores the condition images exactly as inference frames them (one crop box over the whole
sequence), the SS latent grids, the coarse voxels and the geometry / material latents on them, in
`LATENTS/<id>.pt`, and writes each stage's per-channel mean/std into the model's `pipeline.json`
(flows are trained and sampled on standardised latents).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress
from torch import Tensor

from helix4d.data.dataset import SequenceDataset
from helix4d.errors import InputError
from helix4d.ovoxel import OVoxel
from helix4d.pipeline.config import LatentStats
from helix4d.pipeline.folder import load_component, read_pipeline_config
from helix4d.sparse.conv import parent_index
from helix4d.train.checkpoint import atomic_save

INDEX = "index.json"


def fine_coords(ovoxels: list[OVoxel]) -> Tensor:
    """Every frame's voxels as (N, 4) int64 [frame, x, y, z] (the frame is the sparse-conv group)."""
    return torch.cat([
        torch.cat([torch.full((len(v), 1), f, dtype=torch.int64), torch.from_numpy(v.coords.astype(np.int64))], 1)
        for f, v in enumerate(ovoxels)
    ])


def coarse_occupancy(fine: Tensor, levels: int, frames: int, resolution: int) -> Tensor:
    """Dense (F, 1, R_c, R_c, R_c) occupancy of the coarse voxels `levels` ×2-downsamplings above `fine`."""
    coords = fine
    for _ in range(levels):
        coords = parent_index(coords)[0]
    occ = torch.zeros(frames, 1, resolution, resolution, resolution)
    occ[coords[:, 0], 0, coords[:, 1], coords[:, 2], coords[:, 3]] = 1.0
    return occ


@torch.no_grad()
def encode_dataset(model: Path, data: Path, out: Path, device: str = "cpu") -> dict[str, LatentStats]:
    """Encode every sequence of `data` with the VAEs of `model`; returns (and saves) the latent statistics."""
    pipeline = read_pipeline_config(model)
    ss_vae = load_component("ss_vae", model / "ss_vae")[0].to(device)
    geo_vae = load_component("geometry_vae", model / "geometry_vae")[0].to(device)
    mat_vae = load_component("material_vae", model / "material_vae")[0].to(device)
    dataset = SequenceDataset(data)
    if dataset.settings.resolution != pipeline.resolution or dataset.settings.image_size != pipeline.image_size:
        raise InputError(
            f"dataset {data} (R={dataset.settings.resolution}, S={dataset.settings.image_size}) does not match the model "
            f"(R={pipeline.resolution}, S={pipeline.image_size}); build the data with the model's settings"
        )
    out.mkdir(parents=True, exist_ok=True)
    levels = len(geo_vae.config.channels) - 1
    sums: dict[str, list[Tensor]] = {"ss": [], "geometry": [], "material": []}
    index = []
    with Progress() as bar:
        task = bar.add_task("encoding latents", total=len(dataset))
        for i in range(len(dataset)):
            sample = dataset[i]
            ovoxels, frames = sample["ovoxels"], len(sample["ovoxels"])
            fine = fine_coords(ovoxels).to(device)
            occ = coarse_occupancy(fine.cpu(), levels, frames, ss_vae.config.resolution).to(device)
            ss = ss_vae.encode(occ)[0]  # (F, C, r, r, r)
            geo_feats = torch.cat([torch.from_numpy(v.geometry_features(oriented=True)) for v in ovoxels]).to(device)
            mat_feats = torch.cat([torch.from_numpy(v.material_features()) for v in ovoxels]).to(device)
            geo, _, coarse = geo_vae.encode(geo_feats, fine)
            mat, _, coarse_m = mat_vae.encode(mat_feats, fine)
            if not torch.equal(coarse, coarse_m):
                raise RuntimeError("geometry and material encoders disagree on the coarse voxels")
            record = {
                "images": (sample["images"] * 255).round().to(torch.uint8),  # (F, 4, S, S)
                "ss": ss.cpu(), "coarse": coarse.cpu(), "geometry": geo.cpu(), "material": mat.cpu(),
                "id": sample["id"], "kind": sample["kind"],
            }
            atomic_save(record, out / f"{sample['id']}.pt")
            index.append({"id": sample["id"], "kind": sample["kind"], "frames": frames})
            sums["ss"].append(ss.permute(0, 2, 3, 4, 1).reshape(-1, ss.shape[1]).cpu())
            sums["geometry"].append(geo.cpu())
            sums["material"].append(mat.cpu())
            bar.advance(task)
    stats = {}
    for stage, parts in sums.items():
        x = torch.cat(parts)
        stats[stage] = LatentStats(x.mean(0).tolist(), x.std(0).clamp(min=1e-3).tolist())
    (out / INDEX).write_text(json.dumps({"model": str(model), "data": str(data), "sequences": index}, indent=2))
    pipeline.latent_stats = stats
    write_json_atomic(model / "pipeline.json", pipeline.to_dict())
    return stats


def write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    tmp.replace(path)
