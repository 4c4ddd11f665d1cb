"""Batches in `helix4d generate`: several inputs, a folder of videos or a list file give one output folder per
video; a broken video is recorded and the rest go on; a rerun skips finished ones; torchrun's 2 processes give
the same files as 1 process. Tiny random model, 3-frame clips, one step, GLB only."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helix4d.cli import main
from helix4d.io.video import write_video
from helix4d.pipeline.batch import batch_videos
from helix4d.pipeline.config import COMPONENTS, preset
from helix4d.pipeline.folder import build_component, write_model_folder

FAST = ["--steps", "1", "--texture-size", "0", "--formats", "glb", "--device", "cpu"]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("batch")
    spec = preset("tiny")
    torch.manual_seed(0)
    modules = {name: build_component(name, spec.components[name]) for name in COMPONENTS}
    write_model_folder(root / "model", dataclasses.replace(spec.pipeline, trained=True), modules, spec.components)
    videos = root / "videos"
    videos.mkdir()
    for i, colour in enumerate([(200, 40, 40), (40, 160, 60), (30, 60, 200)]):
        frames = np.full((3, 48, 48, 3), 255, np.uint8)
        for f in range(3):
            frames[f, 10 + f : 30 + f, 12 + i : 32 + i] = colour
        write_video(videos / f"clip{i}.mp4", frames, fps=6)
    (videos / "broken.mp4").write_bytes(b"not a video at all" * 50)
    return root


def _generate(*args: str, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["helix4d", "generate", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def test_inputs_that_make_a_batch(work: Path, tmp_path: Path) -> None:
    videos = sorted((work / "videos").iterdir())
    assert batch_videos([videos[0]]) is None  # one video: a single run, OUT is the asset
    assert batch_videos(videos[:2]) == videos[:2]
    assert batch_videos([work / "videos"]) == videos
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0000.png").write_bytes(b"")
    assert batch_videos([frames]) is None  # a folder of images stays one video
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my clips\n{videos[1]}\n\nvideos/clip0.mp4  # relative to the list\n")
    assert batch_videos([listing]) == [videos[1], tmp_path / "videos" / "clip0.mp4"]


def test_batch_isolates_a_broken_video_and_a_rerun_skips_finished_ones(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "out"
    assert (
        _generate(str(work / "videos"), "-o", str(out), "--model", str(work / "model"), *FAST, monkeypatch=monkeypatch)
        == 0
    )
    report = json.loads((out / "batch.json").read_text())
    status = {Path(v["video"]).name: v["status"] for v in report["videos"]}
    assert status == {"broken.mp4": "failed", "clip0.mp4": "done", "clip1.mp4": "done", "clip2.mp4": "done"}
    assert (report["done"], report["failed"]) == (3, 1)
    assert "not a readable video" in next(v["error"] for v in report["videos"] if v["status"] == "failed")
    assert sorted(p.name for p in out.iterdir()) == ["batch.json", "clip0", "clip1", "clip2"]
    for name in ("clip0", "clip1", "clip2"):
        assert (out / name / "result.json").is_file() and len(list((out / name / "frames").glob("*.glb"))) == 3
    stamp = (out / "clip1" / "result.json").stat().st_mtime_ns
    capsys.readouterr()
    assert (
        _generate(str(work / "videos"), "-o", str(out), "--model", str(work / "model"), *FAST, monkeypatch=monkeypatch)
        == 0
    )
    again = json.loads((out / "batch.json").read_text())
    assert [v["status"] for v in again["videos"]] == ["failed", "skipped", "skipped", "skipped"]
    assert (out / "clip1" / "result.json").stat().st_mtime_ns == stamp
    assert "skipped" in capsys.readouterr().err  # the summary table


def test_a_batch_where_every_video_fails_exits_2(work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(work / "videos" / "broken.mp4", bad / "a.mp4")
    shutil.copy(work / "videos" / "broken.mp4", bad / "b.mp4")
    assert (
        _generate(str(bad), "-o", str(tmp_path / "out"), "--model", str(work / "model"), *FAST, monkeypatch=monkeypatch)
        == 2
    )


def test_torchrun_two_processes_give_the_same_files_as_one(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    videos = [str(work / "videos" / f"clip{i}.mp4") for i in range(3)]
    one = tmp_path / "one"
    assert _generate(*videos, "-o", str(one), "--model", str(work / "model"), *FAST, monkeypatch=monkeypatch) == 0
    two = tmp_path / "two"
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(
        [
            str(torchrun),
            "--nproc_per_node",
            "2",
            "--master_port",
            "29533",
            "-m",
            "helix4d.generate",
            *videos,
            "-o",
            str(two),
            "--model",
            str(work / "model"),
            *FAST,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((two / "batch.json").read_text())
    assert [Path(v["video"]).name for v in report["videos"]] == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    assert all(v["status"] == "done" for v in report["videos"])
    for i in range(3):
        for glb in sorted((one / f"clip{i}" / "frames").glob("*.glb")):
            assert glb.read_bytes() == (two / f"clip{i}" / "frames" / glb.name).read_bytes()
