"""Batches in `helix4d generate`: several inputs, folders of videos or list files give one output folder per
video, named stably whatever the order; a broken video is recorded and the rest go on; a rerun skips only what was
made from the same video with the same settings; a second batch into one folder is refused; torchrun's 2
processes give the same files as 1 process. Tiny random model, 3-frame clips, one step, GLB only."""

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
from helix4d.pipeline.batch import BATCH_LOCK, batch_videos, output_names
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


def test_list_files_anywhere_with_a_byte_order_mark_and_crlf(work: Path, tmp_path: Path) -> None:
    videos = sorted((work / "videos").glob("clip*.mp4"))
    first = tmp_path / "first.txt"  # as Windows Notepad saves it: a byte-order mark and CRLF line ends
    first.write_bytes(b"\xef\xbb\xbf" + f"{videos[0]}\r\n# a comment\r\n{videos[1]}\r\n".encode())
    second = tmp_path / "second.txt"
    second.write_text(f"{videos[2]}\n")
    assert batch_videos([first]) == videos[:2]
    assert batch_videos([first, second]) == videos  # two list files: both read as lists
    assert batch_videos([videos[2], first]) == [videos[2], *videos[:2]]  # a list among videos
    assert batch_videos([first, videos[0], work / "videos" / ".." / "videos" / "clip1.mp4"]) == videos[:2]  # once


def test_output_names_do_not_depend_on_the_order_and_never_collide() -> None:
    videos = [Path("in/clip.mp4"), Path("in/clip.avi"), Path("in/other.mp4")]
    assert output_names(videos) == ["clip-mp4", "clip-avi", "other"]
    assert output_names(videos[::-1]) == ["other", "clip-avi", "clip-mp4"]
    twins = [Path("a/clip.mp4"), Path("b/clip.mp4")]  # same name and suffix: the path's hash tells them apart
    names = output_names(twins)
    assert names[0] != names[1] and all(n.startswith("clip-mp4-") and len(n) == len("clip-mp4-") + 8 for n in names)
    assert output_names(twins[::-1]) == names[::-1]
    tricky = [Path("batch.json.mp4"), Path(".clip.mp4"), Path("Clip.MP4"), Path("clip.mov"), Path("clip-mov.gif")]
    names = output_names(tricky)
    assert names[0] == "batch.json-mp4"  # never the batch's own report
    assert names[1].startswith("clip-mp4-") and names[2].startswith("Clip-mp4-")  # case does not tell names apart
    assert names[3].startswith("clip-mov-") and names[4].startswith("clip-mov-gif-")
    assert len({n.casefold() for n in names}) == len(names)


def _batch_statuses(out: Path) -> dict[str, tuple[str, str]]:
    report = json.loads((out / "batch.json").read_text())
    return {Path(v["video"]).name: (v["status"], v["note"]) for v in report["videos"]}


def _made_from(folder: Path) -> str:
    return json.loads((folder / "result.json").read_text())["settings"]["source"]["path"]


def test_a_rerun_skips_only_what_the_same_video_made_with_the_same_settings(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in ("clip0", "clip1"):
        shutil.copy(work / "videos" / f"{name}.mp4", src / f"{name}.mp4")
    clip0, clip1 = str(src / "clip0.mp4"), str(src / "clip1.mp4")
    out = tmp_path / "out"

    def batch(*args: str) -> dict[str, tuple[str, str]]:
        assert _generate(*args, "-o", str(out), "--model", str(work / "model"), *FAST, monkeypatch=monkeypatch) == 0
        return _batch_statuses(out)

    assert batch(clip0, clip1) == {"clip0.mp4": ("done", ""), "clip1.mp4": ("done", "")}
    assert batch(clip1, clip0) == {"clip1.mp4": ("skipped", ""), "clip0.mp4": ("skipped", "")}  # order is no key
    assert _made_from(out / "clip0") == str(Path(clip0).resolve()) and _made_from(out / "clip1").endswith("clip1.mp4")
    other = "replaced: it was made with other settings (seed)"
    assert batch(clip0, clip1, "--seed", "1") == {"clip0.mp4": ("done", other), "clip1.mp4": ("done", other)}
    assert json.loads((out / "clip0" / "result.json").read_text())["settings"]["seed"] == 1
    shutil.copy(work / "videos" / "clip2.mp4", src / "clip1.mp4")  # the same name, another video
    changed = batch(clip0, clip1, "--seed", "1")
    assert changed == {"clip0.mp4": ("skipped", ""), "clip1.mp4": ("done", "replaced: the video changed since")}
    shutil.copy(work / "videos" / "clip0.mp4", src / "clip0.avi")  # a second video named clip0: both get suffixes
    assert batch(clip0, str(src / "clip0.avi"), "--seed", "1") == {"clip0.mp4": ("done", ""), "clip0.avi": ("done", "")}
    assert _made_from(out / "clip0-mp4").endswith("clip0.mp4") and _made_from(out / "clip0-avi").endswith("clip0.avi")


def test_brackets_and_the_reports_name_in_a_batch(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import helix4d.cli.run as run

    src = tmp_path / "in[bold]b[/bold][/x]"  # rich would drop the first tags and raise on the last
    src.mkdir(parents=True)
    shutil.copy(work / "videos" / "clip0.mp4", src / "batch.json.mp4")
    shutil.copy(work / "videos" / "clip1.mp4", src / "clip.mp4")
    out = tmp_path / "out"
    monkeypatch.setattr(run.console, "width", 1000)  # the summary table on one line a row
    code = _generate(str(src), "-o", str(out), "--model", str(work / "model"), *FAST, monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err, err
    assert sorted(p.name for p in out.iterdir()) == [BATCH_LOCK, "batch.json", "batch.json-mp4", "clip"]
    assert set(_batch_statuses(out).values()) == {("done", "")}
    assert _made_from(out / "batch.json-mp4").endswith("batch.json.mp4")
    assert f"{src / 'batch.json.mp4'}" in err and f"{src / 'clip.mp4'}" in err  # the table's rows, literally


def test_a_second_batch_into_the_same_folder_is_refused(
    work: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import helix4d.cli.run as run

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(  # another process runs a batch into `out`: it holds the batch lock
        [
            sys.executable,
            "-c",
            "import sys\nfrom pathlib import Path\nfrom helix4d.pipeline.batch import batch_lock\n"
            f"with batch_lock(Path({str(out)!r})):\n    print('held', flush=True)\n    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(run, "load_model", lambda *args: pytest.fail("the model was loaded"))
        videos = [str(work / "videos" / f"clip{i}.mp4") for i in range(2)]
        capsys.readouterr()
        assert _generate(*videos, "-o", str(out), "--model", str(work / "model"), *FAST, monkeypatch=monkeypatch) == 2
    finally:
        holder.communicate("")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"another batch is writing into {out} now" in lines[0]
    assert [p.name for p in out.iterdir()] == [BATCH_LOCK]


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
    assert sorted(p.name for p in out.iterdir()) == [BATCH_LOCK, "batch.json", "clip0", "clip1", "clip2"]
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


@pytest.mark.slow
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
