"""Input side of the pipeline: decode and sample videos, then matte, crop and resize frames for the model."""

from helix4d.io.preprocess import Preprocessed, preprocess_frames
from helix4d.io.video import Video, read_video, write_video

__all__ = ["Preprocessed", "Video", "preprocess_frames", "read_video", "write_video"]
