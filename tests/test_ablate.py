"""`helix4d ablate`: every variant runs and is scored, and each variant changes exactly what it claims to change."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helix4d.cli import app
from helix4d.errors import InputError
from helix4d.eval.ablate import FLOWS, VARIANTS, generate_variant, rope_3d, run_ablation, variants_by_name
from helix4d.eval.protocols import OursProtocol
from helix4d.pipeline.config import COMPONENTS, preset
from helix4d.pipeline.folder import build_component, write_model_folder
from helix4d.pipeline.helix4d import Helix4DPipeline

runner = CliRunner()
SCORED = ("cd_3d", "cd_4d", "f_score@0.01", "f_score@0.02", "jitter_abs")


def _model(folder: Path, time_mode: str) -> Path:
    """A tiny model with every flow weight perturbed (a fresh adaLN-Zero DiT ignores its inputs). Seed 1 gives
    non-empty meshes in every frame of every variant on the test dataset (a random model may give empty frames,
    which are scored as the worst error: see `helix4d.eval.protocols.EMPTY_FRAME_CD`)."""
    spec = preset("tiny")
    configs = {
        n: dataclasses.replace(c, rope_time_mode=time_mode) if n in FLOWS else c for n, c in spec.components.items()
    }
    torch.manual_seed(1)
    modules = {name: build_component(name, configs[name]) for name in COMPONENTS}
    with torch.no_grad():
        for name in FLOWS:
            for p in modules[name].parameters():
                p.add_(torch.randn_like(p) * 0.2)
    write_model_folder(folder, spec.pipeline, modules, configs)
    return folder


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a CPU shared with busy processes the thread pool stalls (see helix4d.bench.report)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """RoPE in "add" time mode: there 3D RoPE (time_fraction 0) is exactly 4D RoPE at t = 0."""
    return _model(tmp_path_factory.mktemp("model") / "tiny-add", "add")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    from helix4d.data.build import build_synthetic

    root = tmp_path_factory.mktemp("data") / "ds"
    build_synthetic(root, count=2, frames=4, resolution=16, image_size=32, views=1, workers=0, progress=False)
    return root


@pytest.fixture(scope="module")
def assets(model_dir, dataset) -> dict:
    """Every variant's output for the first 3 frames of the first dataset sequence (1 step, one seed)."""
    from helix4d.data.dataset import SequenceDataset

    pipe = Helix4DPipeline.from_pretrained(model_dir)
    images = SequenceDataset(dataset)[0]["images"][:3].numpy()
    return {v.name: generate_variant(pipe, images, v, seed=0, steps=1) for v in VARIANTS}


def _same(a, b) -> bool:
    """Same voxels and attributes up to float noise of differently batched matmuls."""
    return (
        np.array_equal(a.coords, b.coords)
        and np.allclose(a.dual, b.dual, atol=1e-5, rtol=0)
        and np.allclose(a.attrs, b.attrs, atol=1e-5, rtol=0)
    )


@pytest.mark.slow
def test_ablation_runs_every_variant_with_finite_metrics(model_dir, dataset) -> None:
    report = run_ablation(dataset, model_dir, frames=3, steps=1, device="cpu", protocol=OursProtocol(points=300))
    assert [v.variant.name for v in report.variants] == [v.name for v in VARIANTS]
    for v in report.variants:
        assert len(v.sequences) == 2 and v.failed == 0
        for s in v.sequences:
            assert s.frames == 3 and s.seconds > 0
            assert all(math.isfinite(s.metrics[m]) for m in SCORED), (v.variant.name, s.metrics)
    assert report.variants[3].settings["window"] == 3  # full attention: window = F
    assert report.variants[4].settings == {"mode": "per-frame"}
    table = report.table()
    assert "protocol ours" in table and all(f"| {v.name} |" in table for v in VARIANTS)
    out = report.to_json()
    kinds = {s.kind for s in report.variants[0].sequences}
    assert set(out["variants"][0]["by_kind"]) == kinds
    assert out["variants"][0]["mean"]["cd_3d"] == pytest.approx(
        np.mean([s.metrics["cd_3d"] for s in report.variants[0].sequences])
    )


