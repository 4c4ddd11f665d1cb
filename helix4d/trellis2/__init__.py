"""TRELLIS.2 compatibility: full-size presets, official checkpoint conversion, DINOv3/DINOv2 conditioning.

    from helix4d.trellis2 import convert_trellis2, load_trellis2_flows
    convert_trellis2("TRELLIS.2-4B", "helix4d-trellis2")   # or: helix4d convert trellis2 SRC --out DST

Heavy imports (transformers) stay inside `helix4d.trellis2.dino`.
"""

from helix4d.trellis2.convert import convert_trellis2, load_trellis2_flows, read_trellis2_folder
from helix4d.trellis2.presets import trellis2_flow_config

__all__ = ["convert_trellis2", "load_trellis2_flows", "read_trellis2_folder", "trellis2_flow_config"]
