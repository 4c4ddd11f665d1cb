"""The shipped demo model: it loads strictly from the package, is trained, and turns a shipped example into meshes."""

from pathlib import Path

from helix4d.pipeline import SamplingOptions
from helix4d.pipeline.config import preset
from helix4d.pipeline.helix4d import DEMO_MODEL, Helix4DPipeline

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_demo_model_ships_and_generates() -> None:
    total = sum(p.stat().st_size for p in DEMO_MODEL.rglob("*") if p.is_file())
    assert total < 100 * 2**20
    pipe = Helix4DPipeline.from_pretrained()  # the default is the shipped model
    assert pipe.config.preset == "demo" and pipe.config.trained and "ss_image_encoder" in pipe.components
    asset = pipe(EXAMPLES / "split.mp4", SamplingOptions(steps=4), max_frames=3)
    assert asset.num_frames == 3
    assert all(len(m.faces) > 100 for m in asset.meshes)
    assert all((m.bounds[1] - m.bounds[0]).max() < 1.0 for m in asset.meshes)  # inside the unit cube


def test_demo_preset_samples_as_the_shipped_model() -> None:
    """A model trained from `model init --preset demo` samples with the settings the shipped budget was read at."""
    shipped = Helix4DPipeline.from_pretrained().config
    fresh = preset("demo").pipeline
    assert fresh.occupancy_threshold == shipped.occupancy_threshold == -1.0
    assert {k: s.cfg_strength for k, s in fresh.sampling.items()} == {
        k: s.cfg_strength for k, s in shipped.sampling.items()
    }
