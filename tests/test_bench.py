"""`helix4d bench`: the pipeline rows (fresh process per size), their tables and JSON, scaling, device checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helix4d.bench.report import (
    STAGE_ORDER,
    PipelineBenchRow,
    bench_images,
    pipeline_table,
    resolve_devices,
    scaling,
)
from helix4d.cli import app
from helix4d.errors import BackendUnavailableError, InputError

runner = CliRunner()


def _row(frames: int, total: float) -> PipelineBenchRow:
    seconds = {s: total / 5 for s in STAGE_ORDER}
    return PipelineBenchRow("cpu", frames, 1, 1, 100.0, seconds, total, total, 300.0, 10.0, "rss")


def test_cli_bench_pipeline_json_and_table() -> None:
    result = runner.invoke(app, ["bench", "pipeline", "--frames", "2,4", "--steps", "1", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"machine", "settings", "pipeline", "scaling"} <= set(out)
    assert [r["frames"] for r in out["pipeline"]] == [2, 4]
    for r in out["pipeline"]:
        assert set(r["seconds"]) == set(STAGE_ORDER)
        assert r["total"] >= sum(r["seconds"].values()) * 0.99 and r["peak_mib"] > 50 and r["voxels_per_frame"] > 0
        assert r["fps"] == pytest.approx(r["frames"] / r["total"])
        assert r["threads"] == 1 and r["cpu_seconds"] > 0
    assert out["scaling"][1]["frame_ratio"] == 2.0
    rows = [
        PipelineBenchRow(**{k: v for k, v in r.items() if k not in ("seconds_per_frame", "fps")})
        for r in out["pipeline"]
    ]
    table = pipeline_table(rows)
    assert all(f"{s} s" in table for s in STAGE_ORDER) and "peak RSS" in table and "× linear" in table


def test_scaling_of_a_linear_run_is_one() -> None:
    rows = [_row(4, 2.0), _row(8, 4.0), _row(16, 8.0)]
    assert [s["vs_linear"] for s in scaling(rows)] == pytest.approx([1.0, 1.0, 1.0])
    assert [s["seconds_per_frame"] for s in scaling(rows)] == pytest.approx([0.5, 0.5, 0.5])
    assert scaling([_row(4, 2.0), _row(8, 8.0)])[1]["vs_linear"] == pytest.approx(2.0)


def test_bench_images_show_a_moving_object() -> None:
    images = bench_images(3, 32)
    assert images.shape == (3, 4, 32, 32) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1 and (images[:, 3] > 0).any(axis=(1, 2)).all()
    assert not np.array_equal(images[0], images[2])
    assert np.all(images[:, :3] <= images[:, 3:])  # RGB over black: premultiplied by alpha


def test_devices_are_checked() -> None:
    assert resolve_devices("cpu") == ["cpu"]
    assert resolve_devices("auto")[0] == "cpu"
    with pytest.raises(InputError, match="auto, cpu or cuda"):
        resolve_devices("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError):
            resolve_devices("cuda")


def test_bench_help() -> None:
    for command in (["bench", "--help"], ["bench", "pipeline", "--help"], ["bench", "all", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0 and "Usage" in result.output
    bad = runner.invoke(app, ["bench", "pipeline", "--frames", "0"])
    assert isinstance(bad.exception, InputError)


def test_matting_end_to_end_scores_clean_and_composited_clips(tmp_path) -> None:
    from helix4d.bench.matting import end_to_end, end_to_end_table, make_clips

    clips = make_clips(tmp_path / "synth", clips=1, frames=2, seed=3)
    scores = end_to_end(clips)  # the shipped demo model
    assert sorted(scores) == ["clean", "hand-held", "static"]
    assert all(len(v) == 1 and 0 < v[0] < 1 for v in scores.values())
    assert "| clean | its own alpha |" in end_to_end_table(scores)


def test_drift_rows_score_every_block_of_a_long_clip(tmp_path) -> None:
    from helix4d.bench.drift import drift_table, run_drift
    from helix4d.data.build import build_synthetic

    build_synthetic(tmp_path / "long", 1, frames=5, resolution=32, image_size=128, views=1, seed=4, workers=0)
    blocks, rows = run_drift(tmp_path / "long", chunks=[0, 3], block=2, steps=2)
    assert blocks == [(0, 2), (2, 4), (4, 5)] and [r.name for r in rows] == ["one anchor", "chunks of 3"]
    assert all(len(block["cd_3d"]) == 1 for row in rows for block in row.blocks)
    assert rows[0].blocks[0]["cd_3d"] != rows[1].blocks[2]["cd_3d"]
    assert drift_table(blocks, rows).count("\n") == 3  # the header, its rule and one line per row
