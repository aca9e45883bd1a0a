"""The ``lamap`` command: a thin layer that parses, validates and calls :mod:`lamap`.

User mistakes (:class:`lamap.errors.LamapError`) become one line on stderr and exit
code 2; nothing else is done here.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated

import typer

from lamap.cli.progress import Bars
from lamap.cli.types import parse_date, parse_device, parse_size
from lamap.errors import LamapError
from lamap.runtime.progress import stderr_lines

__all__ = ["app", "main"]

_default_showwarning = warnings.showwarning

app = typer.Typer(
    name="lamap",
    help=(
        "Leaf Area Index maps at 10 m from Sentinel-1 and Sentinel-2, from a field to a "
        "continent, including under clouds.\n\n"
        "Example, fully offline:\n\n"
        "  lamap demo --out demo-world\n\n"
        "  lamap map --catalog demo-world --bbox 5.95,48.66,6.05,48.74 --date 2024-06-15 "
        "--out lai.zarr"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Directory to write the world (or family) into.")],
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same bytes.")] = 0,
    size: Annotated[
        int | None,
        typer.Option(help="Edge of the world in 10-m pixels (multiple of 4; default 2048, "
                     "768 in a family).", parser=parse_size),
    ] = None,
    days: Annotated[
        int | None, typer.Option(help="Length of the time series in days (default 120, 75 "
                                 "in a family).")
    ] = None,
    start: Annotated[
        dt.date, typer.Option(help="First day (YYYY-MM-DD).", parser=parse_date)
    ] = dt.date(2024, 4, 1),
    family: Annotated[
        int | None,
        typer.Option(help="Write N different worlds (places, seasons, clouds, fields, crops) "
                     "as OUT/world-NN plus OUT/family.json; --seed seeds the family."),
    ] = None,
    holdout: Annotated[
        bool, typer.Option(help="With --family: held-out places, year and seeds.")
    ] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing world at --out.")] = False,
) -> None:
    """Generate the offline Sentinel-1/Sentinel-2 demo world (COGs + STAC + truth).

    Example: lamap demo --out demo-world --size 1024 --days 60; a family to train on:
    lamap demo --family 8 --seed 1 --out family
    """
    if family is not None:
        _demo_family(out, family, seed, size, days, holdout, overwrite)
        return
    from lamap.synthetic.world import WorldSpec, generate_world

    spec = WorldSpec(seed=seed, size=size or 2048, days=days or 120, start=start)
    started = time.perf_counter()
    with Bars("generating world") as bars:
        world = generate_world(out, spec, overwrite=overwrite, progress=bars)
    elapsed = time.perf_counter() - started
    w, s, e, n = world.bbox
    typer.echo(
        f"world written to {world.root} in {elapsed:.1f} s: {spec.size}x{spec.size} px, "
        f"{len(world.s2_dates)} S2 dates, {len(world.s1_dates)} S1 dates, "
        f"bbox {w:.4f},{s:.4f},{e:.4f},{n:.4f}, {_du(world.root)}"
    )


def _demo_family(out: Path, n: int, seed: int, size: int | None, days: int | None,
                 holdout: bool, overwrite: bool) -> None:
    from lamap.synthetic.family import FAMILY_DAYS, FAMILY_SIZE, family_specs, generate_family

    specs = family_specs(n, seed, size=size or FAMILY_SIZE, days=days or FAMILY_DAYS,
                         holdout=holdout)
    started = time.perf_counter()
    with Bars("generating worlds") as bars:
        worlds = generate_family(out, specs, overwrite=overwrite, progress=bars)
    typer.echo(f"{len(worlds)} worlds written to {out} in {time.perf_counter() - started:.1f} s "
               f"({_du(out)}), listed in {out / 'family.json'}")


@app.command()
def serve(
    world: Annotated[Path, typer.Argument(help="A world directory made by `lamap demo`.")],
) -> None:
    """Serve a world's STAC items through a local STAC API on 127.0.0.1 until Ctrl-C.

    Example: lamap serve demo-world
    """
    from lamap.catalog.local import load_world, world_server

    loaded = load_world(world)
    with world_server(loaded) as server:
        typer.echo(f"STAC API for {loaded.root} at {server.url} (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            typer.echo("stopped")


@app.command("map")
def map_(
    bbox: Annotated[str, typer.Option(help="Area as W,S,E,N in degrees (lon/lat).")],
    date: Annotated[dt.date, typer.Option(help="The date to map (YYYY-MM-DD).", parser=parse_date)],
    out: Annotated[str, typer.Option(help="The LAI Zarr store (created on first use).")],
    catalog: Annotated[
        str,
        typer.Option(help="planetary-computer, earth-search, a STAC API URL or a demo world."),
    ] = "planetary-computer",
    model: Annotated[
        Path | None, typer.Option(help="Checkpoint from `lamap train` (default: demo weights).")
    ] = None,
    grid: Annotated[
        str | None, typer.Option(help="Output grid of a new store: europe, utmNNn, or a .json.")
    ] = None,
    crs: Annotated[
        str | None, typer.Option(help="CRS of a new custom grid, e.g. EPSG:32632.")
    ] = None,
    resolution: Annotated[float | None, typer.Option(help="Pixel size in metres.")] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address (default: $DASK_SCHEDULER_ADDRESS or local)."),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.", parser=parse_device)] = "auto",
    dashboard_address: Annotated[
        str, typer.Option(help="Where the local Dask dashboard listens.")
    ] = "127.0.0.1:8787",
    lookback: Annotated[int, typer.Option(help="Days to look back for S2 t-2 and t-1.")] = 20,
    s1_tolerance: Annotated[
        int, typer.Option(help="Max days between an S2 step and its S1 pass.")
    ] = 6,
    precision: Annotated[
        str,
        typer.Option(help="Network arithmetic: auto (the checkpoint's training precision "
                     "where the device has it natively), float32 or bfloat16."),
    ] = "auto",
    dry_run: Annotated[
        bool,
        typer.Option(help="Plan only: print tiles, tiles without input and why, items per "
                     "tile and pixels; read no pixel, change nothing."),
    ] = False,
) -> None:
    """Map LAI over a bbox for one date into a Zarr store.

    Example (offline demo): lamap map --catalog demo-world --bbox 5.96,48.67,6.04,48.73
    --date 2024-05-20 --out lai.zarr
    """
    from lamap.mapping import MapOptions, choose_grid, map_lai, plan_map
    from lamap.runtime import ClusterSpec

    chosen = choose_grid(grid, crs, resolution)
    if dry_run:
        summary = plan_map(
            bbox, date, out, catalog=catalog, grid=chosen,
            options=MapOptions(lookback_days=lookback, s1_tolerance_days=s1_tolerance),
            progress=stderr_lines, model=model,
        )
        typer.echo("\n".join(summary.lines()))
        return
    cluster = ClusterSpec(
        scheduler=scheduler,
        workers=workers,
        dashboard_address=dashboard_address,
        gpu_workers=device == "cuda",
    )
    options = MapOptions(lookback_days=lookback, s1_tolerance_days=s1_tolerance, device=device,
                         precision=precision)  # fmt: skip
    with Bars("mapping") as bars:
        report = map_lai(
            bbox,
            date,
            out,
            catalog=catalog,
            model=model,
            grid=chosen,
            cluster=cluster,
            options=options,
            progress=bars,
        )
    typer.echo(
        f"{report.date}: {len(report.mapped)} tiles mapped, {len(report.skipped)} already done, "
        f"{len(report.no_input)} without input, {len(report.failed)} failed, "
        f"in {report.seconds:.1f} s -> {report.store}"
    )
    for tile_id, reason in report.no_input.items():
        typer.echo(f"  {tile_id}: no input: {reason}")
    for tile_id, reason in report.failed.items():
        typer.echo(f"  {tile_id}: failed: {reason}")
    if report.failed:
        typer.echo(
            f"lamap: error: {len(report.failed)} tiles failed (recorded in the store); "
            "rerun the same command to retry them",
            err=True,
        )
        raise SystemExit(1)


@app.command()
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
    patch: Annotated[int, typer.Option(help="Patch edge in pixels.")] = 256,
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
    epochs: Annotated[int | None, typer.Option(help="End-to-end epochs (overrides).")] = None,
    epochs_pretrain: Annotated[
        int | None, typer.Option(help="Epochs of each pre-training stage (overrides).")
    ] = None,
    epochs_sigma: Annotated[
        int | None, typer.Option(help="Epochs of the spread head alone (overrides).")
    ] = None,
    cloudy_weight: Annotated[
        float | None, typer.Option(help="Loss weight of samples with a cloudy past.")
    ] = None,
    lr: Annotated[
        float | None, typer.Option(help="Learning rate of every stage (overrides; e.g. "
                                   "lower it to fine-tune with --init).")
    ] = None,
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

    if preset not in {"full", "cpu-demo"}:
        raise typer.BadParameter(f"--preset {preset!r}: use full or cpu-demo")
    get_architecture(arch)  # an unknown name is a clear error before any work
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
            progress=bars,
        )
    typer.echo(f"checkpoint written to {run.checkpoint} (training cache {run.cache})")


@app.command()
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
        int | None, typer.Option(help="At most this many patches per split.")
    ] = None,
) -> None:
    """Score models side by side, their parts and the baselines per split (Markdown + CSV).

    Example: lamap evaluate --model model.pt --model li2025.pt --cache model.cache
    --csv metrics.csv; on unseen worlds: lamap evaluate --model model.pt --world heldout
    --fit-cache model.cache --by landcover,gap,lai,s1
    """
    from lamap.train.breakdown import parse_dimensions
    from lamap.train.run import evaluate_checkpoint

    with Bars("building the worlds' cache") as bars:
        report = evaluate_checkpoint(
            model, cache, worlds=world or [], fit_cache=fit_cache, by=parse_dimensions(by),
            out_csv=csv, baselines=baselines, max_patches=max_patches, progress=bars)
    typer.echo(report)


@app.command()
def bench(
    world: Annotated[
        Path | None, typer.Option(help="A demo world (default: generate a temporary one).")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="Checkpoint (default: demo weights).")] = None,
    block: Annotated[int, typer.Option(help="Shard and tile edge in px (europe: 1000).")] = 1000,
    tiles: Annotated[int, typer.Option(help="Tiles (blocks) to map.")] = 2,
    workers: Annotated[int, typer.Option(help="Local worker processes.")] = 2,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.", parser=parse_device)] = "cpu",
    size: Annotated[int, typer.Option(help="Edge of the generated world.", parser=parse_size)] = (
        2048
    ),
    peer: Annotated[bool, typer.Option(help="Also run the naive peer.")] = True,
    precision: Annotated[
        str, typer.Option(help="Network arithmetic of lamap's rows: auto, float32, bfloat16.")
    ] = "auto",
    plan_only: Annotated[
        bool, typer.Option(help="Plan and build tiles of a synthetic continental catalog.")
    ] = False,
    plan_tiles: Annotated[
        str, typer.Option(help="With --plan-only: tile counts, comma-separated.")
    ] = "100,1000,10000",
    whole: Annotated[
        bool, typer.Option(help="With --plan-only: also plan the whole europe grid.")
    ] = False,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures as JSON.")
    ] = None,
) -> None:
    """Measure where a map's time goes (model, inputs, end to end, a naive peer, tasks).

    Example: lamap bench --tiles 2 --workers 2; lamap bench --plan-only --whole
    """
    import json

    say = stderr_lines
    if plan_only:
        from lamap.bench_plan import plan_table, rows_as_dicts, run_plan_bench

        counts = tuple(int(n) for n in plan_tiles.split(","))
        out = run_plan_bench(counts, whole=whole, progress=say)
        typer.echo(plan_table(out))
        if json_out:
            json_out.write_text(json.dumps(rows_as_dicts(out), indent=1))
        return
    from lamap.bench import report_as_dict, run_bench, table

    report = run_bench(
        world=str(world) if world else None, checkpoint=str(model) if model else None,
        block=block, tiles=tiles, workers=workers, device=device, size=size, peer=peer,
        precision=precision, progress=say,
    )  # fmt: skip
    typer.echo(table(report))
    if json_out:
        json_out.write_text(json.dumps(report_as_dict(report), indent=1))


@app.command()
def export(
    store: Annotated[str, typer.Argument(help="The LAI Zarr store (path or URL).")],
    out: Annotated[Path, typer.Option(help="The Cloud-Optimized GeoTIFF to write (.tif).")],
    date: Annotated[
        dt.date, typer.Option(help="The date to export (YYYY-MM-DD).", parser=parse_date)
    ],
    bbox: Annotated[
        str | None,
        typer.Option(help="Area as W,S,E,N in degrees (default: the tiles mapped that date)."),
    ] = None,
) -> None:
    """Export one date's LAI as a Cloud-Optimized GeoTIFF (float32, NaN nodata).

    Example: lamap export lai.zarr --out lai.tif --date 2024-05-20
    """
    from lamap.export import export_cog

    written = export_cog(store, out, date, bbox=bbox)
    typer.echo(f"LAI of {date} written to {written}")


@app.command()
def quicklook(
    store: Annotated[str, typer.Argument(help="The LAI Zarr store (path or URL).")],
    out: Annotated[Path, typer.Option(help="The PNG to write.")],
    date: Annotated[
        dt.date, typer.Option(help="The date to show (YYYY-MM-DD).", parser=parse_date)
    ],
    bbox: Annotated[
        str | None,
        typer.Option(help="Area as W,S,E,N in degrees (default: the tiles mapped that date)."),
    ] = None,
    max_size: Annotated[int, typer.Option(help="Longest edge of the map in pixels.")] = 1024,
) -> None:
    """Draw one date's LAI as a colour PNG with a legend.

    Example: lamap quicklook lai.zarr --out lai.png --date 2024-05-20
    """
    from lamap.export import quicklook as draw

    written = draw(store, out, date, bbox=bbox, max_size=max_size)
    typer.echo(f"quick-look of {date} written to {written}")


@app.command("info")
def info_(
    store: Annotated[str, typer.Argument(help="The LAI Zarr store (path or URL).")],
) -> None:
    """Describe a store: grid, dates, tiles done per date, model.

    Example: lamap info lai.zarr
    """
    from lamap.export import info

    typer.echo(info(store))


def _du(path: Path) -> str:
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return f"{size / 2**20:.0f} MiB"


def _show_warning(message: Warning | str, category: type[Warning], *_args: object,
                  **_kwargs: object) -> None:
    """Print lamap's own warnings as one plain line; others the usual way."""
    from lamap.errors import LamapWarning

    if issubclass(category, LamapWarning):
        typer.echo(f"lamap: warning: {message}", err=True)
    else:
        _default_showwarning(message, category, *_args, **_kwargs)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    """Run the command line; user errors become one line and exit code 2."""
    warnings.showwarning = _show_warning
    try:
        app(args=argv, standalone_mode=False)
    except LamapError as err:
        typer.echo(f"lamap: error: {err}", err=True)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        typer.echo("lamap: interrupted", err=True)
        raise SystemExit(130) from None
    except Exception as err:  # click usage errors and aborts
        failure, abort = _click_errors()
        if isinstance(err, failure):
            assert hasattr(err, "exit_code") and hasattr(err, "format_message")
            hint = " (see lamap --help)" if err.exit_code == 2 else ""
            typer.echo(f"lamap: error: {err.format_message()}{hint}", err=True)
            raise SystemExit(err.exit_code) from None
        if isinstance(err, abort):
            raise SystemExit(1) from None
        raise


def _click_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """Return the usage-error and abort classes of the click that typer runs on.

    typer ≥ 0.29 bundles its own copy of click (``typer._click``), whose exceptions are not
    the installed click's: take them from typer's own ``BadParameter`` and ``Abort``, and
    keep the installed click's for older typers that use it.
    """
    import click

    bundled = sys.modules[typer.BadParameter.__module__]
    failures = (bundled.ClickException, click.exceptions.ClickException)
    aborts = (typer.Abort, click.exceptions.Abort)
    return failures, aborts


if __name__ == "__main__":  # pragma: no cover
    main()
