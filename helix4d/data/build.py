"""Build 4D training datasets: per-frame meshes -> O-Voxels + condition renders + input video (format: `layout`).

Sources: the synthetic 4D world (`build_synthetic`) or animated asset files imported through Blender
(`build_assets`). Every sequence is built in a worker process (spawned, never forked: EGL contexts and fork do not
mix), each worker keeps one `Renderer`, and one bad item — an exception, a Blender crash, even a worker process
dying — becomes an entry in the manifest's "failures" instead of ending the run. Finished sequences are skipped on
rerun, so an interrupted build resumes where it stopped.

Workers are spawned, which re-imports the calling script: call the builders from a script under
`if __name__ == "__main__":` (the `helix4d data` commands need nothing).
"""

from __future__ import annotations

import functools
import hashlib
import multiprocessing
import os
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from PIL import Image

from helix4d.data import layout
from helix4d.data.layout import DatasetSettings
from helix4d.data.look import Look, look_for
from helix4d.errors import Helix4DError, InputError
from helix4d.io.files import check_output_dir

CRASH_MESSAGE = "the worker process died while building this item (a crash in native code, or out of memory)"


@dataclass(frozen=True)
class BuildItem:
    """One sequence to build: its id, its position in the run (which picks the shard) and its source."""

    id: str
    index: int
    kind: str
    source: dict[str, Any]  # {"type": "synthetic", "seed", "kind"} or {"type": "asset", "path"}

    @property
    def path(self) -> str:
        return f"{layout.shard_name(self.index)}/{self.id}"

    @property
    def seed(self) -> int:
        """The seed its look is drawn from: the scene's own seed, or one made from an asset's id."""
        return int(self.source["seed"]) if self.source["type"] == "synthetic" else look_seed(self.id)


@dataclass
class BuildSummary:
    """What a build run did; `failures` holds {"item", "error"} entries as in the manifest."""

    root: Path
    done: int = 0
    skipped: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def per_minute(self) -> float:
        """Sequences built per minute of wall time (skipped ones not counted)."""
        return 60.0 * self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def all_failed(self) -> bool:
        return self.failed > 0 and self.done == 0 and self.skipped == 0

    def line(self) -> str:
        return (
            f"{self.done} done, {self.skipped} skipped, {self.failed} failed in {self.seconds:.1f} s "
            f"({self.per_minute:.1f} sequences/min) -> {self.root}"
        )


def build_synthetic(
    out: str | os.PathLike,
    count: int,
    frames: int = 16,
    resolution: int = 64,
    image_size: int = 128,
    views: int = 4,
    seed: int = 0,
    workers: int | None = None,
    kinds: Sequence[str] | None = None,
    fps: float = 8.0,
    look: str = "canonical",
    renderer: str = "raster",
    progress: bool = True,
) -> BuildSummary:
    """Build `count` synthetic sequences into `out`: sequence i uses seed `seed + i` and kind `kinds[i % len(kinds)]`
    (default: all of `synthetic.KINDS`, so every phenomenon appears). `workers` processes (default: all cores;
    0 builds in this process, without crash isolation). `look`: 'canonical', 'random', 'mixed' or 'unseen' (see
    `helix4d.data.look`); `renderer`: 'raster' or 'cycles' (Blender, the `blender` extra; `helix4d.data.cycles`)."""
    from helix4d.data.synthetic import KINDS

    if count < 1:
        raise InputError(f"count must be >= 1, got {count}")
    kinds = list(kinds) if kinds else list(KINDS)
    items = [
        BuildItem(
            id=f"{kind}-{seed + i:06d}",
            index=i,
            kind=kind,
            source={"type": "synthetic", "seed": seed + i, "kind": kind},
        )
        for i, kind in ((i, kinds[i % len(kinds)]) for i in range(count))
    ]
    settings = DatasetSettings(
        resolution=resolution, image_size=image_size, frames=frames, views=views, fps=fps, look=look, renderer=renderer
    )
    return _build(items, Path(out), settings, workers, progress)


