"""TRELLIS.2 compatibility: full-size presets, official checkpoint conversion, DINOv3/DINOv2 conditioning.

    from helix4d.trellis2.architecture import trellis2_pipeline
    pipe = trellis2_pipeline("TRELLIS.2-4B", dino="dinov3-vitl16", device="cuda")
    # or once, to a self-contained helix4d model folder that `Helix4DPipeline.from_pretrained` loads:
    #   helix4d convert trellis2 TRELLIS.2-4B --dino dinov3-vitl16 --out helix4d-trellis2

Nothing is imported here: the package sits above `helix4d.pipeline` (docs/design.md §9), which loads a converted folder
through `helix4d.trellis2.architecture` by name, and `dino` needs the optional `transformers`.
"""
