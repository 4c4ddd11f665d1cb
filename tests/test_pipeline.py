"""The generation pipeline end to end with tiny random weights: determinism, the anchor, windows, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helix4d.cli import app
from helix4d.errors import ConfigError, Helix4DError, InputError
from helix4d.io.video import write_video
from helix4d.pipeline import SamplingOptions
from helix4d.pipeline.config import COMPONENTS, preset
from helix4d.pipeline.folder import build_component, load_component, write_model_folder
from helix4d.pipeline.helix4d import Helix4DPipeline

runner = CliRunner()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny model whose weights are all perturbed: a fresh DiT (adaLN-Zero) would ignore its inputs."""
    spec = preset("tiny")
    torch.manual_seed(0)
    modules = {name: build_component(name, spec.components[name]) for name in COMPONENTS}
    with torch.no_grad():
        for name in ("ss_flow", "geometry_flow", "material_flow"):
            for p in modules[name].parameters():
                p.add_(torch.randn_like(p) * 0.2)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    write_model_folder(folder, spec.pipeline, modules, spec.components)
    return folder


def test_model_init_writes_a_loadable_folder(tmp_path) -> None:
    result = runner.invoke(app, ["model", "init", "--preset", "tiny", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert Helix4DPipeline.from_pretrained(tmp_path / "m").config.preset == "tiny"
    bad = runner.invoke(app, ["model", "init", "--preset", "huge", "--out", str(tmp_path / "x")])
    assert isinstance(bad.exception, ConfigError)


@pytest.fixture(scope="module")
def pipe(model_dir) -> Helix4DPipeline:
    return Helix4DPipeline.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    frames = np.full((6, 48, 48, 3), 255, np.uint8)
    for i in range(6):
        frames[i, 10 + i : 30 + i, 12:32] = (200, 40, 40)
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", frames, fps=6)


def _same_ovoxels(a, b, atol: float = 0.0) -> bool:
    """Same voxels, and dual vertices / attributes equal up to atol (batched matmuls differ in the last bits)."""
    return len(a) == len(b) and all(
        np.array_equal(x.coords, y.coords)
        and np.allclose(x.dual, y.dual, atol=atol, rtol=0)
        and np.allclose(x.attrs, y.attrs, atol=atol, rtol=0)
        for x, y in zip(a, b)
    )


def test_video_to_six_meshes_deterministic(pipe, video) -> None:
    a = pipe(video, SamplingOptions(seed=3, steps=2))
    b = pipe(video, SamplingOptions(seed=3, steps=2))
    assert a.num_frames == 6 and len(a.ovoxels) == 6
    assert all(len(m.faces) > 0 for m in a.meshes)
    assert _same_ovoxels(a.ovoxels, b.ovoxels)
    c = pipe(video, SamplingOptions(seed=4, steps=2))
    assert not _same_ovoxels(a.ovoxels, c.ovoxels)


def test_frame_zero_is_the_static_result(pipe) -> None:
    images = np.random.default_rng(0).random((5, 4, 32, 32), dtype=np.float32)
    temporal = pipe.generate(images, SamplingOptions(seed=1, steps=2))
    static = pipe.generate(images[:1], SamplingOptions(seed=1, steps=2))
    assert _same_ovoxels(temporal.ovoxels[:1], static.ovoxels, atol=1e-5)


def test_window_at_least_frames_is_full_attention(pipe) -> None:
    images = np.random.default_rng(1).random((4, 4, 32, 32), dtype=np.float32)
    full = pipe.generate(images, SamplingOptions(seed=0, steps=2, window=4))
    wider = pipe.generate(images, SamplingOptions(seed=0, steps=2, window=100))
    narrow = pipe.generate(images, SamplingOptions(seed=0, steps=2, window=0))
    assert _same_ovoxels(full.ovoxels, wider.ovoxels)
    assert not _same_ovoxels(full.ovoxels[1:], narrow.ovoxels[1:])


def test_a_long_clip_is_chunked_each_chunk_anchored_on_the_last_frame_of_the_one_before(pipe) -> None:
    images = np.random.default_rng(2).random((9, 4, 32, 32), dtype=np.float32)
    sampling = SamplingOptions(seed=5, steps=2, chunk=4)
    chunked = pipe.generate(images, sampling)
    assert chunked.num_frames == 9 and chunked.metadata["chunks"] == [[0, 4], [3, 7], [6, 9]]
    first = pipe.generate(images[:4], sampling)  # the first chunk is a clip of its own
    assert _same_ovoxels(chunked.ovoxels[:4], first.ovoxels, atol=1e-5)
    whole = pipe.generate(images, dataclasses.replace(sampling, chunk=0))  # one anchor: frames see past frame 3
    assert _same_ovoxels(chunked.ovoxels[:1], whole.ovoxels[:1], atol=1e-5)
    assert not _same_ovoxels(chunked.ovoxels[4:], whole.ovoxels[4:], atol=1e-5)
    # later chunks continue from the earlier ones: frame 0 reaches frames 4..8 only through the anchors handed on
    moved = images.copy()
    moved[0] = np.random.default_rng(3).random((4, 32, 32), dtype=np.float32)
    other = pipe.generate(moved, sampling)
    assert all(not _same_ovoxels([a], [b], atol=1e-5) for a, b in zip(chunked.ovoxels[4:], other.ovoxels[4:]))


def test_per_frame_noise_belongs_to_the_frame_not_to_its_chunk(pipe) -> None:
    images = np.random.default_rng(4).random((7, 4, 32, 32), dtype=np.float32)
    per_frame = SamplingOptions(seed=2, steps=2, mode="per-frame")
    chunked = pipe.generate(images, dataclasses.replace(per_frame, chunk=3))
    whole = pipe.generate(images, dataclasses.replace(per_frame, chunk=0))
    assert _same_ovoxels(chunked.ovoxels, whole.ovoxels, atol=1e-5)


def test_a_chunk_of_one_frame_is_refused() -> None:
    with pytest.raises(InputError, match="--chunk must be 0"):
        SamplingOptions(chunk=1).checked({"chunk": "--chunk"})
    assert SamplingOptions(chunk=2.0).checked().chunk == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="offloading moves weights to a GPU")
def test_offloading_gives_the_same_result_and_leaves_weights_on_the_cpu(model_dir) -> None:
    images = np.random.default_rng(2).random((3, 4, 32, 32), dtype=np.float32)
    resident = Helix4DPipeline.from_pretrained(model_dir, device="cuda").generate(
        images, SamplingOptions(seed=0, steps=2)
    )
    offloaded = Helix4DPipeline.from_pretrained(model_dir, device="cuda", offload=True)
    result = offloaded.generate(images, SamplingOptions(seed=0, steps=2))
    assert _same_ovoxels(resident.ovoxels, result.ovoxels, atol=1e-5)
    assert all(p.device.type == "cpu" for m in offloaded.components.values() for p in m.parameters())


def test_offloading_on_the_cpu_is_a_no_op(model_dir) -> None:
    pipe = Helix4DPipeline.from_pretrained(model_dir, device="cpu", offload=True)
    assert not pipe.offload


def test_weights_round_trip_strictly(model_dir, tmp_path) -> None:
    from safetensors.torch import load_file

    module, config = load_component("ss_flow", model_dir / "ss_flow")
    assert config.depth == preset("tiny").components["ss_flow"].depth
    saved = load_file(str(model_dir / "ss_flow" / "model.safetensors"))
    assert all(torch.equal(saved[k], v) for k, v in module.state_dict().items())
    for name in COMPONENTS:
        load_component(name, model_dir / name)  # strict: raises on any missing/unexpected key
    with pytest.raises(ConfigError, match="pipeline.json"):
        Helix4DPipeline.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        Helix4DPipeline.from_pretrained(tmp_path / "nope")


def test_mis_shaped_weights_are_named(model_dir, tmp_path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    path = broken / "ss_flow" / "model.safetensors"
    state = load_file(str(path))
    state["input_layer.weight"] = torch.zeros(3, 3)
    del state["out_layer.bias"]
    save_file(state, str(path))
    with pytest.raises(ConfigError, match=r"input_layer\.weight.*|out_layer\.bias"):
        Helix4DPipeline.from_pretrained(broken)


def test_one_frame_video_works(pipe, tmp_path) -> None:
    one = write_video(
        tmp_path / "one.mp4",
        np.full((1, 40, 40, 3), 255, np.uint8)
        - np.pad(np.full((1, 20, 20, 3), 200, np.uint8), ((0, 0), (10, 10), (10, 10), (0, 0))),
        fps=1,
    )
    asset = pipe(one, SamplingOptions(steps=1))
    assert asset.num_frames == 1


def test_4k_video_is_downscaled(pipe, tmp_path) -> None:
    frames = np.full((2, 2160, 3840, 3), 255, np.uint8)
    frames[:, 800:1400, 1600:2200] = (30, 90, 200)
    big = write_video(tmp_path / "4k.mp4", frames, fps=2)
    asset = pipe(big, SamplingOptions(steps=1))
    assert asset.num_frames == 2 and asset.images.shape[-1] == 32


@pytest.mark.parametrize("case", ["missing", "empty", "text", "zero_frames"])
def test_bad_videos_are_one_line_errors(case, model_dir, tmp_path) -> None:
    path = tmp_path / "input.mp4"
    if case == "empty":
        path.write_bytes(b"")
    elif case == "text":
        path.write_text("this is not a video\n")
    elif case == "zero_frames":
        import av

        with av.open(str(path), "w") as container:
            container.add_stream("h264", rate=24)
    out = tmp_path / "out"
    result = runner.invoke(app, ["generate", str(path), "-o", str(out), "--model", str(model_dir)])
    assert isinstance(result.exception, InputError), result.output
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_cli_generate_writes_result_and_no_partial_on_failure(model_dir, video, tmp_path, monkeypatch) -> None:
    out = tmp_path / "result"
    result = runner.invoke(
        app,
        [
            "generate",
            str(video),
            "-o",
            str(out),
            "--model",
            str(model_dir),
            "--steps",
            "1",
            "--frames",
            "3",
            "--texture-size",
            "64",
        ],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "result.json").read_text())
    assert meta["frames"] == 3 and len(list((out / "frames").glob("*.glb"))) == 3
    for name in ("animated.glb", "asset.usdc", "asset.usdz", "preview.mp4"):
        assert (out / name).is_file() and name in meta["files"]
    assert set(meta["seconds"]) >= {"ss", "geometry", "material", "export", "total"}
    # A non-empty output folder is refused before any work.
    again = runner.invoke(app, ["generate", str(video), "-o", str(out), "--model", str(model_dir)])
    assert isinstance(again.exception, Helix4DError)
    # A failure while writing leaves nothing behind.
    import helix4d.pipeline.output as output

    def boom(meshes, out_dir, **kwargs):
        (Path(out_dir) / "frames").mkdir()
        (Path(out_dir) / "frames" / "frame_0000.glb").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(output, "export_asset", boom)
    failed = tmp_path / "failed"
    runner.invoke(
        app, ["generate", str(video), "-o", str(failed), "--model", str(model_dir), "--steps", "1", "--frames", "2"]
    )
    assert not failed.exists()
    assert not [p for p in tmp_path.iterdir() if "partial" in p.name]


def test_stage1_reads_its_own_encoder_and_a_given_coarse_structure_replaces_it(model_dir, tmp_path) -> None:
    """With an `ss_image_encoder` in the folder, stage 1 (only) is conditioned on it; `coarse=` skips stage 1."""
    import shutil

    folder = tmp_path / "with-stage1-encoder"
    shutil.copytree(model_dir, folder)
    shutil.copytree(model_dir / "image_encoder", folder / "ss_image_encoder")
    images = np.random.default_rng(0).random((3, 4, 32, 32), dtype=np.float32)
    shared = Helix4DPipeline.from_pretrained(model_dir).generate(images, SamplingOptions(steps=2))
    own = Helix4DPipeline.from_pretrained(folder)
    assert "ss_image_encoder" in own.components
    assert _same_ovoxels(
        own.generate(images, SamplingOptions(steps=2)).ovoxels, shared.ovoxels, atol=1e-5
    )  # a copy: same result
    with torch.no_grad():
        for p in own.components["ss_image_encoder"].parameters():
            p.add_(torch.randn_like(p) * 0.5)
    moved = own.generate(images, SamplingOptions(steps=2))
    assert any(not np.array_equal(a, b) for a, b in zip(moved.coarse, shared.coarse))
    given = own.generate(images, SamplingOptions(steps=2), coarse=[torch.from_numpy(c) for c in shared.coarse])
    assert _same_ovoxels(given.ovoxels, shared.ovoxels, atol=1e-5)  # stages 2-3 read the shared encoder only
    with pytest.raises(InputError, match="2 frames"):
        own.generate(images, SamplingOptions(steps=2), coarse=[torch.from_numpy(c) for c in shared.coarse[:2]])
