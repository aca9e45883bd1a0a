"""Pixel windows of a grid: integer rectangles that a tile, a shard, a halo or a read covers."""

from __future__ import annotations

from dataclasses import dataclass

from lamap.errors import GridError
from lamap.grid._checks import ceil_div, is_int

__all__ = ["Window"]


@dataclass(frozen=True)
class Window:
    """A non-empty rectangle of grid pixels, ``[row_start, row_stop) x [col_start, col_stop)``.

    Indices count from the grid's upper-left pixel. Starts may be negative and stops may
    exceed the grid shape (a window grown by a halo at the grid edge); such a window cannot
    be turned into array slices.

    Parameters
    ----------
    row_start, row_stop, col_start, col_stop : int
        Half-open pixel ranges with ``start < stop``.

    Raises
    ------
    GridError
        If an index is not an integer or a range is empty.
    """

    row_start: int
    row_stop: int
    col_start: int
    col_stop: int

    def __post_init__(self) -> None:
        """Validate and convert to Python ints."""
        for name in ("row_start", "row_stop", "col_start", "col_stop"):
            value = getattr(self, name)
            if not is_int(value):
                raise GridError(f"window {name} {value!r} is not an integer pixel index")
            object.__setattr__(self, name, int(value))
        if self.row_stop <= self.row_start or self.col_stop <= self.col_start:
            raise GridError(f"{self} is empty: each stop must exceed its start")

    @classmethod
    def from_slices(cls, rows: slice, cols: slice) -> Window:
        """Return the window of ``(rows, cols)`` slices with explicit starts and stops.

        This reads an odc-geo ROI (e.g. ``GeoboxTiles.roi[row, col]``) back into a Window.
        """
        return cls(rows.start, rows.stop, cols.start, cols.stop)

    @property
    def height(self) -> int:
        """Number of rows."""
        return self.row_stop - self.row_start

    @property
    def width(self) -> int:
        """Number of columns."""
        return self.col_stop - self.col_start

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return (self.height, self.width)

    def to_slices(self) -> tuple[slice, slice]:
        """Return ``(rows, cols)`` slices for indexing a grid-shaped array.

        Raises
        ------
        GridError
            If the window starts before the grid (negative index), which NumPy would
            silently read from the other end.
        """
        if self.row_start < 0 or self.col_start < 0:
            raise GridError(
                f"{self} starts before the grid, so it cannot index an array: "
                "clip it to the grid first (Window.intersection with grid.window)"
            )
        return (slice(self.row_start, self.row_stop), slice(self.col_start, self.col_stop))

    def intersection(self, other: Window) -> Window | None:
        """Return the overlap of two windows, or None if they do not overlap."""
        rows = (max(self.row_start, other.row_start), min(self.row_stop, other.row_stop))
        cols = (max(self.col_start, other.col_start), min(self.col_stop, other.col_stop))
        if rows[0] >= rows[1] or cols[0] >= cols[1]:
            return None
        return Window(rows[0], rows[1], cols[0], cols[1])

    def contains(self, other: Window) -> bool:
        """Return whether ``other`` lies entirely inside this window."""
        return self.intersection(other) == other

    def grow(self, pixels: int) -> Window:
        """Return the window enlarged by ``pixels`` on every side (not clipped)."""
        if not is_int(pixels) or pixels < 0:
            raise GridError(f"halo {pixels!r} must be a non-negative number of pixels")
        return self._moved(-pixels, pixels, -pixels, pixels)

    def snap(self, edge: int) -> Window:
        """Return the smallest window of whole ``edge``-sized blocks (counted from 0) holding it."""
        return Window(
            (self.row_start // edge) * edge,
            ceil_div(self.row_stop, edge) * edge,
            (self.col_start // edge) * edge,
            ceil_div(self.col_stop, edge) * edge,
        )

    def is_aligned(self, edge: int, shape: tuple[int, int] | None = None) -> bool:
        """Return whether the window's edges fall on multiples of ``edge``.

        Parameters
        ----------
        edge : int
            Block edge in pixels.
        shape : tuple of int, optional
            Grid shape; a stop equal to it counts as aligned (partial edge blocks).
        """
        rows, cols = shape if shape is not None else (None, None)
        return (
            self.row_start % edge == 0
            and self.col_start % edge == 0
            and (self.row_stop % edge == 0 or self.row_stop == rows)
            and (self.col_stop % edge == 0 or self.col_stop == cols)
        )

    def split(self, edge: int) -> list[Window]:
        """Return the parts of this window in each ``edge``-sized block (counted from 0), row-major.

        Parts at the window's sides may be partial.
        """
        outer = self.snap(edge)
        blocks = (
            Window(row, row + edge, col, col + edge)
            for row in range(outer.row_start, outer.row_stop, edge)
            for col in range(outer.col_start, outer.col_stop, edge)
        )
        return [part for block in blocks if (part := self.intersection(block)) is not None]

    def relative_to(self, outer: Window) -> Window:
        """Return this window in the pixel indices of ``outer`` (e.g. a tile inside its halo)."""
        return self._moved(-outer.row_start, -outer.row_start, -outer.col_start, -outer.col_start)

    def _moved(self, top: int, bottom: int, left: int, right: int) -> Window:
        return Window(
            self.row_start + top,
            self.row_stop + bottom,
            self.col_start + left,
            self.col_stop + right,
        )

    def __str__(self) -> str:
        """Return ``"window rows a:b, cols c:d"``."""
        return (
            f"window rows {self.row_start}:{self.row_stop}, cols {self.col_start}:{self.col_stop}"
        )
