"""`helix4d train` and `helix4d model`: train from a config, create a random model folder, pre-encode a dataset's
latents."""

from __future__ import annotations

from pathlib import Path

import typer

model_app = typer.Typer(help="Create and inspect model folders.", no_args_is_help=True)


def train_command(
    config: str = typer.Argument(..., help="JSON training config (see the README's Training section)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from the newest checkpoint in the output folder (starts fresh if none)."
    ),
    out: str | None = typer.Option(None, "--out", help="Output folder; overrides the config's 'out'."),
    device: str | None = typer.Option(None, "--device", help="auto, cpu or cuda; overrides the config's 'device'."),
) -> None:
    """Train a model from a config; run under torchrun for many GPUs or nodes."""
    from helix4d.train import load_config, train

    train(load_config(config, {"out": out, "device": device}), resume=resume)


@model_app.command("init")
def model_init(
    out: Path = typer.Option(..., "--out", "-o", help="New model folder to write (must not exist or be empty)."),
    preset: str = typer.Option("tiny", "--preset", help="Model size: 'tiny' (tests) or 'demo' (the shipped size)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random initialisation."),
) -> None:
    """Write a randomly initialised model folder: the starting point for training from scratch."""
    from helix4d.pipeline.config import preset as get_preset
    from helix4d.pipeline.folder import init_model_folder

    init_model_folder(get_preset(preset), out, seed=seed)
    typer.echo(f"wrote a random '{preset}' model to {out}")


@model_app.command("encode-latents")
def model_encode_latents(
    model: Path = typer.Option(..., "--model", help="Model folder whose trained VAEs encode the data."),
    data: Path = typer.Option(..., "--data", help="Dataset folder (from `helix4d data synth` or `data build`)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the per-sequence latents."),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
    only: str = typer.Option(
        "ss,geometry,material",
        "--only",
        help="Stages to (re-)encode, e.g. 'material' after retraining that VAE; 'ss' into a new folder: stage-1-only "
        "latents (a ninth of the time).",
    ),
    stats: str = typer.Option(
        "auto",
        "--stats",
        help="Latent statistics: 'measure' them into the model's pipeline.json, 'keep' the model's, or 'auto': "
        "keep them once a flow was trained on them (continuing a trained model on new data), else measure.",
    ),
) -> None:
    """Pre-encode a dataset with the model's VAEs (flow training reads these) and store latent statistics."""
    from helix4d.pipeline.folder import read_pipeline_config
    from helix4d.train.latents import encode_dataset, measures_stats

    stages = tuple(s.strip() for s in only.split(",") if s.strip())
    encoded = encode_dataset(model, data, out, device, only=stages, stats=stats)
    measured = measures_stats(read_pipeline_config(model), stages, stats)
    said = f"stats written to {model / 'pipeline.json'}" if measured else "the model's latent statistics kept"
    typer.echo(f"encoded latents to {out}; {said} ({', '.join(encoded)})")
