"""Generation: presets and model folders, the rectified-flow sampler, and `Helix4DPipeline` (video -> Asset4D)."""

from helix4d.pipeline.helix4d import Asset4D, Helix4DPipeline

__all__ = ["Asset4D", "Helix4DPipeline"]
