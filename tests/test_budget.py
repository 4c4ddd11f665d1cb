"""`helix4d eval budget`: every row of the error budget on a tiny dataset and model, with the right ground truth."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from typer.testing import CliRunner

from helix4d.cli import app
from helix4d.errors import InputError
from helix4d.eval.budget import ROWS, boundary_edge_count, coarse_voxels, run_budget, voxel_iou
from helix4d.eval.protocols import OursProtocol


@pytest.fixture(scope="module")
def workspace(tiny_workspace) -> Path:
    return tiny_workspace("budget", count=2, frames=3, kinds=["sheet", "split"])


@pytest.mark.slow
def test_budget_scores_every_row_per_kind(workspace: Path) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        report = run_budget(
            workspace / "data", workspace / "model", steps=1, device="cpu", protocol=OursProtocol(points=800)
        )
    finally:
        torch.set_num_threads(threads)
    assert report.kinds == ["sheet", "split"] and report.settings["ground_truth"] == "source meshes (synthetic spec)"
    ceiling, vae = report.mean("ceiling"), report.mean("vae")
    assert ceiling["cd_3d"] < 0.05 and ceiling["colour_error"] == 0.0 and ceiling["empty_frames"] == 0
    assert math.isnan(ceiling.get("coarse_iou", math.nan))
    assert 0.0 <= vae["coarse_iou"] <= 1.0 and math.isfinite(vae["cd_3d"])
    assert ceiling["colour_delta_e"] == 0.0
    for row in ("stages_2_3", "temporal", "cleaned", "per_frame", "video"):  # a random model: empty frames, no failure
        assert math.isfinite(report.mean(row)["cd_3d"])
    temporal, cleaned = report.mean("temporal"), report.mean("cleaned")
    assert cleaned["boundary_edges"] <= temporal["boundary_edges"] and cleaned["coarse_iou"] == temporal["coarse_iou"]
    assert report.mean("ceiling", "sheet")["boundary_edges"] > 0  # an open sheet has rims
    data = json.loads(json.dumps(report.to_json()))
    assert set(data["mean"]) == set(ROWS) and set(data["by_kind"]) == {"sheet", "split"}
    assert "| ceiling |" in report.table() and "| sheet |" in report.table()


def test_cli_budget_writes_json(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "budget.json"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "budget",
            str(workspace / "data"),
            "--model",
            str(workspace / "model"),
            "--rows",
            "ceiling,vae",
            "--sequences",
            "1",
            "--points",
            "500",
            "--device",
            "cpu",
            "--json",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["settings"]["rows"] == ["ceiling", "vae"] and "| vae |" in result.output
    bad = CliRunner().invoke(app, ["eval", "budget", str(workspace / "data"), "--rows", "nope"])
    assert isinstance(bad.exception, InputError)


def test_budget_pieces() -> None:
    assert voxel_iou(np.array([[0, 0, 0], [1, 0, 0]]), np.array([[1, 0, 0]])) == 0.5
    assert voxel_iou(np.zeros((0, 3)), np.zeros((0, 3))) == 1.0
    assert boundary_edge_count(trimesh.creation.box()) == 0
    assert boundary_edge_count(trimesh.Trimesh([[0, 0, 0], [1, 0, 0], [0, 1, 0]], [[0, 1, 2]])) == 3

    class Frame:  # the one field coarse_voxels reads
        coords = np.array([[0, 0, 0], [3, 3, 3], [4, 0, 0]])

    assert coarse_voxels([Frame()], 4)[0].tolist() == [[0, 0, 0], [1, 0, 0]]
