"""Rank 0's view of a run: a progress line on the console, `metrics.jsonl` (always), TensorBoard (when installed)."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

from rich.console import Console

from helix4d.console import labelled

_console = Console(highlight=False, soft_wrap=True)


def info(message: str, enabled: bool = True, warning: bool = False) -> None:
    """Print a status line when `enabled` (rank 0), literally (paths may hold [brackets]); `warning` labels it."""
    if enabled:
        _console.print(labelled("warning:", "yellow", message) if warning else message, markup=False)


class RunLogger:
    """Writes one record per logged step. Every method is a no-op on ranks other than 0 (`enabled=False`).

    On resume, records after `start_step` left by the interrupted run are dropped, so `metrics.jsonl` reads as
    one uninterrupted run."""

    def __init__(self, out_dir: Path, total_steps: int, start_step: int, enabled: bool) -> None:
        self.enabled, self.total_steps = enabled, total_steps
        if not enabled:
            return
        self.metrics_path = out_dir / "metrics.jsonl"
        if self.metrics_path.exists():
            records = self.metrics_path.read_text().splitlines()
            kept = [line for line in records if json.loads(line)["step"] <= start_step]
            self.metrics_path.write_text("".join(f"{line}\n" for line in kept))
        self.metrics_file = open(self.metrics_path, "a")
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step + 1)
        except ImportError as exc:
            info(f"TensorBoard unavailable ({exc}); metrics go to {self.metrics_path} only", warning=True)
        self.last_step, self.last_time = start_step, time.perf_counter()

    def log(self, step: int, values: dict[str, float]) -> None:
        """Record `values` (loss, lr, ...) for `step` and print the progress line with speed and ETA."""
        if not self.enabled:
            return
        now = time.perf_counter()
        it_per_s = (step - self.last_step) / max(now - self.last_time, 1e-9)
        self.last_step, self.last_time = step, now
        record = {"step": step, **values, "it_per_s": it_per_s, "time": time.time()}
        self.metrics_file.write(json.dumps(record) + "\n")
        self.metrics_file.flush()
        if self.tensorboard is not None:
            for key, value in values.items():
                self.tensorboard.add_scalar(f"train/{key}", value, step)
        eta = datetime.timedelta(seconds=round((self.total_steps - step) / max(it_per_s, 1e-9)))
        extra = "  ".join(f"{k} {v:.4g}" for k, v in values.items() if k not in ("loss", "lr"))
        _console.print(
            f"step {step}/{self.total_steps}  loss {values['loss']:.4f}  lr {values['lr']:.2e}  {extra}  "
            f"{it_per_s:.2f} it/s  ETA {eta}"
        )

    def close(self) -> None:
        if self.enabled:
            self.metrics_file.close()
            if self.tensorboard is not None:
                self.tensorboard.close()
