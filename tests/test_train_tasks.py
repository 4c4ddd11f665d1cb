"""The project's training tasks on a tiny synthetic dataset: losses fall, the temporal fine-tune touches only
the temporal self-attention copies, and the trained folder generates."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helix4d.data.build import build_synthetic
from helix4d.errors import ConfigError, InputError
from helix4d.pipeline import SamplingOptions
from helix4d.pipeline.helix4d import Helix4DPipeline
from helix4d.sparse import SparseTensor
from helix4d.train import TrainConfig, train
from helix4d.train.latents import encode_dataset


@pytest.fixture(scope="module")
def workspace(tiny_workspace) -> Path:
    return tiny_workspace("train", count=3, frames=4, kinds=["split", "rigid", "sheet"])


def _run(root: Path, name: str, task: str, steps: int, **options) -> list[float]:
    config = TrainConfig(
        task=task,
        task_options={"model": str(root / "model"), **options},
        data=str(root / "data"),
        out=str(root / "runs" / name),
        steps=steps,
        batch_size=4,
        lr=3e-3,
        min_lr=3e-3,
        warmup_steps=0,
        log_every=1,
        ema_decay=0.0,
        checkpoint_every=1000,
        device="cpu",
        precision="fp32",
    )
    train(config)
    lines = (root / "runs" / name / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines if "loss" in json.loads(line)]


def _state(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_recipe_trains_every_part(workspace: Path) -> None:
    root = workspace
    losses = _run(root, "ss_vae", "ss_vae", 20)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # 20 steps lower the loss
    losses = _run(root, "geometry_vae", "sc_vae", 20, component="geometry_vae")
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    _run(root, "material_vae", "sc_vae", 5, component="material_vae")
    stats = encode_dataset(root / "model", root / "data", root / "latents")
    assert set(stats) == {"ss", "geometry", "material"}
    pipeline = json.loads((root / "model" / "pipeline.json").read_text())
    assert pipeline["latent_stats"]["geometry"]["std"] != [1.0] * len(pipeline["latent_stats"]["geometry"]["std"])
    record = torch.load(next((root / "latents").glob("*.pt")), weights_only=True)
    encode_dataset(root / "model", root / "data", root / "latents", only=("material",))  # after retraining one VAE
    again = torch.load(next((root / "latents").glob("*.pt")), weights_only=True)
    assert torch.equal(record["geometry"], again["geometry"]) and torch.equal(record["images"], again["images"])
    assert torch.allclose(record["material"], again["material"])

    shared_encoder = _state(root / "model" / "image_encoder")
    losses = _run(root, "image_encoder", "image_encoder", 20, latents=str(root / "latents"))
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # condition image -> coarse occupancy is learnt
    stage1_encoder = _state(root / "model" / "ss_image_encoder")  # stage 1's own encoder, started from the shared one
    assert any(not torch.equal(v, stage1_encoder[k]) for k, v in shared_encoder.items())
    assert all(torch.equal(v, _state(root / "model" / "image_encoder")[k]) for k, v in shared_encoder.items())

    losses = _run(root, "ss_flow", "flow", 20, stage="ss", latents=str(root / "latents"), train_image_encoder=True)
    assert any(not torch.equal(v, _state(root / "model" / "ss_image_encoder")[k]) for k, v in stage1_encoder.items())
    assert all(torch.equal(v, _state(root / "model" / "image_encoder")[k]) for k, v in shared_encoder.items())
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    encoder_before = _state(root / "model" / "ss_image_encoder")
    before = _state(root / "model" / "ss_flow")
    assert all(
        torch.equal(before[k], before[k.replace("temporal_attn", "self_attn")]) for k in before if "temporal_attn" in k
    )

    _run(root, "ss_flow_temporal", "flow", 4, stage="ss", latents=str(root / "latents"), temporal=True, clip_frames=3)
    after = _state(root / "model" / "ss_flow")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(".temporal_attn." in k for k in changed)
    assert all(torch.equal(encoder_before[k], v) for k, v in _state(root / "model" / "ss_image_encoder").items())

    pipe = Helix4DPipeline.from_pretrained(root / "model")
    assert pipe.config.trained and "ss_image_encoder" in pipe.components
    images = np.random.default_rng(0).random((3, 4, 32, 32), dtype=np.float32)
    assert pipe.generate(images, SamplingOptions(steps=2)).num_frames == 3


def test_stage1_only_latents_train_stage_1_and_match_a_full_encode(workspace: Path, tmp_path: Path) -> None:
    root = workspace
    full, ss_only = tmp_path / "full", tmp_path / "ss_only"
    encode_dataset(root / "model", root / "data", full, stats="keep")
    encode_dataset(root / "model", root / "data", ss_only, only=("ss",), stats="keep")
    for path in sorted(full.glob("*.pt")):
        a, b = torch.load(path, weights_only=True), torch.load(ss_only / path.name, weights_only=True)
        assert "geometry" not in b and "material" not in b
        assert torch.equal(a["coarse"], b["coarse"]) and a["coarse"].dtype == b["coarse"].dtype  # without stage 2
        assert torch.equal(a["ss"], b["ss"]) and torch.equal(a["images"], b["images"])
    assert json.loads((ss_only / "index.json").read_text())["stages"] == ["ss"]
    losses = _run(root, "ss_only_flow", "flow", 3, stage="ss", latents=str(ss_only))
    assert all(math.isfinite(x) for x in losses)
    with pytest.raises(ConfigError, match="no geometry latents"):
        _run(root, "geometry_on_ss_only", "flow", 1, stage="geometry", latents=str(ss_only))
    encode_dataset(root / "model", root / "data", ss_only, only=("geometry", "material"), stats="keep")  # added later
    assert json.loads((ss_only / "index.json").read_text())["stages"] == ["ss", "geometry", "material"]
    with pytest.raises(InputError, match="encode 'ss'"):
        encode_dataset(root / "model", root / "data", tmp_path / "new", only=("geometry",))


def test_a_decoder_only_vae_run_keeps_the_encoder_and_its_latent_space(workspace: Path) -> None:
    root = workspace
    before = _state(root / "model" / "material_vae")
    _run(root, "material_decoder", "sc_vae", 3, component="material_vae", train="decoder", colour_augmentation=0.5)
    after = _state(root / "model" / "material_vae")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("dec_") for k in changed)
    with pytest.raises(ConfigError, match="'all' or 'decoder'"):
        _run(root, "material_typo", "sc_vae", 1, component="material_vae", train="decoders")


def test_recolouring_moves_whole_frames_and_keeps_alpha() -> None:
    from helix4d.train.tasks.vae import recolour_frames

    g = torch.Generator().manual_seed(0)
    feats = torch.rand(40, 6, generator=g) * 0.02 + 0.49
    voxels = torch.arange(60).reshape(20, 3)
    x = SparseTensor.cat(
        [SparseTensor.of_sequence([voxels], feats[:20]), SparseTensor.of_sequence([voxels], feats[20:])]
    )
    never = recolour_frames(x, 0.0, torch.Generator().manual_seed(1)).feats
    always = recolour_frames(x, 1.0, torch.Generator().manual_seed(1)).feats  # two one-frame sequences
    assert torch.equal(never, feats)
    assert torch.equal(always[:, 5], feats[:, 5]) and always.min() >= 0 and always.max() <= 1
    assert 0 < always.min() and always.max() < 1  # this seed clips nothing, so each frame is an exact affine map
    for rows in (slice(0, 20), slice(20, 40)):  # one shift and one scale per frame and channel, in [0.5, 1.5]
        ratio = (always[rows, :5] - always[rows, :5].mean(0)) / (feats[rows, :5] - feats[rows, :5].mean(0))
        torch.testing.assert_close(ratio, ratio[:1].expand_as(ratio), atol=1e-3, rtol=1e-3)
        assert ((ratio[0] >= 0.5) & (ratio[0] <= 1.5)).all()
    assert not torch.allclose(always[:20, :3].mean(0), feats[:20, :3].mean(0), atol=0.01)


def test_image_encoder_task_can_start_a_fresh_deeper_encoder(workspace: Path) -> None:

    from helix4d.errors import ConfigError
    from helix4d.pipeline.folder import load_component

    root = workspace / "deeper"
    shutil.copytree(workspace / "model", root / "model")
    (root / "data").symlink_to(workspace / "data")
    if not (workspace / "latents").is_dir():
        encode_dataset(workspace / "model", workspace / "data", workspace / "latents")
    latents = str(workspace / "latents")
    _run(root, "encoder", "image_encoder", 3, latents=latents, encoder={"depth": 1, "stem_blocks": 1})
    encoder, config = load_component("ss_image_encoder", root / "model" / "ss_image_encoder")
    assert (config.depth, config.stem_blocks) == (1, 1)
    assert any(".body." in name for name, _ in encoder.named_parameters())  # the residual stem blocks exist
    with pytest.raises(ConfigError, match="task_options.encoder"):
        _run(root, "bad", "image_encoder", 1, latents=latents, encoder={"layers": 3})


def test_flow_task_can_start_a_fresh_wider_flow(workspace: Path) -> None:
    """`task_options.flow` trains a fresh flow of another shape in static training and writes its config; the
    temporal fine-tune and the stage's fixed channels refuse it."""
    from helix4d.errors import ConfigError
    from helix4d.pipeline.folder import load_component

    root = workspace / "wider"
    shutil.copytree(workspace / "model", root / "model")
    (root / "data").symlink_to(workspace / "data")
    if not (workspace / "latents").is_dir():
        encode_dataset(workspace / "model", workspace / "data", workspace / "latents")
    latents = str(workspace / "latents")
    losses = _run(root, "wide", "flow", 3, stage="ss", latents=latents, flow={"dim": 48, "depth": 3, "heads": 2})
    assert len(losses) == 3 and all(np.isfinite(losses))
    flow, config = load_component("ss_flow", root / "model" / "ss_flow")
    assert (config.dim, config.depth) == (48, 3) and len(flow.blocks) == 3
    pipe = Helix4DPipeline.from_pretrained(root / "model")
    images = np.random.default_rng(0).random((2, 4, 32, 32), dtype=np.float32)
    assert pipe.generate(images, SamplingOptions(steps=2)).num_frames == 2  # the folder generates with it
    with pytest.raises(ConfigError, match="only static training"):
        _run(root, "bad", "flow", 1, stage="ss", latents=latents, temporal=True, flow={"dim": 64})
    with pytest.raises(ConfigError, match="cannot change cond_dim"):
        _run(root, "bad", "flow", 1, stage="ss", latents=latents, flow={"cond_dim": 64})
    with pytest.raises(ConfigError, match="task_options.flow"):
        _run(root, "bad", "flow", 1, stage="ss", latents=latents, flow={"width": 64})


