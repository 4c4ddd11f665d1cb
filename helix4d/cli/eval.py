"""`helix4d eval`: score predictions against ground truth (`evaluate`), the error budget, the fit check and the
ablations. `evaluate` and `ablate` are also top-level commands, their first spellings."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from helix4d.cli.common import evaluation_progress
from helix4d.io.files import check_report_path, write_report

eval_app = typer.Typer(
    help="Measure model quality: score predictions (evaluate), the error budget, the fit check, the ablations.",
    no_args_is_help=True,
)


@eval_app.command("evaluate")
def evaluate_command(
    pred: Path = typer.Argument(
        ...,
        help="Predictions: a `helix4d generate` output, a folder of per-frame meshes, "
        "or a folder of such folders named after the ground-truth sequences.",
    ),
    gt: Path = typer.Argument(
        ..., help="Ground truth: a dataset sequence folder or dataset root, or per-frame meshes."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    protocol: str = typer.Option(
        "ours",
        "--protocol",
        help="'ours' (one alignment fitted on all frames) or 'actionbench' (the published ActionBench protocol).",
    ),
    no_align: bool = typer.Option(
        False, "--no-align", help="Compare the meshes as they are: no normalisation, no ICP."
    ),
    points: Optional[int] = typer.Option(
        None, "--points", help="Surface samples per frame (ours: 20000, actionbench: 100000)."
    ),
    images: bool = typer.Option(
        False,
        "--images",
        help="Also render the prediction from the input camera: "
        "silhouette IoU, PSNR, SSIM (dataset ground truth only).",
    ),
    clip: Optional[Path] = typer.Option(None, "--clip", help="Local transformers CLIP folder: adds CLIP similarity."),
    i3d: Optional[Path] = typer.Option(
        None, "--i3d", help="Local I3D TorchScript file (i3d_torchscript.pt): adds FVD."
    ),
    device: str = typer.Option("cpu", "--device", help="Device for ActionBench ICP and feature extractors."),
) -> None:
    """Score predicted 4D sequences against ground truth (CD-3D, CD-4D, F-score, normals, jitter, images)."""
    import json

    from helix4d.eval.evaluate import run_evaluation
    from helix4d.eval.protocols import make_protocol

    report = run_evaluation(
        pred,
        gt,
        make_protocol(protocol, not no_align, points, device),
        images=images,
        clip=clip,
        i3d=i3d,
        device=device,
    )
    typer.echo(json.dumps(report.to_json(), indent=1) if json_out else report.table())


@eval_app.command("budget")
def eval_budget_command(
    dataset: Path = typer.Argument(
        ..., help="Held-out dataset folder with ground truth (`helix4d data synth --seed ...`)."
    ),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder; default: the shipped demo model."),
    sequences: Optional[int] = typer.Option(None, "--sequences", help="Use the first N sequences (default: all)."),
    frames: Optional[int] = typer.Option(
        None,
        "--frames",
        help="Use the first F frames of each sequence (default: all); their images are framed over the whole "
        "sequence, as its ground truth is.",
    ),
    steps: int = typer.Option(12, "--steps", help="Sampling steps per stage."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed (the same noise for every row)."),
    rows: str = typer.Option(
        "ceiling,vae,stages_2_3,temporal,cleaned,per_frame,video",
        "--rows",
        help="Comma-separated rows to compute (all by default).",
    ),
    points: Optional[int] = typer.Option(None, "--points", help="Surface samples per frame (default: the protocol's)."),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Also write the full report (per sequence, per kind) as JSON to this file."
    ),
    device: str = typer.Option("auto", "--device", help="'auto', 'cpu' or 'cuda'."),
) -> None:
    """The error budget: the format's ceiling, the VAEs' round trip, stages 2-3 on the true coarse structure and the
    full pipeline (temporal and per-frame), per phenomenon; protocol "ours". The stage adding most error is the
    next one to train."""
    from helix4d.eval.budget import run_budget
    from helix4d.eval.protocols import make_protocol

    chosen = [r.strip() for r in rows.split(",") if r.strip()]
    if json_out is not None:
        check_report_path(json_out, inputs=(dataset, model))
    with evaluation_progress() as bar:
        task = bar.add_task("budget", total=None)
        report = run_budget(
            dataset,
            model,
            sequences,
            frames,
            steps,
            seed,
            device,
            make_protocol("ours", True, points),
            chosen,
            lambda what, done, total: bar.update(task, description=what, completed=done, total=total),
        )
    if json_out is not None:
        write_report(json_out, report.to_json(), inputs=(dataset, model))
    typer.echo(report.table())


@eval_app.command("fit")
def eval_fit_command(
    dataset: Path = typer.Argument(
        ..., help="Sequences to fit (e.g. 16: `helix4d data synth --seed 5000 --count 16 --views 1 ...`)."
    ),
    stage: str = typer.Option("ss", "--stage", help="'ss' (coarse structure), 'geometry' or 'material'."),
    model: Optional[Path] = typer.Option(
        None, "--model", help="Model folder to copy and train; default: the shipped demo model (left unchanged)."
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps on the sequences (default: 800)."),
    batch_size: Optional[int] = typer.Option(
        None, "--batch-size", help="Training batch (default: the stage's demo batch: ss 32, geometry 16, material 16)."
    ),
    lr: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default: 4e-4, cosine to 1e-4)."),
    sampling_steps: Optional[int] = typer.Option(
        None, "--sampling-steps", help="Flow steps per frame when scoring (default: 12)."
    ),
    seed: int = typer.Option(0, "--seed", help="Training and sampling seed."),
    work: Optional[Path] = typer.Option(
        None, "--work", help="Keep the trained copy, its latents and the run here (a new folder; default: removed)."
    ),
    json_out: Optional[Path] = typer.Option(
        None, "--json", help="Also write the report (per sequence, per kind, the loss curve) as JSON to this file."
    ),
    device: str = typer.Option("cpu", "--device", help="'cpu' or 'cuda'."),
) -> None:
    """The fit check: train a copy of one stage briefly on DATASET and score it on those same sequences, per
    phenomenon. A design whose stage cannot fit 16 of its own training sequences will not learn from 720."""
    from helix4d.train.fit import FitSettings, format_fit, run_fit

    given = {"steps": steps, "batch_size": batch_size, "lr": lr, "sampling_steps": sampling_steps}
    settings = FitSettings(stage=stage, seed=seed, device=device, **{k: v for k, v in given.items() if v is not None})
    if json_out is not None:
        check_report_path(json_out, inputs=(dataset, model))
    with evaluation_progress() as bar:  # run_fit checks --work before any compute
        task = bar.add_task("fit", total=None)
        report = run_fit(
            dataset,
            settings,
            model,
            work,
            lambda what, done, total: bar.update(task, description=what, completed=done, total=total),
        )
    if json_out is not None:
        write_report(json_out, report.to_dict(), inputs=(dataset, model))
    typer.echo(format_fit(report))


@eval_app.command("ablate")
def ablate_command(
    dataset: Path = typer.Argument(
        ..., help="Dataset folder with ground truth (from `helix4d data synth` / `data build`)."
    ),
    model: Optional[Path] = typer.Option(None, "--model", help="Model folder; default: the shipped demo model."),
    sequences: Optional[int] = typer.Option(None, "--sequences", help="Use the first N sequences (default: all)."),
    frames: Optional[int] = typer.Option(
        None,
        "--frames",
        help="Use the first F frames of each sequence (default: all); their images are framed over the whole "
        "sequence, as its ground truth is.",
    ),
    steps: Optional[int] = typer.Option(None, "--steps", help="Sampling steps per stage (default: the model's)."),
    seed: int = typer.Option(0, "--seed", help="Seed shared by every variant, so all start from the same noise."),
    variants: str = typer.Option(
        "",
        "--variants",
        help="Comma-separated subset of full,no-anchor,no-rope4d,full-attention,per-frame (default: all).",
    ),
    protocol: str = typer.Option("ours", "--protocol", help="Metric protocol: 'ours' or 'actionbench' (see evaluate)."),
    no_align: bool = typer.Option(False, "--no-align", help="Score the meshes as generated: no normalisation, no ICP."),
    points: Optional[int] = typer.Option(None, "--points", help="Surface samples per frame (default: the protocol's)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON (per-sequence rows and per-kind means) instead."),
    device: str = typer.Option("auto", "--device", help="'auto', 'cpu' or 'cuda'."),
) -> None:
    """The paper's ablations with one model: full method, no anchor, no 4D RoPE, full attention, per-frame."""
    import json

    from helix4d.eval.ablate import run_ablation, variants_by_name
    from helix4d.eval.protocols import make_protocol

    chosen = variants_by_name([v.strip() for v in variants.split(",") if v.strip()])
    with evaluation_progress() as bar:
        task = bar.add_task("ablation", total=None)
        report = run_ablation(
            dataset,
            model,
            sequences,
            frames,
            steps,
            seed,
            device,
            make_protocol(protocol, not no_align, points, device),
            chosen,
            lambda what, done, total: bar.update(task, description=what, completed=done, total=total),
        )
    typer.echo(json.dumps(report.to_json(), indent=1) if json_out else report.table())
