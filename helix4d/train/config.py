"""`TrainConfig`: every knob of a training run, loaded from a JSON file.

JSON (not TOML) because the rest of the project already speaks JSON: model folders hold `config.json`, and the
resolved training config is written beside the run as `config.json` too. Paths in the file are used as written
(relative paths are relative to the directory you launch from), exactly like paths given on the command line.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any

from helix4d.errors import ConfigError

PRECISIONS = ("fp32", "bf16")
MAX_COUNT = 10**9  # steps, batch sizes, intervals: beyond this a number is a typo (a billion steps is years)
DEVICES = ("auto", "cpu", "cuda")
STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Only `task` is required; the defaults run (slowly) as they are."""

    task: str  # registry key of a task factory ("ss_vae", "sc_vae", "flow", or a plug-in's entry point)
    task_options: dict[str, Any] = field(default_factory=dict)  # passed to the task untouched
    data: str | None = None  # dataset path, read by the task; must exist when given
    out: str = "runs/train"  # checkpoints/, model/, metrics.jsonl, tensorboard/, config.json
    seed: int = 0
    steps: int = 1000  # optimizer steps in total (a resumed run continues up to this number)
    batch_size: int = 8  # global: split evenly over all processes
    lr: float = 1e-4
    min_lr: float = 1e-5  # the cosine decay ends here
    weight_decay: float = 0.01  # applied to matrices only (ndim >= 2), never to biases and norms
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100  # linear warm-up from 0 to lr
    lr_decay_steps: int | None = None  # step where the cosine reaches min_lr; None = steps
    grad_clip: float = 1.0  # max global gradient norm; 0 disables
    ema_decay: float = 0.999  # 0 disables; the final model is the EMA when enabled
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2  # older step checkpoints are deleted
    log_every: int = 10
    precision: str = "bf16"  # "fp32" | "bf16" (autocast, CUDA only; fp32 on CPU)
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    num_workers: int = 0  # DataLoader worker processes per rank
    strategy: str = "ddp"  # "ddp" | "fsdp" (shards parameters, gradients and optimizer state over ranks)

    def __post_init__(self) -> None:
        for name in ("lr", "min_lr", "weight_decay", "grad_clip", "ema_decay"):
            value = getattr(self, name)
            _check(math.isfinite(value), f"{name} must be a finite number, got {value}")
        _check(all(math.isfinite(b) for b in self.betas), f"betas must be finite numbers, got {list(self.betas)}")
        for name in ("steps", "batch_size", "warmup_steps", "lr_decay_steps", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if value is not None:
                _check(value <= MAX_COUNT, f"{name} must be at most {MAX_COUNT:,}, got {value:,}")
        _check(bool(self.task), 'task must name a task, e.g. "ss_vae"')
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _check(self.steps > 0, f"steps must be > 0, got {self.steps}")
        _check(self.batch_size > 0, f"batch_size must be > 0, got {self.batch_size}")
        _check(self.lr > 0, f"lr must be > 0, got {self.lr}")
        _check(0 <= self.min_lr <= self.lr, f"min_lr must be in [0, lr={self.lr}], got {self.min_lr}")
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(all(0 <= b < 1 for b in self.betas), f"betas must lie in [0, 1), got {list(self.betas)}")
        _check(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        _check(
            self.lr_decay_steps is None or self.lr_decay_steps >= self.warmup_steps,
            f"lr_decay_steps ({self.lr_decay_steps}) must be >= warmup_steps ({self.warmup_steps})",
        )
        _check(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables), got {self.grad_clip}")
        _check(0 <= self.ema_decay < 1, f"ema_decay must be in [0, 1) (0 disables), got {self.ema_decay}")
        _check(self.checkpoint_every > 0, f"checkpoint_every must be > 0, got {self.checkpoint_every}")
        _check(self.keep_checkpoints > 0, f"keep_checkpoints must be > 0, got {self.keep_checkpoints}")
        _check(self.log_every > 0, f"log_every must be > 0, got {self.log_every}")
        _check(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        for name, allowed in (("precision", PRECISIONS), ("device", DEVICES), ("strategy", STRATEGIES)):
            value = getattr(self, name)
            _check(value in allowed, f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        _check(
            self.data is None or Path(self.data).exists(),
            f"data path {self.data!r} does not exist; fix 'data' in the config",
        )

    @property
    def decay_steps(self) -> int:
        """Step at which the cosine schedule reaches min_lr."""
        return self.steps if self.lr_decay_steps is None else self.lr_decay_steps

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (the inverse of `from_dict`)."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build a config from parsed JSON, checking every key and type so mistakes name the key at fault."""
        if isinstance(raw, dict) and "task" not in raw:
            raise ConfigError(f'{source} has no \'task\'; add e.g. "task": "ss_vae"')
        return parse_dataclass(cls, raw, source)


T = typing.TypeVar("T")


def parse_dataclass(cls: type[T], raw: Any, source: str) -> T:
    """A dataclass from parsed JSON (a training config, a task's options): every key known (a typo gets a
    suggestion), every value of its field's type, required fields present; errors name `source` and the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must hold a JSON object {{...}}, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    unknown = [k for k in raw if k not in hints]
    if unknown:
        close = difflib.get_close_matches(unknown[0], hints, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"{source}: unknown key {unknown[0]!r}{hint}; valid keys: {', '.join(hints)}")
    required = [f.name for f in dataclasses.fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    missing = [k for k in required if k not in raw]
    if missing:
        raise ConfigError(f"{source} needs {', '.join(repr(k) for k in missing)}")
    values = {k: _coerce(k, v, hints[k]) for k, v in raw.items()}
    try:
        return cls(**values)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a JSON training config, apply command-line overrides (None values are ignored) and validate it.
    `train` resolves its task name before it builds anything, so a typo there fails first too."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; pass the path of a JSON training config")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    if isinstance(raw, dict):
        raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return TrainConfig.from_dict(raw, source=str(path))


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _coerce(name: str, value: Any, hint: Any) -> Any:
    """Return `value` as type `hint` (int -> float, list -> tuple) or raise a ConfigError naming the key."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # `X | None`
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(name, value, inner)
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is float and is_number:
        return float(value)
    if hint is int and is_number and float(value).is_integer():
        return int(value)
    if hint is str and isinstance(value, str):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if origin is dict and isinstance(value, dict):
        return dict(value)
    if origin is tuple and isinstance(value, (list, tuple)) and len(value) == len(args):
        return tuple(_coerce(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    expected = hint.__name__ if isinstance(hint, type) else str(hint)
    raise ConfigError(f"{name} must be {expected}, got {json.dumps(value)}")
