"""Encoding helpers of the export writers (crash-safe writing itself lives in `helix4d.io.files`)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an (H, W, 3|4) uint8 image."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
