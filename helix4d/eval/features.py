"""Feature-based metrics: CLIP similarity between images and the Fréchet Video Distance (FVD).

Both sit on a small extractor protocol so the maths can be tested with any tiny network, and the real models
come from local files the user supplies (nothing is downloaded):

- CLIP: a Hugging Face `transformers` CLIP folder (config.json + weights, e.g. openai/clip-vit-base-patch32
  saved with `save_pretrained`), loaded by `load_clip_extractor`. Needs `pip install transformers`.
- I3D for FVD: the TorchScript Kinetics-400 I3D used by StyleGAN-V and most video-generation papers
  (`i3d_torchscript.pt`), loaded by `load_i3d_extractor`; it is called as
  `model(videos, rescale=True, resize=True, return_features=True)` on (B, 3, T, H, W) float videos in
  [0, 255] and returns (B, 400) logits-layer features.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.linalg
import torch

from helix4d.errors import BackendUnavailableError, InputError


class ImageFeatures(Protocol):
    """Maps images (B, H, W, 3) uint8 to features (B, D)."""

    def __call__(self, images: np.ndarray) -> np.ndarray: ...


class VideoFeatures(Protocol):
    """Maps videos (B, T, H, W, 3) uint8 to features (B, D)."""

    def __call__(self, videos: np.ndarray) -> np.ndarray: ...


# ------------------------------------------------------------------------------------------------ maths


def gaussian_fit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) of features (N, D), N >= 2."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise InputError(f"need at least 2 feature vectors (N, D) to fit a Gaussian, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussian fits of two feature sets (N, D), (M, D):
    |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)). 0 for identical sets; `eps` on the diagonals only
    when the product's square root is not finite (singular covariances, e.g. fewer samples than dimensions)."""
    mu_a, cov_a = gaussian_fit(features_a)
    mu_b, cov_b = gaussian_fit(features_b)
    if mu_a.shape != mu_b.shape:
        raise InputError(f"feature sizes differ: {mu_a.shape[0]} and {mu_b.shape[0]}")
    with warnings.catch_warnings():  # singular products are expected with few samples; checked below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():
            offset = eps * np.eye(cov_a.shape[0])
            root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    root = root.real  # tiny imaginary parts are round-off
    value = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * np.trace(root)
    return float(max(value, 0.0))


def fvd(videos_a: np.ndarray, videos_b: np.ndarray, extractor: VideoFeatures, batch: int = 8) -> float:
    """FVD between two sets of videos (N, T, H, W, 3) and (M, T', H', W', 3) uint8 under `extractor`."""
    return frechet_distance(_batched(extractor, videos_a, batch), _batched(extractor, videos_b, batch))


def clip_similarity(images_a: np.ndarray, images_b: np.ndarray, extractor: ImageFeatures, batch: int = 32) -> float:
    """Mean cosine similarity between the features of paired images (N, H, W, 3) uint8, e.g. each rendered
    frame against its input frame (1 for identical images)."""
    if len(images_a) != len(images_b):
        raise InputError(f"CLIP similarity pairs images one to one, got {len(images_a)} and {len(images_b)}")
    fa, fb = _batched(extractor, images_a, batch), _batched(extractor, images_b, batch)
    fa = fa / np.maximum(np.linalg.norm(fa, axis=1, keepdims=True), 1e-12)
    fb = fb / np.maximum(np.linalg.norm(fb, axis=1, keepdims=True), 1e-12)
    return float((fa * fb).sum(axis=1).mean())


def _batched(extractor: Callable[[np.ndarray], np.ndarray], items: np.ndarray, batch: int) -> np.ndarray:
    if len(items) == 0:
        raise InputError("no images or videos to extract features from")
    return np.concatenate(
        [np.asarray(extractor(items[i : i + batch]), np.float64) for i in range(0, len(items), batch)]
    )


# ------------------------------------------------------------------------------------------------ real models


def load_clip_extractor(folder: str | Path, device: str = "cpu") -> ImageFeatures:
    """CLIP image features from a local `transformers` CLIP folder (config.json, weights, preprocessor)."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise InputError(
            f"{folder} is not a CLIP model folder (no config.json); pass a folder written by "
            "transformers' CLIPModel.save_pretrained, e.g. a local copy of clip-vit-base-patch32"
        )
    try:
        from transformers import CLIPImageProcessor, CLIPModel
    except ImportError as exc:
        raise BackendUnavailableError("CLIP similarity needs transformers: pip install transformers") from exc
    model = CLIPModel.from_pretrained(folder, local_files_only=True).eval().to(device)
    processor = CLIPImageProcessor.from_pretrained(folder, local_files_only=True)

    @torch.no_grad()
    def extract(images: np.ndarray) -> np.ndarray:
        pixels = processor(images=list(images), return_tensors="pt")["pixel_values"].to(device)
        vision = model.vision_model(pixel_values=pixels)
        return model.visual_projection(vision.pooler_output).float().cpu().numpy()  # (B, D)

    return extract


def load_i3d_extractor(path: str | Path, device: str = "cpu") -> VideoFeatures:
    """FVD features from the TorchScript I3D file (see the module docstring for its calling convention)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"I3D TorchScript file not found: {path}; pass the i3d_torchscript.pt used for FVD")
    try:
        model = torch.jit.load(str(path), map_location=device).eval()
    except RuntimeError as exc:
        raise InputError(f"{path} is not a TorchScript file ({exc})") from None

    @torch.no_grad()
    def extract(videos: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(videos)).to(device).float()  # (B, T, H, W, 3)
        x = x.permute(0, 4, 1, 2, 3)  # (B, 3, T, H, W) in [0, 255]
        return model(x, rescale=True, resize=True, return_features=True).float().cpu().numpy()

    return extract