def test_a_fresh_material_vae_of_another_width_needs_and_gets_a_fresh_flow(workspace: Path) -> None:
    """`task_options.vae` trains a fresh VAE of another shape; after re-encoding, the stage's old flow is refused
    (its inputs no longer match) and a fresh flow takes the new latent width, and the folder generates."""
    from helix4d.pipeline.folder import load_component

    root = workspace / "widevae"
    shutil.copytree(workspace / "model", root / "model")
    (root / "data").symlink_to(workspace / "data")
    _run(root, "vae", "sc_vae", 2, component="material_vae", vae={"latent_channels": 6})
    assert load_component("material_vae", root / "model" / "material_vae")[1].latent_channels == 6
    with pytest.raises(ConfigError, match="encode with --stats measure"):
        encode_dataset(root / "model", root / "data", root / "latents", stats="keep")
    encode_dataset(root / "model", root / "data", root / "latents")  # the old statistics cannot apply: measured
    assert len(json.loads((root / "model" / "pipeline.json").read_text())["latent_stats"]["material"]["std"]) == 6
    latents = str(root / "latents")
    with pytest.raises(ConfigError, match="start a fresh flow"):
        _run(root, "old", "flow", 1, stage="material", latents=latents)
    _run(root, "fresh", "flow", 2, stage="material", latents=latents, flow={"depth": 1})
    config = load_component("material_flow", root / "model" / "material_flow")[1]
    geometry = load_component("geometry_vae", root / "model" / "geometry_vae")[1].latent_channels
    assert (config.in_channels, config.extra_channels, config.depth) == (6, geometry, 1)
    images = np.random.default_rng(0).random((2, 4, 32, 32), dtype=np.float32)
    assert Helix4DPipeline.from_pretrained(root / "model").generate(images, SamplingOptions(steps=2)).num_frames == 2
    with pytest.raises(ConfigError, match="cannot change in_channels"):
        _run(root, "bad", "sc_vae", 1, component="material_vae", vae={"in_channels": 3})


