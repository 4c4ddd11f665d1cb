"""`helix4d bench`: the pipeline rows (fresh process per size), their tables and JSON, scaling, device checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from helix4d.bench.common import bench_images, resolve_devices
from helix4d.bench.pipeline import STAGE_ORDER, PipelineBenchRow, pipeline_table, scaling
from helix4d.cli import app
from helix4d.errors import BackendUnavailableError, InputError

runner = CliRunner()


def _row(frames: int, total: float) -> PipelineBenchRow:
    seconds = {s: total / 5 for s in STAGE_ORDER}
    return PipelineBenchRow("cpu", frames, 1, 1, 100.0, seconds, total, total, 300.0, 10.0, "rss")


def test_cli_bench_pipeline_json_and_table() -> None:
    result = runner.invoke(app, ["bench", "pipeline", "--frames", "2,4", "--steps", "1", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"machine", "settings", "pipeline", "scaling"} <= set(out)
    assert [r["frames"] for r in out["pipeline"]] == [2, 4]
    for r in out["pipeline"]:
        assert set(r["seconds"]) == set(STAGE_ORDER)
        assert r["total"] >= sum(r["seconds"].values()) * 0.99 and r["peak_mib"] > 50 and r["voxels_per_frame"] > 0
        assert r["fps"] == pytest.approx(r["frames"] / r["total"])
        assert r["threads"] == 1 and r["cpu_seconds"] > 0
    assert out["scaling"][1]["frame_ratio"] == 2.0
    rows = [
        PipelineBenchRow(**{k: v for k, v in r.items() if k not in ("seconds_per_frame", "fps")})
        for r in out["pipeline"]
    ]
    table = pipeline_table(rows)
    assert all(f"{s} s" in table for s in STAGE_ORDER) and "peak RSS" in table and "× linear" in table


@pytest.mark.slow
def test_cli_bench_all_runs_every_part_at_a_tiny_size() -> None:
    """The full report (attention backends, pipeline, O-Voxel conversion) runs end to end and prints its tables."""
    args = ["bench", "all", "--frames", "1", "--preset", "tiny", "--resolutions", "8", "--attention-frames", "2"]
    args += ["--attention-tokens", "16", "--threads", "1", "--repeat", "1", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "O-Voxel conversion by resolution" in result.stdout and "mesh->ovoxel" in result.stdout


def test_scaling_of_a_linear_run_is_one() -> None:
    rows = [_row(4, 2.0), _row(8, 4.0), _row(16, 8.0)]
    assert [s["vs_linear"] for s in scaling(rows)] == pytest.approx([1.0, 1.0, 1.0])
    assert [s["seconds_per_frame"] for s in scaling(rows)] == pytest.approx([0.5, 0.5, 0.5])
    assert scaling([_row(4, 2.0), _row(8, 8.0)])[1]["vs_linear"] == pytest.approx(2.0)


def test_bench_images_show_a_moving_object() -> None:
    images = bench_images(3, 32)
    assert images.shape == (3, 4, 32, 32) and images.dtype == np.float32
    assert 0 <= images.min() and images.max() <= 1 and (images[:, 3] > 0).any(axis=(1, 2)).all()
    assert not np.array_equal(images[0], images[2])
    assert np.all(images[:, :3] <= images[:, 3:])  # RGB over black: premultiplied by alpha


def test_devices_are_checked() -> None:
    assert resolve_devices("cpu") == ["cpu"]
    assert resolve_devices("auto")[0] == "cpu"
    with pytest.raises(InputError, match="auto, cpu or cuda"):
        resolve_devices("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError):
            resolve_devices("cuda")


def test_bench_help() -> None:
    for command in (["bench", "--help"], ["bench", "pipeline", "--help"], ["bench", "all", "--help"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0 and "Usage" in result.output
    bad = runner.invoke(app, ["bench", "pipeline", "--frames", "0"])
    assert isinstance(bad.exception, InputError)


def test_matting_end_to_end_scores_clean_and_composited_clips(tmp_path) -> None:
    from helix4d.bench.matting import end_to_end, end_to_end_table, make_clips

    clips = make_clips(tmp_path / "synth", clips=1, frames=2, seed=3)
    scores = end_to_end(clips)  # the shipped demo model
    assert sorted(scores) == ["clean", "hand-held", "static"]
    assert all(len(v) == 1 and 0 < v[0] < 1 for v in scores.values())
    assert "| clean | its own alpha |" in end_to_end_table(scores)


def test_drift_rows_score_every_block_of_a_long_clip(tmp_path) -> None:
    from helix4d.bench.drift import drift_table, run_drift
    from helix4d.data.build import build_synthetic

    build_synthetic(tmp_path / "long", 1, frames=5, resolution=32, image_size=128, views=1, seed=4, workers=0)
    blocks, rows = run_drift(tmp_path / "long", chunks=[0, 3], block=2, steps=2)
    assert blocks == [(0, 2), (2, 4), (4, 5)] and [r.name for r in rows] == ["one anchor", "chunks of 3"]
    assert all(len(block["cd_3d"]) == 1 for row in rows for block in row.blocks)
    assert rows[0].blocks[0]["cd_3d"] != rows[1].blocks[2]["cd_3d"]
    assert drift_table(blocks, rows).count("\n") == 3  # the header, its rule and one line per row


# ------------------------------------------------------------------------------------------------ bench gpu, cost model
def _table_rows(text: str, title: str) -> list[list[str]]:
    """The body rows of the markdown table that follows `title` in `text`, as lists of cell strings."""
    body = text.split(title + "\n\n", 1)[1].splitlines()[2:]  # past the header and its rule
    body = body[: next((i for i, line in enumerate(body) if not line.startswith("|")), len(body))]
    return [[c.strip() for c in line.strip("|").split("|")] for line in body]


def test_cli_bench_gpu_runs_the_tiny_architecture_on_a_cpu() -> None:
    from helix4d.bench.cost import STAGES

    result = runner.invoke(
        app, ["bench", "gpu", "--device", "cpu", "--size", "tiny", "--frames", "1,3", "--steps", "2"]
    )
    assert result.exit_code == 0, result.output
    stages = _table_rows(result.stdout, "Stages")
    assert [(r[0], r[1]) for r in stages] == [(s, str(f)) for f in (1, 3) for s in STAGES]
    assert all(float(r[3]) >= 0 and float(r[6]) > 0 and r[-1] == "ok" for r in stages)  # seconds, model TFLOP
    attention = _table_rows(result.stdout, "Attention backends")
    assert [(r[0], r[2]) for r in attention] == [
        (s, b) for s in ("ss", "geometry", "material") for b in ("dense", "loop", "flex")
    ]
    for r in attention:
        if r[2] == "flex":
            assert r[-1] == "unavailable: needs CUDA"
        else:  # bf16 through a random block: the loop backend within 2 % of the dense reference
            assert r[-1] == "ok" and float(r[5]) < 2e-2 and (r[2] != "dense" or float(r[5]) == 0.0)
    conv = _table_rows(result.stdout, "Sparse convolution (decode stage)")
    assert [(r[0], r[1]) for r in conv] == [("1", "reference"), ("1", "ocnn"), ("3", "reference"), ("3", "ocnn")]
    assert conv[0][-1] == "ok" and conv[1][-1].startswith("unavailable")


def test_cli_bench_gpu_json_and_refusals() -> None:
    result = runner.invoke(
        app, ["bench", "gpu", "--device", "cpu", "--size", "tiny", "--frames", "2", "--steps", "1", "--json"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"machine", "settings", "memory", "stages", "attention", "sparse_conv"} <= set(out)
    decode = next(r for r in out["stages"] if r["stage"] == "decode")
    assert decode["tokens_per_frame"] > 100 and decode["peak_gib"] is None  # no honest CPU peak
    assert runner.invoke(app, ["bench", "gpu", "--device", "cpu"]).exception.__class__ is InputError  # full on a CPU
    assert isinstance(runner.invoke(app, ["bench", "gpu", "--device", "cpu", "--size", "huge"]).exception, InputError)
    if not torch.cuda.is_available():
        assert isinstance(runner.invoke(app, ["bench", "gpu", "--size", "tiny"]).exception, BackendUnavailableError)


def test_sampler_passes_count_guided_steps_twice() -> None:
    from helix4d.bench.cost_formulas import sampler_passes
    from helix4d.bench.workload import TRELLIS2_SAMPLING
    from helix4d.pipeline.sampler import SamplerConfig

    assert sampler_passes(SamplerConfig(steps=5, cfg_strength=1.0)) == 5
    assert sampler_passes(SamplerConfig(steps=5, cfg_strength=3.0)) == 10
    assert [sampler_passes(TRELLIS2_SAMPLING[s]) for s in ("ss", "geometry", "material")] == [22, 21, 12]


def test_flow_cost_formula_matches_the_flop_counter() -> None:
    """The cost model's flow pass against torch's own FLOP count, on a TRELLIS.2-style and a helix4d-style flow,
    for the pass that reads a cached anchor (SDPA's math path, so the counter sees the attention products)."""
    import dataclasses

    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from helix4d.bench.cost_formulas import flow_pass
    from helix4d.models.flow import FlowConfig, FlowTransformer
    from helix4d.nn.blocks import FrameAttention
    from helix4d.sparse import SparseTensor
    from helix4d.trellis2.presets import trellis2_flow_config

    small = dict(dim=64, heads=2, cond_dim=24, mlp_ratio=2.0)
    for config in (
        dataclasses.replace(trellis2_flow_config("material", depth=2), **small),
        FlowConfig(dim=64, depth=2),
    ):
        torch.manual_seed(0)
        flow, sizes = FlowTransformer(config), [5, 7, 6, 9]
        x = SparseTensor.from_frames(
            [torch.randint(0, 8, (n, 3)) for n in sizes], [torch.randn(n, config.in_channels) for n in sizes]
        )
        extra = torch.randn(sum(sizes), config.extra_channels) if config.extra_channels else None
        cond, cache = torch.randn(4, 11, config.cond_dim), flow.empty_anchor_cache()
        flow(
            x.select_frames([0]),
            torch.zeros(5),
            cond[:1],
            FrameAttention(1, True, cache),
            extra[:5] if extra is not None else None,
        )
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            flow(
                x.select_frames([1, 2, 3]),
                torch.full((22,), 0.5),
                cond[1:],
                FrameAttention(1, True, cache, anchor_included=False),
                extra[5:] if extra is not None else None,
            )
        keys = [5 + 7 + 6, 5 + 7 + 6 + 9, 5 + 6 + 9]  # window r = 1 over frames 1..3, plus the anchor
        assert sum(flow_pass(config, sizes[1:], keys, 11)) == counter.get_total_flops()


def test_decoder_cost_formulas_match_the_flop_counter() -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from helix4d.bench.cost_formulas import helix4d_decoder, trellis2_decoder
    from helix4d.bench.workload import shell_voxels
    from helix4d.models.interfaces import DecoderOutput
    from helix4d.models.sc_vae import SCVAE, SCVAEConfig
    from helix4d.sparse import SparseTensor
    from helix4d.trellis2.sc_vae import Trellis2SCVAEConfig, Trellis2SCVAEDecoder

    torch.manual_seed(0)
    coarse, masks = shell_voxels(32, 2, 2)
    voxels = [sum(len(c) for c in coarse)] + [int(m.sum()) for m in masks]
    latent = SparseTensor.of_sequence(coarse, torch.randn(voxels[0], 32))
    config = Trellis2SCVAEConfig("decoder", 7, (32, 16, 16), (1, 2, 1), geometry=True)
    with FlopCounterMode(display=False) as counter:
        trellis2 = Trellis2SCVAEDecoder(config).decode(
            latent, guide=DecoderOutput(latent, [m * 2.0 - 1 for m in masks])
        )
    assert trellis2_decoder(config, voxels, "reference", 2).flops == counter.get_total_flops()
    assert trellis2.voxels.num_tokens == voxels[-1]
    demo = SCVAEConfig(in_channels=6, latent_channels=8, channels=(16, 32, 64))
    with FlopCounterMode(display=False) as counter:
        out = SCVAE(demo).decode(SparseTensor.of_sequence(coarse, torch.randn(voxels[0], 8)))
    kept = [voxels[0]] + [int((logits > 0).sum()) for logits in out.exists_logits]
    assert helix4d_decoder(demo, kept, 2).flops == counter.get_total_flops()


def test_shell_masks_follow_the_decoders_voxel_order() -> None:
    """A TRELLIS.2 decoder guided by `shell_voxels`' masks ends on exactly the shell's fine voxels, frame by frame."""
    from helix4d.bench.workload import _crosses, shell_voxels
    from helix4d.models.interfaces import DecoderOutput
    from helix4d.sparse import SparseTensor
    from helix4d.trellis2.sc_vae import Trellis2SCVAEConfig, Trellis2SCVAEDecoder

    coarse, masks = shell_voxels(32, 2, 2)
    latent = SparseTensor.of_sequence(coarse, torch.randn(sum(len(c) for c in coarse), 32))
    decoder = Trellis2SCVAEDecoder(Trellis2SCVAEConfig("decoder", 6, (16, 16, 16), (0, 0, 0), pred_subdiv=False))
    out = decoder.decode(latent, guide=DecoderOutput(latent, [m * 2.0 - 1 for m in masks]))
    grid = torch.stack(torch.meshgrid(*(torch.arange(32),) * 3, indexing="ij"), -1).reshape(-1, 3)
    for f in range(2):
        centre = torch.tensor([16 + f * 32 / 256, 16.0, 16.0], dtype=torch.float64)
        expected = grid[_crosses(grid, 1.0, centre, 0.35 * 32)]
        got = out.voxels.frame(f).coords[:, 1:]
        assert torch.equal(torch.unique(got, dim=0), expected)  # unique rows come back sorted, like the grid
