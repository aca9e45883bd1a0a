"""The work of one output block in three tasks: features, inference, write.

A block is one shard of the store (1000 px on the ``europe`` grid). Its first task reads
the block plus a halo straight from the COGs (stackstac's reader, computed in-task with
dask's synchronous scheduler), mosaics the days and builds the inputs its model's
architecture declares (:mod:`lamap.model.registry`); the second runs the network over the
whole block (in one window, or windows of the architecture's ``max_window``) and combines
the prediction and its spread with the observed LAI; the third writes the block's shard. A
tile's done marker depends on the writes of its blocks.

Why whole blocks, not ``map_overlap`` over small chunks: every pixel of the halo is read
from the source (never taken from a neighbouring block), so a block needs no other block;
one window per block computes ``((b + 2h) / b)²`` model pixels per output pixel (1.19 at
the europe grid's 1000-px shards and the fused network's 44-px halo, against 2.96 for
256-px windows of 500-px chunks); and a block is 3 tasks instead of thousands of small
ones. The blocks are the grid's shards, fixed whatever the bbox, so every output pixel is
always computed from the same read: neighbouring bboxes give one bbox's map, reruns give
the same bytes. That is why the default warp is GDAL's approximate one (0.125 px, about a
quarter less read CPU, measured by ``lamap bench``); ``exact_warp`` reads pixels
independently of the window (tolerance 1e-4 px), and then a map computed in blocks equals
the same pixels computed in one piece to float tolerance (``tests/test_blocks.py``).

Task keys start with ``lamap-inputs``, ``lamap-infer``, ``lamap-write`` and
``lamap-done``: the stage names on the Dask dashboard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr

from lamap.catalog import S1Scene, S2Scene
from lamap.cube import CubeWindow, tile_cubes
from lamap.errors import InputError
from lamap.features import FeatureSpec, build_features
from lamap.grid import Grid, Window
from lamap.infer import ModelRef, context_vector, infer_block
from lamap.model.registry import FUSED_NAME, get_architecture
from lamap.runtime.allocator import tune_allocator
from lamap.store import Source
from lamap.timesteps import TimeSteps

__all__ = [
    "BlockInputs",
    "BlockJob",
    "BlockResult",
    "block_features",
    "block_lai",
    "combine",
    "halo_factor",
    "has_input",
]

@dataclass(frozen=True)
class BlockJob:
    """What the features task of one block needs: small and picklable.

    Attributes
    ----------
    steps : TimeSteps
        The tile's plan.
    s2, s1 : tuple
        The scenes the plan uses (only those).
    grid : Grid
        The output grid.
    window : Window
        The block's pixels (a shard of the store).
    halo : int
        Pixels read around the block for the network's receptive field.
    spec : FeatureSpec
        The model's feature definition.
    signer : callable, optional
        Signs hrefs before reading.
    exact_warp : bool
        Warp with the exact transformer (see :class:`lamap.cube.CubeWindow`); a block is
        always read through the same window, so the approximate default is reproducible.
    architecture : str
        The model's architecture: which inputs to build and stack.
    """

    steps: TimeSteps
    s2: tuple[S2Scene, ...]
    s1: tuple[S1Scene, ...]
    grid: Grid
    window: Window
    halo: int
    spec: FeatureSpec
    signer: Callable[[str], str] | None = None
    exact_warp: bool = False
    architecture: str = FUSED_NAME

    @property
    def read_window(self) -> Window:
        """The block grown by the halo (may reach past the grid: imagery exists there)."""
        return self.window.grow(self.halo)


@dataclass(frozen=True)
class BlockInputs:
    """The model inputs of one block and what the combination step needs.

    Attributes
    ----------
    inputs : numpy.ndarray
        ``(C, h + 2·halo, w + 2·halo)`` float32 stacked spatial inputs (the fused model: 20).
    context : numpy.ndarray
        ``(K,)`` vector inputs (the fused model: sin/cos of the day of year).
    has_input : numpy.ndarray
        ``(h, w)`` bool: radar or a valid optical past exists (else no estimate).
    observed : numpy.ndarray or None
        ``(h, w)`` float32 SNAP LAI of clear S2 at D, NaN elsewhere; None without S2 at D.
    halo : int
        The halo of ``inputs``.
    """

    inputs: np.ndarray
    context: np.ndarray
    has_input: np.ndarray
    observed: np.ndarray | None
    halo: int


@dataclass(frozen=True)
class BlockResult:
    """LAI, source flags and spread of one block, ready to write (the store contract holds).

    ``lai_sd`` is None where nothing gives a spread (a block without input).
    """

    lai: np.ndarray
    source: np.ndarray
    lai_sd: np.ndarray | None = None


def block_features(job: BlockJob) -> BlockInputs:
    """Read, warp and mosaic a block's inputs and build its model inputs (one task).

    Parameters
    ----------
    job : BlockJob
        The block.

    Returns
    -------
    BlockInputs
    """
    tune_allocator()  # under Dask's nanny settings every block buffer would be re-faulted
    where = CubeWindow(job.grid, job.read_window, one_chunk=True, exact=job.exact_warp)
    cubes = tile_cubes(job.steps, job.s2, job.s1, where, signer=job.signer,
                       bands=job.spec.s2_bands)
    arch = get_architecture(job.architecture)
    wanted = [*arch.spatial_inputs, *arch.vector_inputs, "s1_valid"]
    features = build_features(cubes, job.spec)
    if "observed_lai" in features:
        wanted.append("observed_lai")
    with dask.config.set(scheduler="synchronous"):
        ds = features[list(dict.fromkeys(wanted))].compute()
    return _block_inputs(ds, job.halo, job.architecture)


def _block_inputs(ds: xr.Dataset, halo: int, architecture: str) -> BlockInputs:
    names = get_architecture(architecture).spatial_inputs
    parts = [ds[name].values for name in names]
    inputs = np.concatenate([part.reshape(-1, *part.shape[-2:]) for part in parts],
                            axis=0).astype(np.float32, copy=False)
    core = (slice(halo, inputs.shape[1] - halo), slice(halo, inputs.shape[2] - halo))
    observed = ds["observed_lai"].values[core] if "observed_lai" in ds else None
    return BlockInputs(
        inputs=np.ascontiguousarray(inputs),
        context=context_vector(ds, architecture),
        has_input=has_input(ds).values[core],
        observed=None if observed is None else observed.astype(np.float32),
        halo=halo,
    )


def has_input(features: xr.Dataset) -> xr.DataArray:
    """Return where a pixel has model input: all radar channels, or a valid optical past.

    Elsewhere there is no estimate (``no_input``). Lazy for lazy features.
    """
    valid_past = features["masks"].sel(mask_channel="valid").max("step") > 0
    return (features["s1_valid"] > 0) | valid_past


def block_lai(block: BlockInputs, ref: ModelRef, *, lai_scale: float) -> BlockResult:
    """Run the model over a block and combine it with the observed LAI (one task).

    Observed LAI where S2 at D is clear, the model's LAI (clipped to 0–8) where there is
    input, nothing (NaN, ``no_input``) elsewhere; the spread likewise (the label's error
    scale ``ref.observed_sd`` where observed, the model's spread where filled).

    Parameters
    ----------
    block : BlockInputs
        From :func:`block_features`.
    ref : ModelRef
        The checkpoint (its ``window`` is the model window; one per block by default).
    lai_scale : float
        The features' LAI scale (the model predicts LAI / scale).

    Returns
    -------
    BlockResult
    """
    tune_allocator()
    model = infer_block(
        block.inputs, ref=ref, context=block.context, halo=block.halo, scale=lai_scale
    )
    return combine(model[0], block.has_input, block.observed, model_sd=model[1],
                   observed_sd=ref.observed_sd)


def combine(
    model_lai: np.ndarray, has_input: np.ndarray, observed: np.ndarray | None, *,
    model_sd: np.ndarray | None = None, observed_sd: float = float("nan"),
) -> BlockResult:
    """Observed LAI where clear, model LAI where there is input, else NaN / ``no_input``.

    The spread follows the source: ``observed_sd`` where observed, ``model_sd`` where filled
    (NaN where the model gives none), NaN where there is no estimate.
    """
    source = np.where(has_input, np.uint8(Source.FILLED), np.uint8(Source.NO_INPUT))
    lai = np.clip(model_lai, 0.0, 8.0).astype(np.float32)
    sd = np.full(lai.shape, np.nan, np.float32) if model_sd is None else model_sd
    if observed is not None:
        clear = np.isfinite(observed)
        source[clear] = Source.OBSERVED
        lai = np.where(clear, observed, lai)
        sd = np.where(clear, np.float32(observed_sd), sd)
    empty = source == Source.NO_INPUT
    lai = np.where(empty, np.float32(np.nan), lai).astype(np.float32)
    sd = np.where(empty, np.float32(np.nan), sd).astype(np.float32)
    return BlockResult(lai, source.astype(np.uint8), sd)


def no_input_block(window: Window) -> BlockResult:
    """Return the block of a tile without input: NaN and ``no_input`` everywhere."""
    return BlockResult(
        np.full(window.shape, np.nan, dtype=np.float32),
        np.zeros(window.shape, dtype=np.uint8),
        np.full(window.shape, np.nan, dtype=np.float32),
    )


def block_windows(grid: Grid, tile_window: Window) -> list[Window]:
    """Return the blocks of a tile: its shards, row-major (clipped at the grid edge)."""
    return tile_window.split(grid.shard)


def model_window(grid: Grid, window: int | None) -> int:
    """Return the model window edge: ``window`` if given, else one window per block (the shard)."""
    edge = window if window is not None else grid.shard
    if edge <= 0 or edge % 4:
        raise InputError(f"the model window must be a positive multiple of 4 pixels, got {edge}")
    return edge


def halo_factor(block: tuple[int, int], halo: int, window: int) -> float:
    """Model pixels computed per output pixel for one block (window padding included).

    Mirrors :func:`lamap.infer.predict_array`: windows of ``window`` px (or the block
    rounded up to 4 when smaller), each with its own halo.
    """
    sizes = [window if edge > window else -(-edge // 4) * 4 for edge in block]
    counts = [-(-edge // size) for edge, size in zip(block, sizes, strict=True)]
    computed = counts[0] * counts[1] * (sizes[0] + 2 * halo) * (sizes[1] + 2 * halo)
    return computed / (block[0] * block[1])


def describe(stage: str, window: Window, err: BaseException) -> str:
    """One line naming the stage, the block and the error (for the failed-tile ledger)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{stage} of block {window}: {type(err).__name__}: {text}"[:500]