def test_no_rope4d_keeps_the_anchor_and_changes_later_frames(assets) -> None:
    full, rope3 = assets["full"].ovoxels, assets["no-rope4d"].ovoxels
    assert np.array_equal(full[0].coords, rope3[0].coords) and np.array_equal(full[0].dual, rope3[0].dual)
    assert np.array_equal(full[0].attrs, rope3[0].attrs)
    assert all(not _same(a, b) for a, b in zip(full[1:], rope3[1:]))


def test_no_anchor_and_per_frame_change_only_later_frames(assets) -> None:
    full = assets["full"].ovoxels
    for name in ("no-anchor", "per-frame"):
        other = assets[name].ovoxels
        assert _same(full[0], other[0]), name  # frame 0 is the static result in every variant
        assert all(not _same(a, b) for a, b in zip(full[1:], other[1:])), name


def test_rope_3d_swaps_and_restores_the_configs(tmp_path) -> None:
    pipe = Helix4DPipeline.from_pretrained(_model(tmp_path / "m", "replace"))
    before = {n: pipe.components[n].rope for n in FLOWS}
    with pytest.raises(RuntimeError):
        with rope_3d(pipe):
            assert all(pipe.components[n].rope.time_fraction == 0.0 for n in FLOWS)
            assert all(pipe.components[n].rope.head_dim == before[n].head_dim for n in FLOWS)
            raise RuntimeError("restored even on error")
    assert all(pipe.components[n].rope is before[n] for n in FLOWS)
    assert before["ss_flow"].time_fraction == 0.25


def test_unscorable_sequences_are_counted_not_fatal() -> None:
    import trimesh

    from helix4d.eval.ablate import AblationReport, VariantResult, _score

    box = trimesh.creation.box((0.5, 0.5, 0.5))
    ok = _score("a", "rigid", [box, box], [box, box], OursProtocol(points=200, align=False), 1.0)
    bad = _score("b", "rigid", [box, box, box], [box, box], OursProtocol(points=200, align=False), 3.0)
    assert ok.error is None and ok.metrics["cd_3d"] < 0.02
    assert "3 frames" in bad.error and bad.metrics == {}
    result = VariantResult(VARIANTS[0], {}, [ok, bad])
    assert result.failed == 1 and result.mean()["cd_3d"] == ok.metrics["cd_3d"] and result.mean()["seconds"] == 2.0
    table = AblationReport(
        {
            "dataset": "d",
            "sequences": 2,
            "frames": "all",
            "model": "m",
            "seed": 0,
            "steps": 1,
            "device": "cpu",
            "eval_protocol": "ours",
            "units": "u",
            "points": 200,
        },
        [result],
    ).table()
    assert table.splitlines()[-4].endswith("| 2 | 1 |")  # seconds per sequence, failed


def test_variant_names_are_checked() -> None:
    assert [v.name for v in variants_by_name(["per-frame", "full"])] == ["per-frame", "full"]
    with pytest.raises(InputError, match="no-anchor"):
        variants_by_name(["no-such"])


def test_cli_ablate_json(model_dir, dataset) -> None:
    result = runner.invoke(
        app,
        [
            "ablate",
            str(dataset),
            "--model",
            str(model_dir),
            "--sequences",
            "1",
            "--frames",
            "2",
            "--steps",
            "1",
            "--points",
            "200",
            "--variants",
            "full,per-frame",
            "--json",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["protocol"]["eval_protocol"] == "ours" and out["protocol"]["sequences"] == 1
    assert [v["name"] for v in out["variants"]] == ["full", "per-frame"]
    row = out["variants"][0]["sequences"][0]
    assert row["frames"] == 2 and row["error"] is None and row["cd_3d"] is not None
    bad = runner.invoke(app, ["ablate", str(dataset), "--model", str(model_dir), "--variants", "nope"])
    assert isinstance(bad.exception, InputError)
    assert runner.invoke(app, ["ablate", "--help"]).exit_code == 0
