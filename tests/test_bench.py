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
