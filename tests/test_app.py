"""The web app: its Generate handler called directly (files, errors), the CLI command, and a headless-Chromium run
of the real app (upload, Generate, 3D viewer, frame slider, download links; skipped without chromium/playwright)."""

from __future__ import annotations

import contextvars
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from helix4d.app import ModelHolder, find_examples, run_job
from helix4d.app.job import MainThreadJobs
from helix4d.cli import app as cli_app
from helix4d.errors import BackendUnavailableError, ConfigError, InputError
from helix4d.export import preview_frame_count
from helix4d.io.video import read_video, write_video

REPO = Path(__file__).resolve().parent.parent
FRAMES, FPS = 4, 4.0
COLOURS = "vertex colours (fastest)"


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """4 frames, 48 px: a red square moving down over white."""
    frames = np.full((FRAMES, 48, 48, 3), 255, np.uint8)
    for i in range(FRAMES):
        frames[i, 10 + i : 30 + i, 12:32] = (200, 40, 40)
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames, fps=FPS)


@pytest.fixture(scope="module")
def ui(tiny_model, tmp_path_factory):
    """One app for the handler tests (the model loads once, on the first Generate)."""
    gradio_ui = pytest.importorskip("helix4d.app.ui", reason="gradio is not installed (pip install 'helix4d[app]')")
    app = gradio_ui.Helix4DApp(tiny_model, device="cpu", examples=[], workdir=tmp_path_factory.mktemp("runs"))
    yield app
    app.close()


def test_generate_returns_every_file(ui, video) -> None:
    assert not ui.model.loaded
    frames, slider, frame_glb, animated, rigged, preview, downloads, status = ui.generate(
        str(video), 16, 1, 0, "temporal", COLOURS
    )
    assert ui.model.loaded
    assert [Path(p).name for p in frames] == [f"frame_{k:04d}.glb" for k in range(FRAMES)]
    for path in frames:
        mesh = trimesh.load(path, force="mesh")
        assert len(mesh.faces) > 0 and _base_colour_texture(mesh) is None  # vertex colours, nothing baked
    assert frame_glb == frames[0]
    assert slider.maximum == FRAMES - 1 and slider.interactive
    assert Path(animated).read_bytes()[:4] == b"glTF" and Path(rigged).read_bytes()[:4] == b"glTF"
    assert [Path(p).name for p in downloads] == [
        "frames.zip",
        "animated.glb",
        "rigged.glb",
        "asset.usdz",
        "preview.mp4",
    ]
    with zipfile.ZipFile(downloads[0]) as archive:
        assert sorted(archive.namelist()) == [Path(p).name for p in frames]
    with zipfile.ZipFile(downloads[3]) as usdz:  # a USDZ is an uncompressed zip around the .usdc
        assert any(name.endswith(".usdc") for name in usdz.namelist())
    assert read_video(preview).num_frames == preview_frame_count(FRAMES, FPS)
    assert status.startswith(f"{FRAMES} frames at 4 fps") and "not trained" in status
    assert ui.show_frame(2, frames) == frames[2]
    assert ui.show_frame(99, frames) == frames[-1]
    assert ui.show_frame(0, []) is None


def _base_colour_texture(mesh: trimesh.Trimesh):
    return getattr(getattr(mesh.visual, "material", None), "baseColorTexture", None)


def test_helix4d_errors_become_gr_errors(ui, tmp_path) -> None:
    import gradio as gr

    before = set(ui.workdir.iterdir())
    with pytest.raises(gr.Error, match="upload one or pick an example"):
        ui.generate(None, 4, 1, 0, "temporal", COLOURS)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(gr.Error) as info:
        ui.generate(str(broken), 4, 1, 0, "temporal", COLOURS)
    assert "broken.mp4" in str(info.value) and "Traceback" not in str(info.value)
    assert set(ui.workdir.iterdir()) == before  # a failed run leaves no folder behind


