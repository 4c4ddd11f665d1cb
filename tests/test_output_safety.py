"""What a command may write and replace, even as root: system folders, folders helix4d did not write, reports onto
inputs, the crash-safe swap, concurrent swaps, and training that would install NaN weights."""

from __future__ import annotations

import json
import os
import site
import sys
import threading
from pathlib import Path

import pytest
from train_toy import toy_config

from helix4d.cli import main
from helix4d.errors import ConfigError, InputError, TrainingError
from helix4d.io.files import atomic_dir, write_report
from helix4d.io.output_policy import OUTPUT_MARKER, check_output_dir, check_report_path
from helix4d.io.partial_folders import previous_prefix, remove_stale_partials
from helix4d.train import TrainConfig, train


@pytest.mark.parametrize(
    "folder",
    ["/", "/etc", "/usr", "/var", "/opt", "/home", "/tmp", sys.prefix, site.getsitepackages()[0]],
)
def test_system_folders_and_the_python_installation_are_refused_even_with_overwrite(folder: str) -> None:
    with pytest.raises(InputError, match="not allowed|system folder|Python installation|home|current"):
        check_output_dir(folder, overwrite=True)


def test_a_folder_above_the_python_installation_is_refused(tmp_path: Path) -> None:
    above = Path(sys.prefix).parent
    with pytest.raises(InputError):
        check_output_dir(above, overwrite=True)


def test_overwrite_replaces_only_folders_helix4d_wrote(tmp_path: Path) -> None:
    foreign = tmp_path / "documents"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(InputError, match="not written by helix4d"):
        check_output_dir(foreign, overwrite=True)
    assert (foreign / "thesis.tex").read_text() == "years of work"

    ours = tmp_path / "res"
    with atomic_dir(ours) as tmp:
        (tmp / "frame.glb").write_bytes(b"glb")
    assert (ours / OUTPUT_MARKER).is_file()
    assert check_output_dir(ours, overwrite=True) == ours
    with atomic_dir(ours) as tmp:
        (tmp / "frame.glb").write_bytes(b"new")
    assert (ours / "frame.glb").read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["documents", "res"]  # nothing left beside it


def test_a_run_killed_after_moving_the_old_result_aside_gets_it_back(tmp_path: Path) -> None:
    """The fallback swap's window (old moved aside, new not yet in place): the next run restores the old result
    instead of deleting it."""
    final = tmp_path / "res"
    aside = tmp_path / f"{previous_prefix(final)}abcd1234"
    aside.mkdir()
    (aside / "frame.glb").write_bytes(b"last complete result")
    (aside / OUTPUT_MARKER).write_text("{}")
    remove_stale_partials(final)
    assert (final / "frame.glb").read_bytes() == b"last complete result"
    assert not aside.exists()


def test_concurrent_overwrites_of_one_folder_both_finish(tmp_path: Path) -> None:
    final = tmp_path / "res"
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def write(tag: str) -> None:
        try:
            with atomic_dir(final) as tmp:
                (tmp / "who.txt").write_text(tag)
                barrier.wait()
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert (final / "who.txt").read_text() in ("a", "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["res"]


def test_reports_never_land_on_inputs_folders_or_other_files(tmp_path: Path) -> None:
    data = tmp_path / "gt"
    data.mkdir()
    manifest = data / "manifest.json"
    manifest.write_text('{"sequences": []}')
    with pytest.raises(InputError, match="inside the input"):
        check_report_path(manifest, inputs=(data,))
    with pytest.raises(InputError, match="is a folder"):
        check_report_path(tmp_path, inputs=(data,))
    script = tmp_path / "train.py"
    script.write_text("print('mine')")
    with pytest.raises(InputError, match="not a JSON file"):
        check_report_path(script)
    with pytest.raises(InputError, match="system folder"):
        check_report_path("/etc/report.json")
    written = write_report(tmp_path / "new" / "deeper" / "report.json", {"cd_3d": 0.1}, inputs=(data,))
    assert json.loads(written.read_text()) == {"cd_3d": 0.1}
    write_report(written, {"cd_3d": 0.2})  # a JSON report may be replaced
    assert json.loads(written.read_text()) == {"cd_3d": 0.2}
    assert manifest.read_text() == '{"sequences": []}' and script.read_text() == "print('mine')"


def test_eval_budget_json_onto_the_dataset_manifest_is_refused_before_any_compute(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    data = tmp_path / "gt"
    data.mkdir()
    manifest = data / "manifest.json"
    manifest.write_text('{"settings": {}, "sequences": []}')
    monkeypatch.setattr(sys, "argv", ["helix4d", "eval", "budget", str(data), "--json", str(manifest)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "inside the input" in err and "Traceback" not in err
    assert manifest.read_text() == '{"settings": {}, "sequences": []}'


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lr", float("inf")),
        ("lr", float("nan")),
        ("weight_decay", float("inf")),
        ("betas", (0.9, float("nan"))),
        ("grad_clip", float("inf")),
        ("steps", 10**30),
        ("batch_size", 10**12),
    ],
)
def test_non_finite_or_absurd_training_settings_are_refused(field: str, value) -> None:
    with pytest.raises(ConfigError, match=field):
        TrainConfig(task="toy_mlp", **{field: value})


def test_steps_1e30_in_a_config_file_are_refused(tmp_path: Path) -> None:
    from helix4d.train.config import load_config

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"task": "toy_mlp", "steps": 1e30, "out": str(tmp_path / "run")}))
    with pytest.raises(ConfigError, match="steps must be at most"):
        load_config(path)
    assert not (tmp_path / "run").exists()


def test_a_run_of_nan_losses_stops_training_and_installs_nothing(tmp_path: Path) -> None:
    poisoned = toy_config(tmp_path / "run", steps=20, checkpoint_every=50, task_options={"noise": float("nan")})
    with pytest.raises(TrainingError, match="NaN/inf for 3 steps"):
        train(poisoned)
    assert not (tmp_path / "run" / "model").exists()
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
    assert os.listdir(tmp_path / "run")  # the log of what happened is kept
