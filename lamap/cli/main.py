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
from typing import Annotated, NoReturn

import typer

from lamap.cli import learn
from lamap.cli.progress import Bars
from lamap.cli.types import (
    output_file,
    output_folder,
    parse_address,
    parse_counts,
    parse_date,
    parse_device,
    parse_positive,
    parse_size,
)
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
    seed: Annotated[
        int, typer.Option(help="Random seed; the same seed gives the same bytes.", min=0)
    ] = 0,
    size: Annotated[
        int | None,
        typer.Option(help="Edge of the world in 10-m pixels (multiple of 4; default 2048, "
                     "768 in a family).", parser=parse_size),
    ] = None,
    days: Annotated[
        int | None, typer.Option(help="Length of the time series in days (default 120, 75 "
                                 "in a family).", min=15)
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

    output_folder(out, "--out")
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
        Path | None,
        typer.Option(help="Checkpoint from `lamap train`, or lnb-fused / li2025: their demo "
                          "weights (default: the fused model's)."),
    ] = None,
    grid: Annotated[
        str | None, typer.Option(help="Output grid of a new store: europe, utmNNn, or a .json.")
    ] = None,
    crs: Annotated[
        str | None, typer.Option(help="CRS of a new custom grid, e.g. EPSG:32632.")
    ] = None,
    resolution: Annotated[
        float | None, typer.Option(help="Pixel size in metres.", parser=parse_positive)
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address (default: $DASK_SCHEDULER_ADDRESS, dask "
                     "config 'scheduler-address', else a local cluster)."),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes.", min=1)] = None,
    device: Annotated[
        str, typer.Option(help="cpu, cuda, cuda:N or auto.", parser=parse_device)
    ] = "auto",
    dashboard_address: Annotated[
        str,
        typer.Option(help="Where the local Dask dashboard listens (127.0.0.1:PORT; 0: any).",
                     parser=parse_address),
    ] = "127.0.0.1:8787",
    lookback: Annotated[
        int, typer.Option(help="Days to look back for S2 t-2 and t-1.", min=2)
    ] = 20,
    s1_tolerance: Annotated[
        int, typer.Option(help="Max days between an S2 step and its S1 pass.", min=0)
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


app.command()(learn.train)
app.command()(learn.evaluate)


@app.command()
def bench(
    world: Annotated[
        Path | None, typer.Option(help="A demo world (default: generate a temporary one).")
    ] = None,
    model: Annotated[Path | None, typer.Option(help="Checkpoint (default: demo weights).")] = None,
    block: Annotated[
        int, typer.Option(help="Shard and tile edge in px (europe: 1000).", min=64)
    ] = 1000,
    tiles: Annotated[int, typer.Option(help="Tiles (blocks) to map.", min=1)] = 2,
    workers: Annotated[int, typer.Option(help="Local worker processes.", min=1)] = 2,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.", parser=parse_device)] = "cpu",
    size: Annotated[int, typer.Option(help="Edge of the generated world.", parser=parse_size)] = (
        2176
    ),
    peer: Annotated[bool, typer.Option(help="Also run the naive peer.")] = True,
    precision: Annotated[
        str, typer.Option(help="Network arithmetic of lamap's rows: auto, float32, bfloat16.")
    ] = "auto",
    plan_only: Annotated[
        bool, typer.Option(help="Plan and build tiles of a synthetic continental catalog.")
    ] = False,
    plan_tiles: Annotated[
        str, typer.Option(help="With --plan-only: tile counts, comma-separated.",
                          parser=parse_counts)
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

    if json_out is not None:
        output_file(json_out, "--json")
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
    out: Annotated[
        Path, typer.Option(help="The file to write: a .tif (cog) or a .zarr folder (zarr-v2).")
    ],
    date: Annotated[
        dt.date | None,
        typer.Option(help="The date to export (YYYY-MM-DD); zarr-v2: default all dates.",
                     parser=parse_date),
    ] = None,
    bbox: Annotated[
        str | None,
        typer.Option(help="Area as W,S,E,N in degrees (default: the date's mapped data)."),
    ] = None,
    format_: Annotated[
        str,
        typer.Option("--format", help="cog: a two-band GeoTIFF (lai, source) and its STAC "
                     "Item; zarr-v2: an unsharded Zarr v2 copy that GDAL < 3.13 reads."),
    ] = "cog",
) -> None:
    """Export LAI as a Cloud-Optimized GeoTIFF, or as Zarr v2 for GDAL and QGIS.

    Example: lamap export lai.zarr --out lai.tif --date 2024-05-20;
    lamap export lai.zarr --out lai_v2.zarr --format zarr-v2
    """
    if format_ == "zarr-v2":
        from lamap.export_zarr import export_zarr

        written = export_zarr(store, out, dates=[date] if date else None, bbox=bbox)
        typer.echo(f"LAI of {date or 'every date'} written to {written} (Zarr v2)")
        return
    if format_ != "cog":
        raise typer.BadParameter(f"--format {format_!r}: use cog or zarr-v2")
    if date is None:
        raise typer.BadParameter("--date is needed for a GeoTIFF (one date per file)")
    from lamap.export import export_cog

    output_file(out, "--out")
    written = export_cog(store, out, date, bbox=bbox)
    typer.echo(f"LAI of {date} written to {written} (STAC Item {written.with_suffix('.json')})")


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
    max_size: Annotated[
        int, typer.Option(help="Longest edge of the map in pixels.", min=16)
    ] = 1024,
) -> None:
    """Draw one date's LAI as a colour PNG with a legend.

    Example: lamap quicklook lai.zarr --out lai.png --date 2024-05-20
    """
    from lamap.export import quicklook as draw

    output_file(out, "--out")
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


@app.command()
def overviews(
    store: Annotated[str, typer.Argument(help="The LAI Zarr store (path or URL).")],
    rebuild: Annotated[
        bool, typer.Option(help="Update above every done tile, not only those lacking it.")
    ] = False,
    scheduler: Annotated[
        str | None,
        typer.Option(help="Dask scheduler address (default: $DASK_SCHEDULER_ADDRESS or local)."),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="Local worker processes.")] = None,
) -> None:
    """Build or update a store's multiscale pyramid (what lamap view draws); resumable.

    Example: lamap overviews lai.zarr
    """
    from lamap.runtime import ClusterSpec
    from lamap.store import LaiStore
    from lamap.store.overviews import build_overviews

    opened = LaiStore.open(store)
    cluster = ClusterSpec(scheduler=scheduler, workers=workers, dashboard_address="127.0.0.1:0")
    with Bars("overviews") as bars:
        report = build_overviews(opened, cluster=cluster, rebuild=rebuild, progress=bars)
    built = sum(report.built.values())
    typer.echo(f"overviews of {opened.url}: {report.levels} levels, {built} tiles updated, "
               f"{report.skipped} already up to date, {len(report.failed)} failed")  # fmt: skip
    for what, reason in report.failed.items():
        typer.echo(f"  {what}: failed: {reason}")
    if report.failed:
        typer.echo(f"lamap: error: {len(report.failed)} tiles failed; rerun the same command "
                   "to retry them", err=True)  # fmt: skip
        raise SystemExit(1)


@app.command()
def view(
    store: Annotated[str, typer.Argument(help="The LAI Zarr store (path or URL).")],
    port: Annotated[
        int, typer.Option(help="Port on 127.0.0.1 (0: a free one).", min=0, max=65535)
    ] = 0,
    bench: Annotated[
        int, typer.Option(help="Instead of serving: time this many tile requests and "
                          "measure the bytes of a whole-extent view, then exit.", min=0),
    ] = 0,
) -> None:
    """Serve a store as a web map on 127.0.0.1 (dates, legend, source, pixel time series).

    Needs the store's overviews (lamap overviews STORE). Example: lamap view lai.zarr
    """
    from lamap.view import view_store

    if bench:
        from lamap.store import LaiStore
        from lamap.view.bench import measure_view

        typer.echo("\n".join(measure_view(LaiStore.open(store), requests=bench).lines()))
        return
    with view_store(store, port=port) as server:
        for day, count in server.tiles.stale().items():
            typer.echo(f"lamap: warning: {count} done tiles of {day} have no overviews yet and "
                       f"show empty: run `lamap overviews {store}`", err=True)  # fmt: skip
        typer.echo(f"lamap view of {server.tiles.store.url}: {server.url} (Ctrl-C to stop)")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            typer.echo("stopped")


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


#: Operating-system errors that a path given on the command line causes.
_PATH_ERRORS = (
    FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError,
)


def main(argv: list[str] | None = None) -> None:
    """Run the command line; user errors become one line and exit code 2.

    lamap's own errors, the usage errors of typer/click and the file-system errors a path
    causes (a file where a folder belongs, no permission) each end as one
    ``lamap: error: …`` line on stderr, with exit code 2 and no traceback.
    """
    warnings.showwarning = _show_warning
    try:
        code = app(args=argv, standalone_mode=False)
    except LamapError as err:
        _fail(str(err))
    except _PATH_ERRORS as err:
        where = f": {err.filename}" if err.filename else ""
        _fail(f"{err.strerror or err}{where}; check the path and its permissions")
    except KeyboardInterrupt:
        typer.echo("lamap: interrupted", err=True)
        raise SystemExit(130) from None
    except Exception as err:  # click usage errors and aborts
        failure, abort = _click_errors()
        if isinstance(err, failure):
            assert hasattr(err, "exit_code") and hasattr(err, "format_message")
            hint = " (see lamap --help)" if err.exit_code == 2 else ""
            typer.echo(f"lamap: error: {' '.join(err.format_message().split())}{hint}",
                       err=True)  # fmt: skip
            raise SystemExit(err.exit_code) from None
        if isinstance(err, abort):
            raise SystemExit(1) from None
        raise
    if code == 130:  # typer >= 0.29 turns Ctrl-C into a returned exit code
        typer.echo("lamap: interrupted", err=True)
    if isinstance(code, int) and code:
        raise SystemExit(code)


def _fail(message: str) -> NoReturn:
    """Print one error line (newlines folded) and exit with code 2."""
    typer.echo(f"lamap: error: {' '.join(message.split())}", err=True)
    raise SystemExit(2) from None


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
