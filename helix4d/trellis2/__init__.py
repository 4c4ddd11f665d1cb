"""TRELLIS.2 compatibility: full-size presets, official checkpoint conversion, DINOv3/DINOv2 conditioning.

    from helix4d.pipeline import Helix4DPipeline
    pipe = Helix4DPipeline.from_trellis2("TRELLIS.2-4B", dino="dinov3-vitl16", device="cuda")
    # or once, to a self-contained helix4d model folder:
    #   helix4d convert trellis2 TRELLIS.2-4B --dino dinov3-vitl16 --out helix4d-trellis2

Nothing is imported here: `convert` needs `helix4d.pipeline`, which imports this package lazily, and `dino`
needs the optional `transformers`.
"""
