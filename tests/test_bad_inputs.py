"""A careless user's inputs against the real CLI (`helix4d.cli.main`, in-process; a few through a subprocess).

Every bad input must end in exit code 2, one line on stderr and no traceback, before any compute, and nothing
outside a fresh output folder may be written or deleted: each test snapshots the folders around it (names, kinds,
file sizes and mtimes) before and after. Models are tiny random ones (never the demo model); generate calls get
one step, vertex colours and GLB only, so a case that wrongly got through would still be quick.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helix4d.cli import main
from helix4d.io.files import OUTPUT_MARKER, atomic_dir
from helix4d.io.partial_folders import remove_stale_partials
from helix4d.io.video import write_video
from helix4d.pipeline.config import COMPONENTS, preset
from helix4d.pipeline.folder import build_component, write_model_folder

FAST = {"--steps": "1", "--texture-size": "0", "--formats": "glb"}  # generate options unless a case sets its own


# ---------------------------------------------------------------------------------------------- fixtures


def _model(folder: Path, poison: str | None = None, value: float = float("nan")) -> Path:
    """A tiny random model folder, marked trained (so no warning line joins the error); `poison`: a component
    whose weights all become `value`."""
    spec = preset("tiny")
    torch.manual_seed(0)
    modules = {name: build_component(name, spec.components[name]) for name in COMPONENTS}
    if poison:
        with torch.no_grad():
            for p in modules[poison].parameters():
                p.fill_(value)
    write_model_folder(folder, dataclasses.replace(spec.pipeline, trained=True), modules, spec.components)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    tiny = _model(root / "tiny")
    corrupt = root / "corrupt"
    shutil.copytree(tiny, corrupt)
    weights = corrupt / "ss_flow" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    missing = root / "missing"
    shutil.copytree(tiny, missing)
    shutil.rmtree(missing / "material_vae")
    garbage = root / "garbage"
    garbage.mkdir()
    (garbage / "pipeline.json").write_text("{not json")
    return {
        "model": tiny,
        "nan": _model(root / "nan", poison="ss_flow"),
        "corrupt": corrupt,
        "empty": _model(root / "empty", poison="ss_vae", value=0.0),  # occupancy logits 0: no voxel anywhere
        "missing": missing,
        "garbage": garbage,
    }


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    frames = np.full((3, 48, 48, 3), 255, np.uint8)
    for i in range(3):
        frames[i, 10 + i : 30 + i, 12:32] = (200, 40, 40)
    return write_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames, fps=6).read_bytes()


def _png(path: Path, width: int, height: int, box: bool = True) -> None:
    image = np.full((height, width, 3), 255, np.uint8)
    if box:
        image[height // 4 : height // 2, width // 4 : width // 2] = (30, 90, 200)
    Image.fromarray(image).save(path)


@pytest.fixture
def sandbox(tmp_path: Path, clip_bytes: bytes, monkeypatch) -> Path:
    """The current folder of a user who has a video, frames, notes, a folder, links, and broken files in it."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "clip.mp4").write_bytes(clip_bytes)
    (work / "truncated.mp4").write_bytes(clip_bytes[: len(clip_bytes) // 2])
    (work / "empty.mp4").write_bytes(b"")
    (work / "notes.mp4").write_text("this is a text file, not a video\n" * 10)
    (work / "random.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (work / "keep.txt").write_text("a user's file\n")
    (work / "[red]").write_text("a file with brackets in its name\n")
    for name, sizes in (("frames", [(48, 48)] * 2), ("mixed", [(32, 32), (32, 40)])):
        (work / name).mkdir()
        for i, (w, h) in enumerate(sizes):
            _png(work / name / f"{i:04d}.png", w, h)
    (work / "white").mkdir()
    for i in range(2):
        _png(work / "white" / f"{i:04d}.png", 48, 48, box=False)
    _png(work / "one.png", 1, 1, box=False)
    for name, count, (w, h) in (("masks2", 2, (48, 48)), ("wide", 3, (48, 30))):  # clip.mp4 is 3 frames of 48×48
        (work / name).mkdir()
        for i in range(count):
            _png(work / name / f"{i:04d}.png", w, h)
    (work / "gap").mkdir()  # 3 masks for the 3 frames, but 0002 was deleted: every later mask would shift
    for i in (0, 1, 3):
        _png(work / "gap" / f"{i:04d}.png", 48, 48)
    (work / "both").mkdir()  # videos and an image: neither one clip's frames nor a set of videos
    (work / "both" / "a.mp4").write_bytes(clip_bytes)
    _png(work / "both" / "poster.png", 48, 48)
    (work / "broken.onnx").write_bytes(b"\x08\x07not a protobuf")
    (work / "sub").mkdir()
    (work / "sub" / "clip.mp4").write_bytes(clip_bytes)
    (work / "sub" / "notes.txt").write_text("keep me\n")
    (work / "notes").mkdir()
    (work / "notes" / "todo.txt").write_text("not a frame, not a video\n")
    (work / "target").mkdir()
    (work / "target" / "precious.txt").write_text("behind a link\n")
    (work / "link").symlink_to("target")
    (work / "dangling").symlink_to("nowhere")
    (work / "print.json").write_text('{"task": "builtins:print", "out": "run"}')
    (work / "vae.json").write_text('{"task": "ss_vae", "out": "run", "device": "cpu"}')
    monkeypatch.chdir(work)
    return work


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every entry under `roots`, links not followed: kind, and size and mtime for files and links. (A folder's
    own mtime moves when a run probes it for writing; its entries are what matters, and they are all listed.)"""
    found = {}
    for root in roots:
        for folder, dirs, files in os.walk(root):
            for name in dirs + files:
                st = (Path(folder) / name).lstat()
                kind = stat.S_IFMT(st.st_mode)
                path = os.path.join(folder, name)
                found[path] = (kind,) if stat.S_ISDIR(kind) else (kind, st.st_size, st.st_mtime_ns)
    return found


@dataclasses.dataclass
class Run:
    code: int | str
    out: str
    err: str

    def refused(self, *says: str) -> str:
        """Assert exit 2 and one line on stderr, an error holding every `says`; return that line."""
        lines = self.err.strip().splitlines()
        assert self.code == 2 and len(lines) == 1, f"exit {self.code}, stderr:\n{self.err}"
        assert lines[0].startswith("error: ") and "Traceback" not in self.err
        for text in says:
            assert text in lines[0], lines[0]
        return lines[0]


@pytest.fixture
def cli(monkeypatch, capsys, models, sandbox):
    """Run `helix4d ARGS` in-process as the console script does; '{model}' etc. in ARGS name the fixtures."""
    names = {k: str(v) for k, v in models.items()} | {
        "cwd": str(sandbox),
        "parent": str(sandbox.parent),
        "home": str(Path.home()),
    }

    def run(*args: str) -> Run:
        args = [a.format(**names) for a in args]
        if args[0] == "generate":
            args += ["--model", names["model"]] * ("--model" not in args)
            args += [x for flag, value in FAST.items() if flag not in args for x in (flag, value)]
        monkeypatch.setattr(sys, "argv", ["helix4d", *args])
        capsys.readouterr()
        try:
            main()
            code: int | str = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception as exc:  # an escaping exception is what a user would see as a traceback
            code = f"traceback: {type(exc).__name__}: {exc}"
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def untouched(sandbox, models):
    """Fails the test if anything around the sandbox or in a model folder changed."""
    roots = (sandbox.parent, models["model"].parent)
    before = snapshot(*roots)
    yield
    assert snapshot(*roots) == before


# ---------------------------------------------------------------------------------------------- refused up front

REFUSED = [
    # the output folder (every command that writes one)
    (["generate", "clip.mp4", "-o", ".", "--overwrite"], ["'.'"]),
    (["generate", "clip.mp4", "-o", "..", "--overwrite"], ["'..'"]),
    (["generate", "clip.mp4", "-o", "frames/..", "--overwrite"], ["'frames/..'"]),
    (["generate", "clip.mp4", "-o", "", "--overwrite"], ["not allowed"]),
    (["generate", "clip.mp4", "-o", "{cwd}", "--overwrite"], ["current folder"]),
    (["generate", "clip.mp4", "-o", "{parent}", "--overwrite"], ["current folder or a folder above it"]),
    (["generate", "clip.mp4", "-o", "{home}", "--overwrite"], ["home folder"]),
    (["generate", "frames", "-o", "frames", "--overwrite"], ["holds the input frames"]),
    (["generate", "frames/", "-o", "./frames/", "--overwrite"], ["holds the input"]),
    (["generate", "sub/clip.mp4", "-o", "sub", "--overwrite"], ["holds the input sub/clip.mp4"]),
    (["generate", "clip.mp4", "-o", "{model}", "--overwrite"], ["holds the input"]),
    (["generate", "clip.mp4", "-o", "/proc/helix4d-out"], ["cannot write output folder /proc/helix4d-out"]),
    (["generate", "clip.mp4", "-o", "/proc/self/helix4d/out"], ["cannot"]),
    (["generate", "clip.mp4", "-o", "/proc", "--overwrite"], ["system folder"]),
    (["generate", "clip.mp4", "-o", "/etc", "--overwrite"], ["system folder"]),
    (["generate", "clip.mp4", "-o", "/usr/share", "--overwrite"], ["not written by helix4d"]),
    (["generate", "clip.mp4", "-o", sys.prefix, "--overwrite"], ["Python installation"]),
    (["generate", "clip.mp4", "-o", "a" * 240], ["has a name of 240 bytes", "name a shorter path"]),
    (["generate", "clip.mp4", "-o", "/".join(["b" * 200] * 21)], ["too long for this file system"]),
    (["matte", "clip.mp4", "-o", "a" * 250], ["has a name of 250 bytes"]),
    (["eval", "budget", "sub", "--json", "r" * 250 + ".json"], ["report path", "has a name of 255 bytes"]),
    (["generate", "clip.mp4", "-o", "keep.txt/out"], ["keep.txt is not a folder"]),
    (["generate", "clip.mp4", "-o", "keep.txt", "--overwrite"], ["not a folder"]),
    (["generate", "clip.mp4", "-o", "link", "--overwrite"], ["symbolic link"]),
    (["generate", "clip.mp4", "-o", "dangling", "--overwrite"], ["symbolic link"]),
    (["generate", "clip.mp4", "-o", "sub"], ["not empty", "--overwrite"]),
    (["model", "init", "-o", "."], ["'.'"]),
    (["model", "init", "-o", "sub"], ["not empty"]),
    (["model", "init", "-o", "link"], ["symbolic link"]),
    (["model", "init", "-o", "{cwd}"], ["current folder"]),
    (["convert", "trellis2", "sub", "-o", "."], ["'.'"]),
    (["convert", "trellis2", "sub", "-o", "sub"], ["holds the input"]),
    (["data", "synth", "-n", "1", "-o", "."], ["'.'"]),
    (["data", "synth", "-n", "1", "-o", "sub"], ["not empty"]),
    (["data", "synth", "-n", "1", "-o", "{parent}"], ["current folder"]),
    (["data", "build", "clip.mp4", "-o", "."], ["'.'"]),
    (["model", "encode-latents", "--model", "{model}", "--data", "sub", "-o", "."], ["'.'"]),
    (["model", "encode-latents", "--model", "{model}", "--data", "sub", "-o", "sub"], ["holds the input"]),
    (["train", "vae.json", "--out", "."], ["'.'"]),
    (["train", "vae.json", "--out", "sub"], ["not empty"]),
    (["train", "vae.json", "--out", "{cwd}"], ["current folder"]),
    # settings, named as typed
    (["generate", "clip.mp4", "-o", "out", "--cfg", "nan"], ["--cfg must be a finite number"]),
    (["generate", "clip.mp4", "-o", "out", "--cfg", "inf"], ["--cfg must be a finite number"]),
    (["generate", "clip.mp4", "-o", "out", "--cfg", "-1"], ["--cfg must be >= 0"]),
    (["generate", "clip.mp4", "-o", "out", "--frames", "0"], ["--frames must be >= 1"]),
    (["generate", "clip.mp4", "-o", "out", "--fps", "0"], ["--fps must be > 0"]),
    (["generate", "clip.mp4", "-o", "out", "--fps", "nan"], ["--fps must be a finite number"]),
    (["generate", "clip.mp4", "-o", "out", "--start", "-1"], ["--start must be >= 0"]),
    (["generate", "clip.mp4", "-o", "out", "--end", "inf"], ["--end must be a finite number"]),
    (["generate", "clip.mp4", "-o", "out", "--start", "2", "--end", "1"], ["--end (1) is before --start (2)"]),
    (["generate", "clip.mp4", "-o", "out", "--steps", "0"], ["--steps must be >= 1"]),
    (["generate", "clip.mp4", "-o", "out", "--window", "-1"], ["--window must be >= 0"]),
    (["generate", "clip.mp4", "-o", "out", "--texture-size", "-8"], ["--texture-size must be 0, or >= 8"]),
    (["generate", "clip.mp4", "-o", "out", "--texture-size", "1"], ["--texture-size must be 0, or >= 8", "got 1"]),
    (["generate", "clip.mp4", "-o", "out", "--texture-size", "7"], ["--texture-size must be 0, or >= 8", "got 7"]),
    (
        ["generate", "clip.mp4", "-o", "out", "--texture-size", "100000"],
        ["--texture-size must be 0, or >= 8 and <= 8192"],
    ),
    (["generate", "clip.mp4", "-o", "out", "--steps", "99999999999999999999"], ["--steps must be >= 1 and <= 10000"]),
    (["generate", "clip.mp4", "-o", "out", "--seed", "99999999999999999999"], ["--seed must fit in 64 bits"]),
    (["generate", "clip.mp4", "-o", "out", "--start", "1e300"], ["--start must be >= 0 and <= 1e+07"]),
    (["generate", "clip.mp4", "-o", "out", "--chunk", "1"], ["--chunk must be 0, or >= 2, got 1"]),
    (["app", "--port", "99999"], ["--port must be a TCP port, 1 to 65535, got 99999"]),
    (["app", "--port", "0"], ["--port must be a TCP port"]),
    (["generate", "clip.mp4", "-o", "out", "--max-faces", "0"], ["--max-faces must be >= 1"]),
    (["generate", "clip.mp4", "-o", "out", "--mode", "sideways"], ["--mode must be one of temporal, per-frame"]),
    (["generate", "clip.mp4", "-o", "out", "--formats", "obj"], ["--formats"]),
    (["generate", "clip.mp4", "-o", "out", "--device", "gpu"], ["--device must be"]),
    # user text printed literally
    (["generate", "in/x[/foo].mp4", "-o", "out"], ["in/x[/foo].mp4"]),
    (["generate", "clip[bold].mp4", "-o", "out/res[/x]"], ["clip[bold].mp4"]),
    (["generate", "clip.mp4", "-o", "[red]", "--overwrite"], ["[red] exists and is not a folder"]),
    # inputs
    (["generate", "nothing.mp4", "-o", "out"], ["input not found"]),
    (["generate", "empty.mp4", "-o", "out"], ["empty"]),
    (["generate", "notes.mp4", "-o", "out"], ["not a readable video"]),
    (["generate", "random.mp4", "-o", "out"], ["not a readable video"]),
    (["generate", "truncated.mp4", "-o", "out"], ["truncated.mp4"]),
    (["generate", "one.png", "-o", "out"], ["no foreground object"]),
    (["generate", "white", "-o", "out"], ["no foreground object"]),
    (["generate", "notes", "-o", "out"], ["notes holds neither frames", "nor videos"]),  # (a folder of videos: a batch)
    (["generate", "both", "-o", "out"], ["both holds both videos (a.mp4) and images (poster.png)"]),
    (["generate", "clip.mp4", "both", "-o", "out"], ["both holds both videos"]),
    (["generate", "mixed", "-o", "out"], ["differ in size", "0000.png is 32×32", "0001.png is 32×40"]),
    # model folders
    (["generate", "clip.mp4", "-o", "out", "--model", "nowhere"], ["does not exist"]),
    (["generate", "clip.mp4", "-o", "out", "--model", "sub"], ["no pipeline.json"]),
    (["generate", "clip.mp4", "-o", "out", "--model", "keep.txt"], ["does not exist"]),
    (["generate", "clip.mp4", "-o", "out", "--model", "{garbage}"], ["not valid JSON"]),
    (["generate", "clip.mp4", "-o", "out", "--model", "{corrupt}"], ["not a readable safetensors file"]),
    (["generate", "clip.mp4", "-o", "out", "--model", "{missing}"], ["material_vae"]),
    # training configs
    (["train", "print.json"], ["unknown task 'builtins:print'"]),
    # matting: masks and segmentation models (generate and matte)
    (["generate", "clip.mp4", "-o", "out", "--mask", "nowhere"], ["mask not found: nowhere"]),
    (["generate", "clip.mp4", "-o", "out", "--mask", "masks2"], ["mask masks2 has 2 frame(s) but the clip has 3"]),
    (["generate", "clip.mp4", "-o", "out", "--mask", "wide"], ["mask wide is 48×30 but the video's frames are 48×48"]),
    (["generate", "clip.mp4", "-o", "out", "--matting", "sideways"], ["--matting must be one of auto, alpha"]),
    (["generate", "clip.mp4", "-o", "out", "--matting", "alpha"], ["clip.mp4 has no alpha channel"]),
    (["generate", "clip.mp4", "-o", "out", "--matting", "mask"], ["--matting mask needs --mask PATH"]),
    (
        ["generate", "clip.mp4", "-o", "out", "--matting", "border", "--mask", "masks2"],
        ["--mask is used by --matting auto or mask, not border"],
    ),
    (["generate", "clip.mp4", "-o", "out", "--matting-model", "nowhere"], ["model folder nowhere does not exist"]),
    (["generate", "clip.mp4", "-o", "out", "--matting-model", "sub"], ["sub has no config.json"]),
    (
        ["generate", "clip.mp4", "-o", "out", "--matting-model", "broken.onnx"],
        ["cannot read the ONNX model broken.onnx"],
    ),
    (["generate", "clip.mp4", "-o", "masks2", "--mask", "masks2", "--overwrite"], ["holds the input masks2"]),
    (["generate", "clip.mp4", "-o", "out", "--mask", "gap"], ["gap in its numbering: 0001.png is followed by 0003"]),
    (["matte", "clip.mp4", "-o", "out", "--mask", "gap"], ["gap in its numbering"]),
    (["matte", "white", "-o", "out"], ["no foreground object found in any frame of white"]),  # as generate says
    (["matte", "one.png", "-o", "out"], ["no foreground object found in any frame of one.png"]),
    (["matte", "clip.mp4", "-o", "."], ["'.'"]),
    (["matte", "clip.mp4", "-o", "sub"], ["not empty", "--overwrite"]),
    (["matte", "clip.mp4", "-o", "{cwd}", "--overwrite"], ["current folder"]),
    (["matte", "nothing.mp4", "-o", "out"], ["input not found"]),
    (["matte", "clip.mp4", "-o", "out", "--frames", "0"], ["--frames must be >= 1"]),
    (["matte", "clip.mp4", "-o", "out", "--mask", "masks2"], ["has 2 frame(s) but the clip has 3"]),
    (["matte", "clip.mp4", "-o", "out", "--matting-model", "broken.onnx"], ["cannot read the ONNX model"]),
]


@pytest.mark.parametrize(("args", "says"), REFUSED, ids=[" ".join(a) for a, _ in REFUSED])
def test_refused_in_one_line_and_nothing_touched(cli, untouched, args, says) -> None:
    result = cli(*args)
    result.refused(*says)
    assert result.out == ""  # `builtins:print` was not called, nothing was reported as written
    if "--frames" in args:
        assert "max_frames" not in result.err  # the flag the user typed, not the keyword behind it


def test_install_hints_keep_their_brackets(cli, untouched, monkeypatch) -> None:
    import helix4d.app

    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` fails as when the extra is missing
    monkeypatch.delitem(sys.modules, "helix4d.app.ui", raising=False)
    monkeypatch.delattr(helix4d.app, "ui", raising=False)
    cli("app", "--model", "{model}").refused("pip install 'helix4d[app]'")
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *args: None if name == "bpy" else find_spec(name, *args)
    )
    cli("data", "build", "clip.mp4", "-o", "out").refused("pip install 'helix4d[blender]'")


def test_a_read_only_disk_is_refused_before_compute(cli, untouched, monkeypatch) -> None:
    import helix4d.io.output_policy as output_policy

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(output_policy.tempfile, "mkdtemp", read_only)
    cli("generate", "clip.mp4", "-o", "out").refused("cannot write output folder out (Read-only file system")


def test_too_little_free_space_is_refused_before_compute(cli, untouched, monkeypatch) -> None:
    import helix4d.cli.run as run
    import helix4d.io.disk_limits as disk_limits

    monkeypatch.setattr(
        disk_limits.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000)
    )
    monkeypatch.setattr(run, "load_model", lambda *args: pytest.fail("the model was loaded"))
    cli("generate", "clip.mp4", "-o", "out", "--texture-size", "512").refused(
        "not enough free disk space for", "it needs about 1.6 MB", "has 0.0 MB free"
    )


@pytest.mark.parametrize("command", ["generate", "matte"])
def test_a_disk_that_fills_up_while_writing_is_one_line_and_keeps_nothing(cli, untouched, monkeypatch, command) -> None:
    import helix4d.cli.run as run
    import helix4d.pipeline.output as output

    def fill_up(folder: Path) -> None:
        (folder / "frame_0000.glb").write_bytes(b"half a frame")  # what was written before the disk filled up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / "frame_0001.glb"))

    monkeypatch.setattr(output, "export_asset", lambda meshes, folder, **kw: fill_up(folder))
    monkeypatch.setattr(run, "write_masks", lambda alpha, folder: fill_up(folder))
    result = cli(command, "clip.mp4", "-o", "out")
    lines = result.err.strip().splitlines()  # generate: the progress bars of the stages that ran, then the error
    assert result.code == 2 and "Traceback" not in result.err
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    assert "the disk is full: writing out stopped (No space left on device)" in lines[-1]


@pytest.mark.parametrize(
    ("model", "says"),
    [("{nan}", "stage ss produced non-finite values"), ("{empty}", "stage ss produced no voxel in any frame")],
)
def test_a_stage_that_yields_nan_or_nothing_is_one_error_line(cli, untouched, model, says) -> None:
    result = cli("generate", "clip.mp4", "-o", "out", "--model", model)
    lines = result.err.strip().splitlines()  # the progress bars of the stages that ran, then the error
    assert result.code == 2 and "Traceback" not in result.err
    assert [line for line in lines if line.startswith("error:")] == lines[-1:]
    assert says in lines[-1]


# ---------------------------------------------------------------------------------------------- unusual, but fine


def _added(before: dict, after: dict) -> set[str]:
    assert set(before) <= set(after), f"removed: {set(before) - set(after)}"
    assert {k: after[k] for k in before} == before, "an existing entry changed"
    return set(after) - set(before)


def test_4k_single_image_and_bracketed_output_write_only_the_output(cli, sandbox) -> None:
    _png(sandbox / "big.png", 3840, 2160)
    before = snapshot(sandbox.parent)
    result = cli("generate", "big.png", "-o", "res[/x]")
    assert result.code == 0, result.err
    assert "wrote 1 frames to res[/x]" in result.err
    added = _added(before, snapshot(sandbox.parent))
    assert added and all(Path(p).is_relative_to(sandbox / "res[") for p in added)
    assert (sandbox / "res[" / "x]" / "result.json").is_file()


def test_overwrite_replaces_only_the_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "res"
    out.mkdir()
    (out / "old.txt").write_text("old")
    (tmp_path / "beside.txt").write_text("beside")
    with atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beside.txt", "res"]
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "new.txt"]


def test_stale_partials_of_a_killed_run_are_removed_and_only_those(cli, sandbox) -> None:
    killed = subprocess.run(  # a real SIGKILL in the middle of writing `res`
        [
            sys.executable,
            "-c",
            "import os, signal\nfrom helix4d.io.files import atomic_dir\n"
            "with atomic_dir('res') as tmp:\n    (tmp / 'frame.glb').write_bytes(b'half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n",
        ],
        cwd=sandbox,
    )
    assert killed.returncode == -signal.SIGKILL
    stale = [p for p in sandbox.iterdir() if p.name.startswith(".res.partial-")]
    assert len(stale) == 1 and (stale[0] / "frame.glb").is_file()
    (sandbox / ".res.partial-abcd1234").mkdir()
    decoys = [
        ".res.partial-abcd123",
        ".res.partial-abcd12345",
        ".other.partial-abcd1234",
        "res.partial-abcd1234",
        ".res.partial-ABCD1234",
    ]
    for name in decoys:
        (sandbox / name).mkdir()
        (sandbox / name / "keep").write_text("not ours")
    (sandbox / ".res.partial-link0000").symlink_to("target")
    before = snapshot(sandbox.parent)
    result = cli("model", "init", "-o", "res")
    assert result.code == 0, result.err
    after = snapshot(sandbox.parent)
    removed = {Path(p) for p in set(before) - set(after)}
    assert {p for p in removed if p.parent == sandbox} == {stale[0], sandbox / ".res.partial-abcd1234"}
    assert all(Path(p).is_relative_to(sandbox / "res") for p in set(after) - set(before))
    assert all((sandbox / name / "keep").is_file() for name in decoys)
    assert (sandbox / ".res.partial-link0000").is_symlink() and (sandbox / "target" / "precious.txt").is_file()


def test_a_partial_folder_in_use_is_never_taken(tmp_path: Path) -> None:
    with atomic_dir(tmp_path / "res") as tmp:
        assert remove_stale_partials(tmp_path / "res") == [] and tmp.is_dir()


# ---------------------------------------------------------------------------------------------- the real console script


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["generate", "clip.mp4", "-o", ".", "--overwrite"], "'.'"),
        (["generate", "clip.mp4", "-o", "link", "--overwrite"], "symbolic link"),
        (["generate", "in/x[/foo].mp4", "-o", "out/res[/x]", "--cfg", "nan"], "--cfg must be a finite number"),
    ],
    ids=["out-dot", "out-symlink", "cfg-nan"],
)
def test_console_script(sandbox, models, untouched, args, says) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "helix4d", *args, "--model", str(models["model"])],
        capture_output=True,
        text=True,
        cwd=sandbox,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and says in result.stderr
