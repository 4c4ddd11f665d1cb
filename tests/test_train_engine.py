"""The training engine on a toy MLP task (tests/train_toy.py): learning, freezing, exact resume, DDP/FSDP
gradient equivalence, atomic checkpoints, EMA artifacts and config errors. CPU only, a few seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_toy import ToyTask, first_step_gradients, read_losses, toy_config

from helix4d.cli import main
from helix4d.errors import ConfigError
from helix4d.train import load_config, train
from helix4d.train.checkpoint import list_checkpoints
from helix4d.train.distributed import DistEnv
from helix4d.train.engine import build_model, lr_at
from helix4d.train.sampler import GlobalBatchSampler

CPU = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


def test_twenty_steps_lower_the_loss(tmp_path: Path) -> None:
    train(toy_config(tmp_path, steps=20, checkpoint_every=20, batch_size=32, task_options={"samples": 32}))
    losses = read_losses(tmp_path)
    assert sorted(losses) == list(range(1, 21))
    assert losses[20] < 0.5 * losses[1], losses


def test_only_trainable_parameters_change(tmp_path: Path, capsys) -> None:
    config = toy_config(tmp_path, steps=3, ema_decay=0.0, task_options={"samples": 24, "train_only": "head"})
    before = {k: v.clone() for k, v in build_model(ToyTask(config), config, CPU).state_dict().items()}
    after = train(config).state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.weight", "head.bias"}
    assert "trainable parameters: 17 of 705" in capsys.readouterr().out
    saved = torch.load(list_checkpoints(tmp_path / "checkpoints")[-1], weights_only=True)
    assert set(saved["model"]) == {"head.weight", "head.bias"}  # frozen weights are rebuilt, never saved


def test_resume_continues_exactly(tmp_path: Path) -> None:
    """Killed after step 5 and resumed: steps 6-10 log the very same losses as the uninterrupted run, with
    dropout (global RNG) and input noise (step generator) in play."""
    options = {"samples": 24, "dropout": 0.2, "noise": 0.3}
    common = dict(steps=10, checkpoint_every=5, warmup_steps=2, task_options=options)
    train(toy_config(tmp_path / "full", **common))
    train(toy_config(tmp_path / "killed", **(common | {"steps": 5, "lr_decay_steps": 10})))
    train(toy_config(tmp_path / "killed", **common), resume=True)
    full, resumed = read_losses(tmp_path / "full"), read_losses(tmp_path / "killed")
    assert sorted(resumed) == list(range(1, 11))  # the interrupted run's log reads as one run
    assert [resumed[s] for s in range(6, 11)] == [full[s] for s in range(6, 11)]
    assert len(set(full.values())) == 10


@pytest.mark.slow
def test_ddp_and_fsdp_match_one_process(tmp_path: Path) -> None:
    """Two gloo processes under torchrun: averaged gradients equal one process on the whole global batch; DDP and
    FSDP runs log the single-process losses; their kill-and-resume runs log exactly the uninterrupted ones."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    worker = Path(__file__).with_name("train_toy.py")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker)]
    result = subprocess.run(
        [*command, str(tmp_path)], env=env | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    single = first_step_gradients(toy_config(tmp_path / "unused"), CPU)
    train(toy_config(tmp_path / "single"))
    single_losses = read_losses(tmp_path / "single")
    for strategy in ("ddp", "fsdp"):
        grads = torch.load(tmp_path / f"grads_{strategy}.pt", weights_only=True)
        assert grads.keys() == single.keys()
        for name in single:
            torch.testing.assert_close(grads[name], single[name], rtol=0, atol=1e-6, msg=f"{strategy} {name}")
        full, resumed = read_losses(tmp_path / strategy / "full"), read_losses(tmp_path / strategy / "resumed")
        assert resumed == full
        assert full.keys() == single_losses.keys()
        for step in full:
            assert full[step] == pytest.approx(single_losses[step], rel=1e-5, abs=1e-7), (strategy, step)


def test_failed_checkpoint_write_leaves_no_partial_file(tmp_path: Path, monkeypatch) -> None:
    real_save = torch.save
    calls = []

    def save_then_fail(obj, f, *args, **kwargs):
        calls.append(Path(f.name).name)
        if len(calls) == 2:  # the step-4 checkpoint: half written, then the disk fills up
            assert not (tmp_path / "checkpoints" / "step_00000004.pt").exists()  # written under another name
            f.write(b"half a checkpoint")
            raise OSError("disk full")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(OSError, match="disk full"):
        train(toy_config(tmp_path, steps=4, checkpoint_every=2))
    monkeypatch.undo()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_00000002.pt"]
    assert torch.load(tmp_path / "checkpoints" / "step_00000002.pt", weights_only=True)["step"] == 2


def test_artifact_holds_ema_weights_and_old_checkpoints_are_pruned(tmp_path: Path) -> None:
    train(toy_config(tmp_path, steps=6, checkpoint_every=1, keep_checkpoints=2, ema_decay=0.5))
    assert [p.name for p in list_checkpoints(tmp_path / "checkpoints")] == ["step_00000005.pt", "step_00000006.pt"]
    state = torch.load(tmp_path / "checkpoints" / "step_00000006.pt", weights_only=True)
    artifact = load_file(tmp_path / "model" / "model.safetensors")
    for name, ema in state["ema"].items():
        torch.testing.assert_close(artifact[name], ema, rtol=0, atol=0)
    assert not torch.equal(artifact["head.weight"], state["model"]["head.weight"])


def test_fresh_run_refuses_a_folder_with_checkpoints(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "step_00000003.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match="--resume"):
        train(toy_config(tmp_path))


def test_lr_schedule_warms_up_then_decays_to_min_lr() -> None:
    config = toy_config(Path("unused"), steps=100, lr=1.0, min_lr=0.1, warmup_steps=10)
    lrs = [lr_at(s, config) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:]))  # monotone decay after warm-up
    assert lrs[55] == pytest.approx(0.55) and lrs[100] == lrs[119] == 0.1


