"""GenerateOptions / SamplingOptions (helix4d.pipeline.options): the one set of generate options the CLI, the app
and the Python API share, checked by one table of rules and named as each front end spells them."""

from __future__ import annotations

import pytest

from helix4d.cli.run import FLAGS, MATTING_FLAGS
from helix4d.errors import InputError
from helix4d.io.matting import MattingOptions
from helix4d.pipeline import GenerateOptions, SamplingOptions
from helix4d.settings import texture_size_for


def test_checked_normalises_and_keeps_the_defaults() -> None:
    options = GenerateOptions(frames=16.0, sampling=SamplingOptions(seed=3.0, steps=2.0), texture_size=0).checked()
    assert options.frames == 16 and isinstance(options.frames, int)
    assert options.sampling == SamplingOptions(seed=3, steps=2) and isinstance(options.sampling.seed, int)
    assert options.texture_size == 0  # vertex colours
    assert GenerateOptions().checked().texture_size is None  # the asset's grid decides (`texture_size_for`)
    assert set(GenerateOptions().settings()) == {
        "frames", "fps", "start", "end", "steps", "cfg", "window", "seed", "mode", "chunk", "formats", "texture_size",
        "max_faces", "cleanup", "matting", "mask", "matting_model", "stabilise",
    }  # fmt: skip


def test_textures_follow_the_grid() -> None:
    """8 texels an O-Voxel cell, a power of two in [256, 2048]: the demo model's 32³ grid bakes 256² textures."""
    assert [texture_size_for(r) for r in (0, 16, 32, 33, 64, 256, 512, 1024)] == [
        256, 256, 256, 512, 512, 2048, 2048, 2048,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (GenerateOptions(frames=0), "--frames must be >= 1"),
        (GenerateOptions(sampling=SamplingOptions(cfg=float("nan"))), "--cfg must be a finite number"),
        (GenerateOptions(sampling=SamplingOptions(mode="fast")), "--mode must be one of temporal, per-frame"),
        (GenerateOptions(start=3.0, end=1.0), "--end (1) is before --start (3)"),
        (GenerateOptions(formats=("glb", "obj")), "--formats takes a comma-separated subset"),
        (GenerateOptions(matting=MattingOptions("mask")), "--matting mask needs --mask PATH"),
    ],
)
def test_checked_names_the_flag_the_user_typed(options: GenerateOptions, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        options.checked(FLAGS, MATTING_FLAGS)


def test_sampling_options_name_python_keywords_by_default() -> None:
    with pytest.raises(InputError, match="steps must be >= 1"):
        SamplingOptions(steps=0).checked()
