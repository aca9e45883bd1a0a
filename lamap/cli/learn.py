"""``lamap train`` and ``lamap evaluate``: the commands that learn and score models.

Registered on :data:`lamap.cli.main.app`; like every command, they parse, validate and call
:mod:`lamap.train`, nothing more.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from lamap.cli.progress import Bars
from lamap.cli.types import (
    existing_file,
    output_file,
    output_folder,
    parse_date,
    parse_device,
    parse_patch,
    parse_weight,
)

__all__ = ["evaluate", "train"]


def train(
    out: Annotated[Path, typer.Option(help="Checkpoint to write (model.pt).")],
    bbox: Annotated[
        str | None, typer.Option(help="Training area W,S,E,N (default on a demo world: all).")
    ] = None,
    start: Annotated[
        dt.date | None, typer.Option(help="First target day (YYYY-MM-DD).", parser=parse_date)
    ] = None,
    end: Annotated[
        dt.date | None, typer.Option(help="Last target day (YYYY-MM-DD).", parser=parse_date)
    ] = None,
    catalog: Annotated[
        list[str] | None,
        typer.Option(help="planetary-computer, a STAC API URL or a demo world; repeat it, or "
                     "give a family (lamap demo --family), to train on several worlds."),
    ] = None,
    holdout_worlds: Annotated[
        str | None,
        typer.Option(help="With several worlds: comma-separated worlds (index or directory "
                     "name) held out whole as unique areas."),
    ] = None,
    cache: Annotated[
        Path | None, typer.Option(help="Training cache directory (default: OUT.cache).")
    ] = None,
    patch: Annotated[
        int, typer.Option(help="Patch edge in pixels (a multiple of 4).", parser=parse_patch)
    ] = 256,
    preset: Annotated[
        str, typer.Option(help="full (MODEL.md, 100 epochs, GPU) or cpu-demo.")
    ] = "full",
    arch: Annotated[
        str, typer.Option(help="Architecture: lnb-fused (MODEL.md) or li2025 (Li et al. 2025).")
    ] = "lnb-fused",
    init: Annotated[
        Path | None,
        typer.Option(help="Start from this checkpoint of --arch (e.g. to add a spread head)."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(help="End-to-end epochs (overrides).", min=0)
    ] = None,
    epochs_pretrain: Annotated[
        int | None, typer.Option(help="Epochs of each pre-training stage (overrides).", min=0)
    ] = None,
    epochs_sigma: Annotated[
        int | None, typer.Option(help="Epochs of the spread head alone (overrides).", min=0)
    ] = None,
    cloudy_weight: Annotated[
        float | None,
        typer.Option(help="Loss weight of samples with a cloudy past.", parser=parse_weight),
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate of every stage (overrides; e.g. "
                                   "lower it to fine-tune with --init).")
    ] = None,
    average_epochs: Annotated[
        int | None,
        typer.Option(help="Keep the mean weights of the last N end-to-end epochs "
                     "(BatchNorm re-estimated) instead of the best-validated epoch.", min=0),
    ] = None,
    sharpen_20m: Annotated[
        int,
        typer.Option(help="Sharpen S2's 20-m bands with its 10-m bands in windows of this "
                     "half-width (pixels) before SNAP, label included; 0: off (the paper's "
                     "label).", min=0, max=16),
    ] = 0,
    resume: Annotated[bool, typer.Option(help="Continue from OUT's state file.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.", parser=parse_device)] = "auto",
) -> None:
    """Train a registered model on the same cubes `lamap map` uses, stage by stage.

    Example (the shipped demo weights): lamap train --catalog demo-world
    --out demo_model.pt --preset cpu-demo --device cpu; the second method:
    lamap train --arch li2025 --catalog demo-world --out demo_li2025.pt --preset cpu-demo;
    on a family of worlds: lamap train --catalog family --holdout-worlds 0 --out model.pt
    """
    from lamap.model import get_architecture
    from lamap.train.run import train_from_catalog
    from lamap.train.state import state_path

    if preset not in {"full", "cpu-demo"}:
        raise typer.BadParameter(f"--preset {preset!r}: use full or cpu-demo")
    get_architecture(arch)  # an unknown name is a clear error before any work
    output_file(out, "--out")
    if cache is not None:
        output_folder(cache, "--cache")
    if resume and not state_path(out).is_file():
        raise typer.BadParameter(
            f"--resume: no state file {state_path(out)} of an earlier run with --out {out}; "
            "drop --resume to start a new run"
        )
    overrides: dict[str, object] = {"device": device}
    if epochs is not None:
        overrides["epochs"] = epochs
    if epochs_pretrain is not None:
        overrides |= {"epochs_enc1": epochs_pretrain, "epochs_enc2": epochs_pretrain}
    if epochs_sigma is not None:
        overrides["epochs_sigma"] = epochs_sigma
    if cloudy_weight is not None:
        overrides["cloudy_weight"] = cloudy_weight
    if lr is not None:
        overrides["lr"] = lr
    if average_epochs is not None:
        overrides["average_epochs"] = average_epochs
    with Bars("training") as bars:
        run = train_from_catalog(
            catalog or ["planetary-computer"],
            bbox,
            start,
            end,
            out,
            arch=arch,
            init=init,
            cache_dir=cache,
            patch=patch,
            preset=preset,
            resume=resume,
            config_overrides=overrides,
            holdout_worlds=[w for w in (holdout_worlds or "").split(",") if w],
            sharpen_20m=sharpen_20m,
            progress=bars,
        )
    typer.echo(f"checkpoint written to {run.checkpoint} (training cache {run.cache})")
    if not run.complete:
        typer.echo(f"lamap: stopped at the {preset} preset's time budget before every stage "
                   "ran (the checkpoint holds the best epoch so far, without the calibrated "
                   "spread): rerun the same command with --resume to finish", err=True)
        raise typer.Exit(1)


def evaluate(
    model: Annotated[
        list[Path],
        typer.Option(help="Checkpoint from `lamap train`; repeat to score models side by side."),
    ],
    cache: Annotated[
        Path | None, typer.Option(help="Their training cache; with --world, where the "
                                  "worlds' cache goes (default: WORLD.eval-cache).")
    ] = None,
    world: Annotated[
        list[Path] | None,
        typer.Option(help="A demo world or family never trained on, scored whole as unique; "
                     "repeat for more."),
    ] = None,
    fit_cache: Annotated[
        Path | None, typer.Option(help="With --world: the cache whose train split fits the "
                                  "regressions (default: the model's training cache).")
    ] = None,
    by: Annotated[
        str | None, typer.Option(help="Break gap filling down by some of: landcover, gap, "
                                 "lai, s1, world (comma-separated).")
    ] = None,
    csv: Annotated[Path | None, typer.Option(help="Also write the metrics as CSV.")] = None,
    baselines: Annotated[bool, typer.Option(help="Fit and score the regressions too.")] = True,
    max_patches: Annotated[
        int | None, typer.Option(help="At most this many patches per split.", min=1)
    ] = None,
) -> None:
    """Score models side by side, their parts and the baselines per split (Markdown + CSV).

    Example: lamap evaluate --model model.pt --model li2025.pt --cache model.cache
    --csv metrics.csv; on unseen worlds: lamap evaluate --model model.pt --world heldout
    --fit-cache model.cache --by landcover,gap,lai,s1
    """
    from lamap.train.breakdown import parse_dimensions
    from lamap.train.run import evaluate_checkpoint
    from lamap.weights import resolve_model

    model = [Path(resolve_model(path)) for path in model]  # li2025: its shipped weights
    for path in model:
        existing_file(path, "--model")
    if csv is not None:
        output_file(csv, "--csv")
    with Bars("building the worlds' cache") as bars:
        report = evaluate_checkpoint(
            model, cache, worlds=world or [], fit_cache=fit_cache, by=parse_dimensions(by),
            out_csv=csv, baselines=baselines, max_patches=max_patches, progress=bars)
    typer.echo(report)