def test_layout_has_viewers_and_examples(tiny_model, video, tmp_path) -> None:
    gradio_ui = pytest.importorskip("helix4d.app.ui", reason="gradio is not installed")
    app = gradio_ui.Helix4DApp(tiny_model, device="cpu", examples=[video], workdir=tmp_path)
    try:
        config = app.build().config
    finally:
        app.close()
    elem_ids = {c["props"].get("elem_id") for c in config["components"]}
    assert {"input-video", "generate", "frame-viewer", "frame-slider", "animated-viewer", "rigged-viewer"} <= elem_ids
    assert "downloads" in elem_ids
    assert {"background", "stabilise"} <= elem_ids  # the matte's settings
    assert any(c["type"] == "dataset" for c in config["components"])  # the examples table
    assert "model's default (12)" in str(config)  # the steps hint reads the model folder


def test_run_job_bakes_textures(tiny_model, video, tmp_path) -> None:
    model = ModelHolder(tiny_model, device="cpu")
    result = run_job(model, video, tmp_path / "run", frames=2, steps=1, mode="per-frame", texture_size=64)
    assert len(result.frames) == 2 and all(p.is_file() for p in result.downloads)
    mesh = trimesh.load(result.frames[0], force="mesh")
    assert _base_colour_texture(mesh).size == (64, 64)


def test_run_job_uses_the_chosen_matte(tiny_model, video, tmp_path) -> None:
    model = ModelHolder(tiny_model, device="cpu")
    run_job(model, video, tmp_path / "run", frames=2, steps=1, texture_size=0, matting="border", stabilise=False)
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["matte"]["method"] == "border" and result["matte"]["background_colour"] == [255, 255, 255]
    assert result["settings"]["matting"] == "border" and result["settings"]["stabilise"] is False
    with pytest.raises(InputError, match="Background must be one of"):
        run_job(model, video, tmp_path / "bad", frames=2, steps=1, matting="magic")
    assert not (tmp_path / "bad").exists()


def test_the_app_and_the_cli_record_the_same_settings(tiny_model, video, tmp_path) -> None:
    """One generation job: the same options through the app and through `helix4d generate` give result.json files
    with the same settings (the CLI's `--device cpu` resolved as the app's)."""
    run_job(ModelHolder(tiny_model, device="cpu"), video, tmp_path / "app", frames=2, steps=1, texture_size=0)
    formats = "glb,animated,rig,usdz,preview"
    args = ["generate", str(video), "-o", str(tmp_path / "cli"), "--model", str(tiny_model), "--frames", "2"]
    args += ["--steps", "1", "--texture-size", "0", "--formats", formats, "--device", "cpu"]
    assert CliRunner().invoke(cli_app, args).exit_code == 0
    app, cli = (json.loads((tmp_path / name / "result.json").read_text())["settings"] for name in ("app", "cli"))
    assert app == cli
    assert app["model"] == str(tiny_model) and app["source"]["path"] == str(video.resolve())


def test_model_holder_checks_the_folder_and_loads_once(tiny_model, tmp_path, monkeypatch) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        ModelHolder(tmp_path / "missing")
    monkeypatch.setattr("helix4d.app.job.DEMO_MODEL", tmp_path / "no-demo")
    with pytest.raises(ConfigError, match="pass --model"):
        ModelHolder(None)
    holder = ModelHolder(tiny_model, device="cpu")
    assert not holder.loaded and holder.default_steps() == "12"
    assert holder.get() is holder.get()


def test_main_thread_jobs_run_on_the_serving_thread() -> None:
    jobs, seen = MainThreadJobs(), {}
    tag: contextvars.ContextVar[str] = contextvars.ContextVar("tag")

    def client() -> None:
        tag.set("from the client")
        seen["thread"] = jobs.call(threading.get_ident)
        seen["context"] = jobs.call(tag.get)
        try:
            jobs.call(lambda: 1 / 0)
        except ZeroDivisionError:
            seen["error"] = True
        try:
            jobs.call(_interrupt)  # stops `serve`, as Ctrl+C would
        except KeyboardInterrupt:
            seen["stopped"] = True

    thread = threading.Thread(target=client)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        jobs.serve(poll_s=0.05)
    thread.join()
    assert seen == {"thread": threading.get_ident(), "context": "from the client", "error": True, "stopped": True}