def build_assets(
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    frames: int = 16,
    resolution: int = 64,
    image_size: int = 128,
    views: int = 4,
    workers: int | None = None,
    fps: float = 8.0,
    look: str = "canonical",
    renderer: str = "raster",
    progress: bool = True,
) -> BuildSummary:
    """Build one sequence per animated asset file (glTF/GLB, FBX, .blend; imported through Blender): `frames` frames
    sampled evenly over each asset's animation range. Needs the `helix4d[blender]` extra."""
    from helix4d.io.blender import require_bpy

    require_bpy("building a dataset from animated assets")
    if not paths:
        raise InputError("no asset files given — pass one or more .glb/.gltf/.fbx/.blend files")
    items, seen = [], set()
    for p in paths:
        resolved = Path(p).expanduser().resolve()
        slug = re.sub(r"[^A-Za-z0-9_-]+", "_", resolved.stem)[:48] or "asset"
        item_id = f"{slug}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
        if item_id not in seen:
            seen.add(item_id)
            items.append(
                BuildItem(id=item_id, index=len(items), kind="asset", source={"type": "asset", "path": str(resolved)})
            )
    settings = DatasetSettings(
        resolution=resolution, image_size=image_size, frames=frames, views=views, fps=fps, look=look, renderer=renderer
    )
    return _build(items, Path(out), settings, workers, progress)


def build_sequence(item: BuildItem, settings: DatasetSettings, root: Path) -> dict[str, Any]:
    """Build one sequence into `root` (temp folder, then atomic rename); return its manifest entry."""
    meshes, times, source, normalization = _load_source(item, settings)
    if len(meshes) != settings.frames:
        raise InputError(f"source gave {len(meshes)} frames, expected {settings.frames}")
    look = look_for(settings.look, item.seed)
    meshes = look.recolour.apply(meshes)  # before encoding: the ground truth carries the colours that are seen
    final = root / item.path
    tmp = layout.start_sequence(final)
    ovoxels = [_encode(mesh, settings.resolution, f) for f, mesh in enumerate(meshes)]
    layout.save_ovoxels(tmp / layout.OVOXELS, ovoxels)
    cameras = look.cameras(settings.views)
    front = _render_views(meshes, cameras, look, item.seed, settings.image_size, tmp, settings.renderer)  # (F, S, S, 4)
    from helix4d.io.video import write_video

    write_video(tmp / layout.VIDEO, over_white(front), settings.fps)
    meta = {
        "id": item.id,
        "kind": item.kind,
        "source": source,
        "settings": settings.to_dict(),
        "times": [float(t) for t in times],
        "cameras": [layout.camera_to_dict(c) for c in cameras],
        "look": look.to_dict(),
        "normalization": {"matrix": np.asarray(normalization, np.float64).tolist()},
        "voxels": [len(ov) for ov in ovoxels],
    }
    layout.write_json_atomic(tmp / layout.META, meta)
    layout.finish_sequence(tmp, final)
    return {"id": item.id, "path": item.path, "kind": item.kind, "frames": len(meshes)}


def look_seed(name: str) -> int:
    """A stable 32-bit seed from a name (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.sha1(name.encode()).digest()[:4], "little")


def over_white(rgba: np.ndarray) -> np.ndarray:
    """Straight-alpha (..., 4) uint8 composited over white -> (..., 3) uint8."""
    a = rgba[..., 3:].astype(np.float32) / 255.0
    return np.round(rgba[..., :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- one sequence


def _load_source(
    item: BuildItem, settings: DatasetSettings
) -> tuple[list[trimesh.Trimesh], np.ndarray, dict, np.ndarray]:
    """(meshes in the unit cube, frame times in s, source description for meta.json, normalisation (4, 4))."""
    if item.source["type"] == "synthetic":
        from helix4d.data.synthetic import build_frames, sample_scene

        spec = sample_scene(item.source["seed"], kind=item.source["kind"], frames=settings.frames)
        meshes = build_frames(spec)
        times = np.arange(len(meshes)) / settings.fps
        return meshes, times, {"type": "synthetic", "spec": spec.to_dict()}, np.eye(4)
    from helix4d.data.blender import import_animated

    asset = import_animated(item.source["path"], frames=settings.frames)
    return asset.meshes, asset.times, {"type": "asset", "path": item.source["path"]}, asset.normalization


def _encode(mesh: trimesh.Trimesh, resolution: int, frame: int):
    from helix4d.ovoxel import mesh_to_ovoxel

    try:
        return mesh_to_ovoxel(mesh, resolution)
    except Helix4DError as exc:
        raise type(exc)(f"frame {frame}: {exc}") from exc


_renderers: dict[int, Any] = {}


def _render_views(
    meshes: list[trimesh.Trimesh], cameras: list, look: Look, seed: int, size: int, folder: Path, engine: str = "raster"
) -> np.ndarray:
    """Write views/vKK/FFFF.png for every view and frame, rendered by `engine` ('raster' or 'cycles'), lit and
    degraded as `look` says; return view 0's frames (F, S, S, 4) uint8."""
    from helix4d.render import Renderer

    if engine == "cycles":
        from helix4d.data.cycles import render_cycles

        traced = render_cycles(meshes, cameras, look.lighting, size)  # (F, K, S, S, 4)
    else:
        traced = None
        if size not in _renderers:  # one per process and size: GL setup is not free
            _renderers[size] = Renderer(size, size)
        renderer = _renderers[size]
        renderer.set_lighting(look.lighting)
    noise = np.random.default_rng([seed & 0xFFFFFFFF, 0x5E45])  # sensor noise: the same on every rebuild
    front = np.empty((len(meshes), size, size, 4), np.uint8)
    for f, mesh in enumerate(meshes):
        rendered = renderer.render_views(mesh, cameras) if traced is None else traced[f]  # (K, S, S, 4)
        images = [look.sensor.apply(image, noise) for image in rendered]
        for v, image in enumerate(images):
            png = layout.view_png(folder, v, f)
            png.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, "RGBA").save(png, compress_level=1)
        front[f] = images[0]
    return front


