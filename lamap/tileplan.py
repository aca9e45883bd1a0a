"""Plans of many tiles against one search result, through a spatial index.

A continental search returns tens of thousands of scenes; planning each of 75,000 tiles
against all of them is quadratic. :class:`SceneIndex` puts the scenes' footprints into two
shapely ``STRtree`` s once; each tile then plans with only the scenes that intersect it,
which gives exactly the plan of the whole result (the planner ignores scenes that do not
overlap the tile) at a cost independent of the catalog's size.

:func:`iter_plans` yields plans lazily, one tile at a time, so a run can start computing
the first tiles while later ones are not planned yet. :func:`summarise` turns plans into
the dry-run report of ``lamap map --dry-run``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import shapely

from lamap.catalog import S1Scene, S2Scene, SearchResult, as_geometry
from lamap.feature_spec import FeatureSpec
from lamap.grid import Tile
from lamap.timesteps import (
    DEFAULT_LOOKBACK_DAYS,
    DEFAULT_MIN_COVERAGE,
    DEFAULT_S1_TOLERANCE_DAYS,
    NoInput,
    TimeSteps,
    plan_time_steps,
)

__all__ = ["PlanOptions", "PlanSummary", "SceneIndex", "TilePlan", "iter_plans", "summarise"]


@dataclass(frozen=True)
class PlanOptions:
    """The planner's options (see :func:`lamap.timesteps.plan_time_steps`).

    The Sentinel-1 choice (``s1_steps``, ``s1_window_days``, ``s1_passes``) comes from the
    model's feature spec (:meth:`with_spec`).
    """

    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    s1_tolerance_days: int = DEFAULT_S1_TOLERANCE_DAYS
    min_coverage: float = DEFAULT_MIN_COVERAGE
    s1_steps: bool = True
    s1_window_days: int = 0
    s1_passes: int = 0

    def with_spec(self, spec: FeatureSpec) -> PlanOptions:
        """Return these options with the Sentinel-1 inputs the feature spec asks for."""
        return replace(self, s1_steps=spec.s1_at_steps, s1_window_days=spec.s1_window_days,
                       s1_passes=spec.s1_passes)


class SceneIndex:
    """The scenes of one search result, indexed by footprint.

    Parameters
    ----------
    s2, s1 : sequence
        Normalised scenes, in the order the planner should see them (the search result's).
    """

    def __init__(self, s2: Sequence[S2Scene], s1: Sequence[S1Scene]) -> None:
        self.s2 = tuple(s2)
        self.s1 = tuple(s1)
        self._s2_tree = shapely.STRtree([s.footprint for s in self.s2])
        self._s1_tree = shapely.STRtree([s.footprint for s in self.s1])

    @classmethod
    def from_result(cls, result: SearchResult) -> SceneIndex:
        """Index a :func:`lamap.catalog.search` result."""
        return cls(result.s2, result.s1)

    def __len__(self) -> int:
        return len(self.s2) + len(self.s1)

    def scenes_for(self, tile: Tile) -> tuple[tuple[S2Scene, ...], tuple[S1Scene, ...]]:
        """Return the S2 and S1 scenes whose footprints intersect the tile, in result order."""
        area = as_geometry(tile.lonlat_bounds().to_tuple())
        return _query(self._s2_tree, self.s2, area), _query(self._s1_tree, self.s1, area)


def _query(tree: shapely.STRtree, scenes: tuple[Any, ...], area: Any) -> tuple[Any, ...]:
    if not scenes:
        return ()
    hits = tree.query(area, predicate="intersects")
    return tuple(scenes[i] for i in sorted(int(h) for h in hits))


@dataclass(frozen=True)
class TilePlan:
    """One tile's plan and the scenes it may read (only those intersecting it).

    Attributes
    ----------
    tile : Tile
        The tile.
    steps : TimeSteps or NoInput
        What the planner chose, or why there is nothing to map.
    s2, s1 : tuple
        The scenes intersecting the tile (what its tasks need to read).
    """

    tile: Tile
    steps: TimeSteps | NoInput
    s2: tuple[S2Scene, ...] = ()
    s1: tuple[S1Scene, ...] = ()

    @property
    def has_input(self) -> bool:
        """Whether the planner found inputs for the tile."""
        return isinstance(self.steps, TimeSteps)

    def used_scenes(self) -> tuple[tuple[S2Scene, ...], tuple[S1Scene, ...]]:
        """Return only the scenes the plan uses (small enough to travel with every task)."""
        if not isinstance(self.steps, TimeSteps):
            return (), ()
        s2_ids, s1_ids = set(self.steps.s2_item_ids), set(self.steps.s1_item_ids)
        return (
            tuple(s for s in self.s2 if s.id in s2_ids),
            tuple(s for s in self.s1 if s.id in s1_ids),
        )

    @property
    def items(self) -> int:
        """Distinct items the plan reads (0 without input)."""
        if not isinstance(self.steps, TimeSteps):
            return 0
        return len(set(self.steps.s2_item_ids)) + len(set(self.steps.s1_item_ids))


def plan_tile(
    index: SceneIndex, tile: Tile, date: dt.date, options: PlanOptions = PlanOptions()
) -> TilePlan:
    """Plan one tile with the scenes of the index that intersect it."""
    s2, s1 = index.scenes_for(tile)
    steps = plan_time_steps(
        s2,
        s1,
        date,
        tile.lonlat_bounds().to_tuple(),
        lookback_days=options.lookback_days,
        s1_tolerance_days=options.s1_tolerance_days,
        min_coverage=options.min_coverage,
        tile_id=tile.id,
        s1_steps=options.s1_steps,
        s1_window_days=options.s1_window_days,
        s1_series_passes=options.s1_passes,
    )
    return TilePlan(tile, steps, s2, s1)


def iter_plans(
    index: SceneIndex, tiles: Iterable[Tile], date: dt.date, options: PlanOptions = PlanOptions()
) -> Iterator[TilePlan]:
    """Plan tiles one at a time, lazily, in the order given."""
    for tile in tiles:
        yield plan_tile(index, tile, date, options)


@dataclass
class PlanSummary:
    """What a run would do, without reading a pixel (``lamap map --dry-run``).

    Attributes
    ----------
    date : datetime.date
        The date planned.
    tiles : int
        Tiles planned (the bbox's tiles less those done).
    done : int
        Tiles already done in the store for the date (not planned again).
    planned : int
        Tiles with inputs.
    pixels : int
        Output pixels of the planned tiles.
    item_ids : set of str
        Distinct items the planned tiles read (``items`` counts them).
    items_per_tile : Counter
        How many tiles read how many items.
    no_input : dict
        Tile id → why it has no input.
    scenes : int
        Scenes in the search result.
    seconds : float
        Planning time (search excluded).
    """

    date: dt.date
    tiles: int = 0
    done: int = 0
    planned: int = 0
    pixels: int = 0
    item_ids: set[str] = field(default_factory=set, repr=False)
    items_per_tile: Counter[int] = field(default_factory=Counter)
    no_input: dict[str, str] = field(default_factory=dict)
    scenes: int = 0
    seconds: float = 0.0

    @property
    def items(self) -> int:
        """Distinct items the planned tiles read."""
        return len(self.item_ids)

    def add(self, plan: TilePlan) -> None:
        """Count one tile's plan."""
        self.tiles += 1
        if isinstance(plan.steps, NoInput):
            self.no_input[plan.tile.id] = plan.steps.reason
            return
        rows, cols = plan.tile.shape
        self.planned += 1
        self.pixels += rows * cols
        self.items_per_tile[plan.items] += 1
        self.item_ids.update(plan.steps.s2_item_ids, plan.steps.s1_item_ids)

    def lines(self, *, limit: int = 20) -> list[str]:
        """Return the report, one line each (the first ``limit`` tiles without input)."""
        spread = ", ".join(f"{n} items: {c}" for n, c in sorted(self.items_per_tile.items()))
        out = [
            f"{self.date}: {self.tiles + self.done} tiles, {self.done} already done, "
            f"{self.planned} to map ({self.pixels / 1e6:,.1f} Mpx), "
            f"{len(self.no_input)} without input",
            f"search: {self.scenes} scenes; the planned tiles read {self.items} distinct items",
            f"items per tile: {spread or 'none'}",
            f"planned in {self.seconds:.1f} s "
            f"({1e3 * self.seconds / max(1, self.tiles):.2f} ms per tile)",
        ]
        reasons = list(self.no_input.items())
        out += [f"  {tile_id}: no input: {why}" for tile_id, why in reasons[:limit]]
        if len(reasons) > limit:
            out.append(f"  … and {len(reasons) - limit} more tiles without input")
        return out


def summarise(plans: Iterable[TilePlan], date: dt.date) -> PlanSummary:
    """Count plans into a :class:`PlanSummary` (consumes the iterator, keeps no plan)."""
    summary = PlanSummary(date)
    for plan in plans:
        summary.add(plan)
    return summary