def _interrupt() -> None:
    raise KeyboardInterrupt


def test_find_examples(tmp_path) -> None:
    empty, shipped = tmp_path / "empty", tmp_path / "shipped"
    empty.mkdir()
    shipped.mkdir()
    for name in ("b.mp4", "a.mp4", "notes.txt"):
        (shipped / name).write_bytes(b"")
    assert find_examples((tmp_path / "absent", empty)) == []
    assert find_examples((empty, shipped)) == [shipped / "a.mp4", shipped / "b.mp4"]


def test_ui_without_gradio_names_the_extra(monkeypatch) -> None:
    import helix4d.app

    monkeypatch.setitem(sys.modules, "gradio", None)  # `import gradio` now fails as if it were not installed
    monkeypatch.delitem(sys.modules, "helix4d.app.ui", raising=False)
    monkeypatch.delattr(helix4d.app, "ui", raising=False)
    with pytest.raises(BackendUnavailableError, match=r"helix4d\[app\]"):
        helix4d.app.launch  # noqa: B018


def test_cli_app_command(tiny_model, tmp_path) -> None:
    runner = CliRunner()
    help_text = runner.invoke(cli_app, ["app", "--help"]).output
    for option in ("--model", "--host", "--port", "--share", "--no-share", "--device"):
        assert option in help_text
    pytest.importorskip("gradio", reason="gradio is not installed")
    result = runner.invoke(cli_app, ["app", "--model", str(tmp_path / "missing")])
    assert isinstance(result.exception, ConfigError)  # fails before serving anything
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = runner.invoke(cli_app, ["app", "--model", str(tiny_model), "--port", port])
    assert isinstance(result.exception, InputError) and "--port" in str(result.exception)


# ---------------------------------------------------------------------------------------------- browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, process: subprocess.Popen, timeout_s: float = 40.0) -> None:
    for _ in range(int(timeout_s * 4)):
        if process.poll() is not None:
            raise RuntimeError(f"`helix4d app` exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.25)
    raise TimeoutError(f"`helix4d app` did not answer at {url} within {timeout_s} s")


@pytest.mark.slow
def test_app_in_headless_chromium(tiny_model, video, tmp_path) -> None:
    """`helix4d app` served on localhost, driven like a user; screenshot in test-artifacts/app.png."""
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
    pytest.importorskip("gradio", reason="gradio is not installed: pip install 'helix4d[app]'")
    sys.path.insert(0, str(Path(__file__).parent / "browser"))
    try:
        from app_flow import EXPECTED_DOWNLOADS, drive_app, find_chromium
    finally:
        sys.path.pop(0)
    if find_chromium() is None:
        pytest.skip("no system chromium: apt-get install -y chromium (Playwright's own browsers are not used)")

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "app.log"
    command = [
        sys.executable,
        "-m",
        "helix4d",
        "app",
        "--model",
        str(tiny_model),
        "--port",
        str(port),
        "--device",
        "cpu",
    ]
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        _wait_for_server(url, process)
        result = drive_app(url, video, REPO / "test-artifacts" / "app.png", steps=1)
    except Exception as exc:
        raise AssertionError(f"{exc}\n--- app log ---\n{log.read_text()[-3000:]}") from exc
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl+C: the app closes its server and deletes its files
        try:
            process.wait(timeout=60)  # gradio's close can take tens of seconds on a loaded 2-core machine
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert result.viewer_visible
    assert result.canvas_colours > 1  # the viewer drew the mesh, not just a blank canvas
    assert result.rigged_colours > 1  # the rigged viewer drew rigged.glb
    assert result.downloads == {name: 200 for name in EXPECTED_DOWNLOADS}
    assert result.status.startswith(f"{FRAMES} frames")
    if process.returncode == -signal.SIGKILL:  # known: in full-suite runs gradio's close sometimes hangs past 60 s
        warnings.warn("the app did not close within 60 s of Ctrl+C and was killed (gradio shutdown hang)")
    else:
        assert process.returncode == 0, log.read_text()[-3000:]