# ---------------------------------------------------------------------------------------------- the run


def _build(
    items: list[BuildItem], root: Path, settings: DatasetSettings, workers: int | None, progress: bool
) -> BuildSummary:
    if settings.renderer == "cycles":
        from helix4d.io.blender import require_bpy

        require_bpy("rendering with Cycles")  # once, up front, rather than as a failure of every item
    sources = [item.source["path"] for item in items if item.source["type"] == "asset"]
    check_output_dir(root, inputs=sources, reuse=layout.is_dataset)
    root.mkdir(parents=True, exist_ok=True)
    layout.check_settings(root, settings)
    start = time.perf_counter()
    finished = layout.finished_sequences(root)
    todo = [item for item in items if item.id not in finished]
    summary = BuildSummary(root=root, skipped=len(items) - len(todo))
    workers = (os.cpu_count() or 1) if workers is None else workers

    with _progress(progress) as bar:
        task = bar.add_task("building", total=len(items), completed=summary.skipped)

        def on_result(item: BuildItem, ok: bool, value: Any) -> None:
            if ok:
                summary.done += 1
            else:
                summary.failures.append(
                    {"item": item.id if item.source["type"] == "synthetic" else item.source["path"], "error": value}
                )
            bar.update(task, advance=1, description=f"building ({summary.done} done, {summary.failed} failed)")

        run_isolated(functools.partial(build_sequence, settings=settings, root=root), todo, workers, on_result)

    layout.write_manifest(root, settings, list(layout.finished_sequences(root).values()), summary.failures)
    summary.seconds = time.perf_counter() - start
    return summary


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def run_isolated(
    fn: Callable[[Any], Any], items: Sequence[Any], workers: int, on_result: Callable[[Any, bool, Any], None]
) -> None:
    """Call `fn(item)` for every item in `workers` spawned processes; report `on_result(item, ok, value_or_error)`.

    An exception becomes (False, "Type: message"). A worker that dies takes the pool down with it: the items then
    in flight are retried one at a time in a fresh pool, so the one that kills its worker alone is reported as
    failed and the others finish. `workers=0` runs in this process (exceptions are still isolated, crashes not).
    """
    if workers <= 0:
        for item in items:
            on_result(item, *_guarded(fn, item))
        return
    context = multiprocessing.get_context("spawn")
    pending, suspects = deque(range(len(items))), set()
    while pending:
        running: dict = {}
        size = min(workers, len(pending))
        with ProcessPoolExecutor(size, mp_context=context, initializer=_init_worker) as pool:
            try:
                while pending or running:
                    # a suspect runs alone, so a second crash names the culprit
                    while (
                        pending
                        and len(running) < size
                        and not (running and (pending[0] in suspects or suspects.intersection(running.values())))
                    ):
                        i = pending.popleft()
                        running[pool.submit(_guarded, fn, items[i])] = i
                    for future in wait(running, return_when=FIRST_COMPLETED)[0]:
                        status = future.result()  # raises BrokenProcessPool when a worker died
                        on_result(items[running.pop(future)], *status)
            except BrokenProcessPool:
                for future, i in list(running.items()):  # finished just before the crash: keep the result
                    if future.done() and not isinstance(future.exception(), BrokenProcessPool):
                        on_result(items[running.pop(future)], *future.result())
                lost = sorted(running.values())
                if len(lost) == 1:
                    on_result(items[lost[0]], False, CRASH_MESSAGE)
                else:
                    suspects.update(lost)
                    pending.extendleft(reversed(lost))


def _guarded(fn: Callable[[Any], Any], item: Any) -> tuple[bool, Any]:
    try:
        return True, fn(item)
    except Exception as exc:  # one bad item must not end the run: report it and go on
        return False, f"{type(exc).__name__}: {exc}"


def _init_worker() -> None:
    """Workers run side by side: one thread each, or they fight over the cores."""
    import torch

    torch.set_num_threads(1)