def test_encoding_skips_a_sequence_with_no_visible_object_and_resumes(workspace: Path, tmp_path: Path) -> None:
    """One sequence whose renders show nothing (alpha 0 everywhere) is skipped with its reason instead of ending
    the run; an interrupted encode (no index.json yet) keeps what it wrote and gives the same latents."""
    from PIL import Image

    data = tmp_path / "data"
    shutil.copytree(workspace / "data", data)
    hidden = sorted(p for p in data.glob("shard-*/*") if p.is_dir())[1]
    for png in (hidden / "views" / "v00").glob("*.png"):
        rgba = np.array(Image.open(png))
        rgba[..., 3] = 0
        Image.fromarray(rgba).save(png)
    model = tmp_path / "model"
    shutil.copytree(workspace / "model", model)
    encode_dataset(model, data, tmp_path / "latents")
    index = json.loads((tmp_path / "latents" / "index.json").read_text())
    assert [s["id"] for s in index["skipped"]] == [hidden.name] and "no foreground" in index["skipped"][0]["error"]
    assert len(index["sequences"]) == 2 and not (tmp_path / "latents" / f"{hidden.name}.pt").exists()
    encode_dataset(model, data, tmp_path / "latents", only=("material",))  # an update passes over it too
    assert json.loads((tmp_path / "latents" / "index.json").read_text()) == index
    stats = json.loads((model / "pipeline.json").read_text())["latent_stats"]

    first = sorted((tmp_path / "latents").glob("*.pt"))[0]
    record = torch.load(first, weights_only=True)
    (tmp_path / "latents" / "index.json").unlink()  # as if killed before the end
    sorted((tmp_path / "latents").glob("*.pt"))[1].unlink()
    encode_dataset(model, data, tmp_path / "latents")
    assert json.loads((tmp_path / "latents" / "index.json").read_text())["sequences"] == index["sequences"]
    assert torch.equal(torch.load(first, weights_only=True)["geometry"], record["geometry"])
    assert json.loads((model / "pipeline.json").read_text())["latent_stats"] == stats


