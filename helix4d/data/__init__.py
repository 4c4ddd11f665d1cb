"""Training data: the procedural 4D world (`synthetic`), importing animated assets, and dataset building."""

from helix4d.data.synthetic import KINDS, SceneSpec, build_frames, sample_scene

__all__ = ["KINDS", "SceneSpec", "build_frames", "sample_scene"]
