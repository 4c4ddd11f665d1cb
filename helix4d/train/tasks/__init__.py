"""The project's training tasks: every trainable part of a helix4d model folder.

Each task trains one component of a model folder (`task_options.model`, made by `helix4d model init`) and writes
it back into that folder when done (and into the run's `model/` folder), so the stages chain:

    ss_vae, sc_vae (geometry, material)  on a dataset             (helix4d data synth)
    -> helix4d model encode-latents                                (latents + statistics)
    -> image_encoder: condition image -> coarse occupancy          (stage 1's own encoder, `ss_image_encoder`)
    -> flow (stage ss with the image encoder, then geometry, material), static: F = 1
    -> flow ... temporal: true                                     (only the temporal self-attention copies)

Flow tasks follow docs/design.md §3.2: the clip's first frame is the anchor (ground-truth latent, t = 0, never noised),
the loss covers frames >= 1 only, and condition dropout (per frame, never the anchor) enables CFG.
"""

from helix4d.train.tasks import flow, image_encoder, vae  # noqa: F401  (each module registers its tasks)