def test_encoding_new_data_keeps_a_trained_models_latent_statistics(workspace: Path, tmp_path: Path) -> None:
    """Once a flow is trained on them the statistics stay (a new dataset must not shift the normalisation the flows
    learnt); re-encoding one stage after retraining its VAE, or --stats measure, measures them again."""
    model = tmp_path / "model"
    shutil.copytree(workspace / "model", model)
    pipeline = json.loads((model / "pipeline.json").read_text())
    pipeline["trained"] = True
    for stage in pipeline["latent_stats"].values():
        stage["mean"] = [0.25] * len(stage["mean"])  # as measured on some other data
    (model / "pipeline.json").write_text(json.dumps(pipeline))
    stats = lambda: json.loads((model / "pipeline.json").read_text())["latent_stats"]  # noqa: E731
    kept = encode_dataset(model, workspace / "data", tmp_path / "a")
    assert stats() == pipeline["latent_stats"] and kept["geometry"].mean == [0.25] * len(kept["geometry"].mean)
    encode_dataset(model, workspace / "data", tmp_path / "a", only=("material",))
    assert stats()["material"]["mean"] != pipeline["latent_stats"]["material"]["mean"]
    assert stats()["geometry"] == pipeline["latent_stats"]["geometry"]
    encode_dataset(model, workspace / "data", tmp_path / "b", stats="measure")
    assert stats()["geometry"]["mean"] != pipeline["latent_stats"]["geometry"]["mean"]
    with pytest.raises(InputError, match="stats must be one of"):
        encode_dataset(model, workspace / "data", tmp_path / "c", stats="fresh")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"stag": "ss"}, "unknown key 'stag' (did you mean 'stage'?)"),
        ({"clip_frames": "four"}, 'clip_frames must be int, got "four"'),
        ({"temporal": 1}, "temporal must be bool, got 1"),
    ],
)
def test_task_options_are_typed(workspace: Path, options: dict, message: str) -> None:
    from helix4d.errors import ConfigError
    from helix4d.train.task import resolve_task

    config = TrainConfig(task="flow", task_options={"model": str(workspace / "model"), **options})
    with pytest.raises(ConfigError, match=re.escape(message)):
        resolve_task("flow")(config)
    with pytest.raises(ConfigError, match="needs 'model'"):
        resolve_task("flow")(TrainConfig(task="flow", task_options={"stage": "ss"}))


def test_flow_training_can_select_the_canonical_half_of_a_mixed_draw(workspace: Path, tmp_path: Path) -> None:
    """`looks: canonical` keeps exactly the sequences whose meta.json records the canonical look."""
    from helix4d.data import layout
    from helix4d.data.look import Look, canonical_sequences
    from helix4d.errors import ConfigError
    from helix4d.train.tasks.clips import LatentClips

    data = tmp_path / "mixed"
    build_synthetic(
        data, count=4, seed=5, frames=2, resolution=16, image_size=32, views=1, workers=0, progress=False, look="mixed"
    )
    metas = {e["id"]: layout.read_json(data / e["path"] / layout.META) for e in layout.read_manifest(data)["sequences"]}
    canonical = {i for i, meta in metas.items() if Look.from_dict(meta["look"]) == Look()}
    assert 0 < len(canonical) < len(metas)  # this draw holds both halves
    assert canonical_sequences(data) == canonical
    model = tmp_path / "model"
    shutil.copytree(workspace / "model", model)
    encode_dataset(model, data, tmp_path / "latents")
    every = LatentClips(tmp_path / "latents", 1, seed=0)
    chosen = LatentClips(tmp_path / "latents", 1, seed=0, looks="canonical")
    assert {s["id"] for s in every.sequences} == set(metas)
    assert {s["id"] for s in chosen.sequences} == canonical and len(chosen) == 2 * len(canonical)
    with pytest.raises(ConfigError, match="must be 'all' or 'canonical'"):
        LatentClips(tmp_path / "latents", 1, seed=0, looks="random")
