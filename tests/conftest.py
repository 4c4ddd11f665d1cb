"""Fixtures several test files share: a tiny random model folder, and a workspace of a tiny synthetic dataset beside
one. Each is built once per test module (module scope), since some tests write into them (latent statistics,
training runs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from helix4d.pipeline.config import preset
from helix4d.pipeline.folder import init_model_folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 'tiny' model folder (seed 0), as `helix4d model init --preset tiny` writes it."""
    folder = tmp_path_factory.mktemp("model") / "tiny"
    init_model_folder(preset("tiny"), folder, seed=0)
    return folder


@pytest.fixture(scope="session")
def tiny_workspace(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Makes ROOT/data, a tiny synthetic dataset (16³ O-Voxels, one 32 px view per frame, built in-process), and
    ROOT/model, a random 'tiny' model (seed 0), in a new folder named after `name`; returns ROOT. A module-scoped
    fixture calls it with the sequences its tests need."""

    def make(name: str, count: int, frames: int, kinds: list[str]) -> Path:
        from helix4d.data.build import build_synthetic

        root = tmp_path_factory.mktemp(name)
        build_synthetic(
            root / "data",
            count=count,
            frames=frames,
            resolution=16,
            image_size=32,
            views=1,
            workers=0,
            kinds=kinds,
            progress=False,
        )
        init_model_folder(preset("tiny"), root / "model", seed=0)
        return root

    return make
