"""`helix4d.train.fit`: a copy of one stage trained on a dataset and scored on the same sequences, per kind."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from helix4d.cli import app
from helix4d.errors import InputError
from helix4d.eval.budget import material_errors
from helix4d.pipeline.helix4d import Helix4DPipeline
from helix4d.pipeline.options import SamplingOptions
from helix4d.train.fit import METRICS, FitSettings, run_fit


@pytest.fixture(scope="module")
def workspace(tiny_workspace) -> Path:
    return tiny_workspace("fit", count=2, frames=3, kinds=["rigid", "sheet"])


@pytest.mark.parametrize("stage", ["ss", pytest.param("geometry", marks=pytest.mark.slow), "material"])
def test_fit_trains_a_copy_and_scores_each_kind(workspace: Path, tmp_path: Path, stage: str) -> None:
    flow = f"{stage}_flow/model.safetensors"
    source_weights = (workspace / "model" / flow).read_bytes()
    settings = FitSettings(stage=stage, steps=2, batch_size=2, sampling_steps=1)
    report = run_fit(workspace / "data", settings, workspace / "model", tmp_path / "work")
    assert set(report.by_kind()) == {"rigid", "sheet"} and len(report.sequences) == 2
    for row in report.sequences:
        assert set(METRICS[stage]) <= set(row)
    if stage == "ss":
        assert all(0.0 <= s["coarse_iou"] <= 1.0 for s in report.sequences)
    if stage == "material":
        assert all(s["colour_delta_e"] >= 0 and math.isfinite(s["vae_delta_e"]) for s in report.sequences)
    assert report.losses and report.losses[-1][0] == 2
    assert (workspace / "model" / flow).read_bytes() == source_weights  # the model given is only read
    assert (tmp_path / "work" / "model" / flow).read_bytes() != source_weights  # its copy was trained


def test_coarse_structure_is_stage_1_of_generate(workspace: Path) -> None:
    pipe = Helix4DPipeline.from_pretrained(workspace / "model")
    images = np.random.default_rng(0).random((2, 4, 32, 32)).astype(np.float32)
    sampling = SamplingOptions(seed=3, steps=2, mode="per-frame")
    alone = pipe.coarse_structure(images, sampling)
    full = pipe.generate(images, sampling).coarse  # our own architecture samples stage 2 on stage 1's voxels
    assert len(alone) == 2 and all(a.ndim == 2 and a.shape[1] == 3 for a in alone)
    assert all(np.array_equal(a, f) for a, f in zip(alone, full))


def test_colour_error_is_hue_sensitive() -> None:
    coords = np.array([[1, 1, 1], [2, 2, 2]], np.int32)

    @dataclass
    class Voxels:  # what material_errors reads of an OVoxel
        coords: np.ndarray
        attrs: np.ndarray

        def __len__(self) -> int:
            return len(self.coords)

    def voxels(rgb) -> Voxels:
        attrs = np.zeros((2, 6), np.float32)
        attrs[:, :3], attrs[:, 5] = rgb, 1.0
        return Voxels(coords, attrs)

    red, green, dark_red = voxels((0.8, 0.1, 0.1)), voxels((0.1, 0.8, 0.1)), voxels((0.75, 0.1, 0.1))
    same = material_errors([red], [red])
    assert same["colour_error"] == 0.0 and same["colour_delta_e"] == 0.0
    assert material_errors([green], [red])["colour_delta_e"] > 80  # another colour
    assert material_errors([dark_red], [red])["colour_delta_e"] < 10  # the same colour, slightly darker


def test_cli_fit_refuses_a_report_onto_its_dataset(workspace: Path) -> None:
    manifest = workspace / "data" / "manifest.json"
    before = manifest.read_bytes()
    result = CliRunner().invoke(app, ["eval", "fit", str(workspace / "data"), "--json", str(manifest)])
    assert isinstance(result.exception, InputError) and "inside the input" in str(result.exception)
    assert manifest.read_bytes() == before
