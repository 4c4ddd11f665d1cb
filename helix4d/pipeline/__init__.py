"""Generation: presets and model folders, the rectified-flow sampler, and `Helix4DPipeline` (video -> Asset4D)."""

from helix4d.pipeline.helix4d import Asset4D, Helix4DPipeline
from helix4d.pipeline.options import GenerateOptions, SamplingOptions

__all__ = ["Asset4D", "GenerateOptions", "Helix4DPipeline", "SamplingOptions"]