def test_sampler_splits_global_batches_and_fast_forwards() -> None:
    one = GlobalBatchSampler(20, 6, rank=0, world_size=1, seed=3)
    ranks = [iter(GlobalBatchSampler(20, 6, rank=r, world_size=3, seed=3)) for r in range(3)]
    for step in range(7):  # 3 batches per epoch: crosses two epoch boundaries
        assert sum((next(r) for r in ranks), []) == one.global_batch_indices(step)
    assert len(set(sum((one.global_batch_indices(s) for s in range(3)), []))) == 18  # no repeat in an epoch
    assert one.global_batch_indices(0) != one.global_batch_indices(3)  # a new order each epoch
    late = GlobalBatchSampler(20, 6, rank=0, world_size=1, seed=3, start_step=4)
    assert next(iter(late)) == one.global_batch_indices(4)
    with pytest.raises(ConfigError, match="divisible"):
        GlobalBatchSampler(20, 6, rank=0, world_size=4, seed=3)


def _write(path: Path, config: dict) -> Path:
    path.write_text(json.dumps(config))
    return path


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"task": "toy_mlp", "steps": "ten"}, 'steps must be int, got "ten"'),
        ({"task": "toy_mlp", "betas": [0.9]}, "betas must be tuple"),
        ({"task": "toy_mlp", "lrr": 0.1}, "did you mean 'lr'"),
        ({"task": "toy_mlp", "precision": "fp16"}, "precision must be one of fp32, bf16"),
        ({"task": "toy_mlp", "data": "/no/such/data"}, "data path '/no/such/data' does not exist"),
        ({"steps": 3}, "has no 'task'"),
    ],
)
def test_bad_configs_raise_config_error(tmp_path: Path, config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        load_config(_write(tmp_path / "c.json", config))


@pytest.mark.parametrize("task", ["no_such_task", "nowhere.module:factory", "builtins:print"])
def test_unknown_task_fails_before_anything_is_written(tmp_path: Path, task: str) -> None:
    config = load_config(_write(tmp_path / "c.json", {"task": task, "out": str(tmp_path / "run")}))
    with pytest.raises(ConfigError, match=f"unknown task '{task}'"):
        train(config)
    assert not (tmp_path / "run").exists()


def test_missing_or_broken_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text('{"task": ')
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(tmp_path / "broken.json")


def test_cli_missing_config_is_one_line_exit_2(monkeypatch, capsys) -> None:
    monkeypatch.setattr(sys, "argv", ["helix4d", "train", "missing.json"])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "missing.json" in err


def test_cli_trains_a_registered_task_with_overrides(tmp_path: Path, monkeypatch) -> None:
    config = toy_config(tmp_path / "ignored").to_dict() | {"device": "cuda"}
    out = tmp_path / "run"
    monkeypatch.setattr(
        sys,
        "argv",
        ["helix4d", "train", str(_write(tmp_path / "c.json", config)), "--out", str(out), "--device", "cpu"],
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    assert (out / "model" / "model.safetensors").is_file() and not (tmp_path / "ignored").exists()


def test_module_entry_point_reports_errors_in_one_line() -> None:
    result = subprocess.run([sys.executable, "-m", "helix4d", "train", "missing.json"], capture_output=True, text=True)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "not found" in result.stderr


def test_plugin_tasks_come_from_entry_points(monkeypatch) -> None:
    from importlib.metadata import EntryPoint

    import helix4d.train.task as task_module

    plugin = EntryPoint(name="toy_plugin", value="train_toy:ToyTask", group=task_module.ENTRY_POINT_GROUP)
    monkeypatch.setattr(task_module, "entry_points", lambda group, name: [plugin] if name == plugin.name else [])
    monkeypatch.setattr(task_module, "_REGISTRY", dict(task_module._REGISTRY))  # the plug-in registers in a copy
    assert task_module.resolve_task("toy_plugin") is ToyTask
    broken = EntryPoint(name="toy_broken", value="nowhere.module:Task", group=task_module.ENTRY_POINT_GROUP)
    monkeypatch.setattr(task_module, "entry_points", lambda group, name: [broken])
    with pytest.raises(ConfigError, match="cannot be loaded"):
        task_module.resolve_task("toy_broken")
