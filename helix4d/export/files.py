"""Encoding helpers of the export writers (crash-safe writing itself lives in `helix4d.io.files`)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of an (H, W, 3|4) uint8 image. zlib level 3: half the time of level 6 for 18 % more bytes on
    baked textures (a 256² base colour: 5.4 ms / 43 kB against 11.1 ms / 36 kB)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
