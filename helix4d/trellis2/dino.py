"""DINOv3 / DINOv2 condition tokens for TRELLIS.2-size models, through `transformers`, from a local folder.

TRELLIS.2 conditions on DINOv3 ViT-L/16 (`facebook/dinov3-vitl16-pretrain-lvd1689m`): the image (RGB over black,
512 px, ImageNet-normalised) goes through every transformer layer, and the last hidden state is layer-normalised
WITHOUT the model's learned affine (`F.layer_norm`, eps 1e-5) — 1024-d tokens, 1 + 4 + 32² = 1029 at 512 px
(CLS, registers, patches). The unconditional input for CFG is all zeros (`uncond`). TRELLIS (v1) used DINOv2 the
same way. We replace the model's final norm by that plain layer norm, so `last_hidden_state` is the feature and
no per-layer hidden states are kept.

Nothing is downloaded: the user downloads the model folder (config.json + model.safetensors) and passes it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from helix4d.errors import BackendUnavailableError, InputError

DINOV3 = "facebook/dinov3-vitl16-pretrain-lvd1689m"
DINO_IMAGE_SIZE = 512  # TRELLIS.2's condition resolution
IMAGE_ENCODER = "image_encoder"  # where a converted model folder keeps its copy of the DINO folder
FINAL_NORM = {"dinov3_vit": "norm", "dinov2": "layernorm", "dinov2_with_registers": "layernorm"}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DinoEncoder(nn.Module):
    """images (B, 3|4, S, S) in [0, 1] -> condition tokens (B, L, D), frozen."""

    def __init__(self, model: nn.Module, image_size: int = 512) -> None:
        super().__init__()
        model_type = model.config.model_type
        if model_type not in FINAL_NORM:
            raise InputError(f"{model_type!r} is not a DINOv3/DINOv2 model; use {DINOV3}")
        patch = model.config.patch_size
        if image_size % patch:
            raise InputError(f"image_size {image_size} must be a multiple of the patch size {patch}")
        width = model.config.hidden_size
        setattr(model, FINAL_NORM[model_type], nn.LayerNorm(width, eps=1e-5, elementwise_affine=False))
        self.model, self.image_size = model.eval().requires_grad_(False), image_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_folder(cls, folder: str | Path, image_size: int = DINO_IMAGE_SIZE) -> DinoEncoder:
        """Load a DINOv3/DINOv2 model folder (config.json + model.safetensors) that the user downloaded."""
        folder = Path(folder)
        dino_folder_files(folder)
        try:
            from transformers import AutoModel
        except ImportError:
            raise BackendUnavailableError(
                "DINO conditioning needs transformers: pip install 'helix4d[trellis2]'"
            ) from None
        try:
            model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot load the DINO model in {folder} ({exc}); re-download {DINOV3}") from None
        return cls(model, image_size)

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @property
    def num_tokens(self) -> int:
        """1 CLS + register tokens + patches (1029 for DINOv3 ViT-L/16 at 512 px)."""
        registers = getattr(self.model.config, "num_register_tokens", 0)
        return 1 + registers + (self.image_size // self.model.config.patch_size) ** 2

    @torch.no_grad()
    def forward(self, images: Tensor, batch: int = 4) -> Tensor:
        """images (B, 3 or 4, S, S) in [0, 1], RGB over black (+ alpha, unused) -> (B, L, D), `batch` at a time."""
        if images.ndim != 4 or images.shape[1] not in (3, 4):
            raise InputError(f"images must be (B, 3|4, S, S), got {tuple(images.shape)}")
        dtype = next(self.model.parameters()).dtype
        rgb = images[:, :3].to(self.mean.device, torch.float32)  # (B, 3, S, S)
        if rgb.shape[-1] != self.image_size or rgb.shape[-2] != self.image_size:
            rgb = nn.functional.interpolate(rgb, size=(self.image_size,) * 2, mode="bicubic", antialias=True)
        rgb = ((rgb.clamp(0, 1) - self.mean) / self.std).to(dtype)  # (B, 3, R, R); clamp: bicubic overshoots
        outs = [self.model(pixel_values=chunk).last_hidden_state for chunk in rgb.split(batch)]  # (b, L, D) each
        return torch.cat(outs)  # (B, L, D)

    @staticmethod
    def uncond(cond: Tensor) -> Tensor:
        """The unconditional tokens for classifier-free guidance: zeros, as TRELLIS.2 trains them."""
        return torch.zeros_like(cond)


def dino_folder_files(folder: Path) -> list[Path]:
    """The files of a downloaded DINO folder worth copying (config, weights, preprocessing), or a clear error."""
    weights = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not (folder / "config.json").is_file() or not weights:
        raise InputError(
            f"no DINO model at {folder} (config.json or *.safetensors missing): download {DINOV3} yourself (accept "
            "its licence on the model page) into a folder with config.json and model.safetensors, and pass that folder"
        )
    return [folder / "config.json", *weights, *sorted(p for p in folder.glob("*.json") if p.name != "config.json")]
