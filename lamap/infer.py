"""Run a registered model over lazy feature cubes with ``dask.array.map_overlap``.

Seamless by construction: every dask block is extended by a halo at least as wide as the
network's receptive-field radius, a multiple of its down-sampling factor, and block
offsets are multiples of that factor; so a map computed in blocks equals the same map
computed in one piece, to float tolerance (``tests/test_infer.py`` checks it).

Inside a block the model sees windows of ``window`` pixels plus the halo, several
windows stacked into one batch per call. The model reaches a worker once: tasks carry a
:class:`ModelRef` (path, checksum and architecture name), and the worker loads the
checkpoint on first use and keeps it in a per-process cache.

Which inputs a model takes comes from its architecture's declaration
(:mod:`lamap.model.registry`): the spatial inputs are stacked into one ``(C, y, x)`` array in
the declared order (:func:`stack_inputs`), the per-sample vectors (season, days) into one
context vector (:func:`context_vector`); a block is unstacked on the worker by the network's
``input_shapes()``. Blocks give two layers: the LAI and its spread (NaN for a model without
one), both in m²/m².
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from lamap.errors import InputError, LamapError
from lamap.features import season as season_of
from lamap.model.registry import FUSED_NAME, get_architecture

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_WINDOW",
    "PRECISIONS",
    "ModelRef",
    "context_vector",
    "infer_block",
    "observed_sd_of",
    "precision_for",
    "predict",
    "predict_array",
    "predict_block",
    "stack_inputs",
]

DEFAULT_WINDOW = 256
DEFAULT_BATCH = 4

_CACHE: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelRef:
    """What a task needs to find the model: small, picklable, hashable.

    Parameters
    ----------
    path : str
        Checkpoint path (readable by every worker).
    sha256 : str
        Its checksum; a worker refuses a file that changed.
    device : {"cpu", "cuda", "auto"}
        Where to run it on the worker.
    window : int
        Edge of the model windows in pixels (a multiple of 4).
    batch : int
        Windows per model call.
    precision : {"auto", "float32", "bfloat16"}
        Arithmetic of the network (see :func:`precision_for`).
    architecture : str
        The checkpoint's architecture (its inputs' layout; :mod:`lamap.model.registry`).
    observed_sd : float
        The spread of an observed LAI, m²/m² (the label's own error scale the checkpoint
        records; NaN when it records none).
    """

    path: str
    sha256: str
    device: str = "cpu"
    window: int = DEFAULT_WINDOW
    batch: int = DEFAULT_BATCH
    precision: str = "auto"
    architecture: str = FUSED_NAME
    observed_sd: float = float("nan")

    @classmethod
    def from_path(cls, path: str, **options: Any) -> ModelRef:
        """Build a reference to the checkpoint at ``path`` (checksum and architecture read here).

        The model's window is capped at its architecture's ``max_window``.
        """
        from lamap.model import load_checkpoint

        loaded = load_checkpoint(path)
        arch = loaded.architecture
        if arch.max_window is not None:
            options["window"] = min(options.get("window", DEFAULT_WINDOW), arch.max_window)
        return cls(path=str(path), sha256=loaded.sha256, architecture=arch.name,
                   observed_sd=observed_sd_of(loaded), **options)

    def load(self) -> Any:
        """Return the loaded model, cached per process (one load per worker)."""
        key = (self.sha256, self.device)
        with _LOCK:
            if key not in _CACHE:
                _CACHE[key] = self._load()
            return _CACHE[key]

    def _load(self) -> Any:
        from lamap.model import file_sha256, load_checkpoint, resolve_device

        _match_torch_threads()

        if file_sha256(self.path) != self.sha256:
            raise LamapError(
                f"the model file {self.path} changed since the map started (checksum differs); "
                "rerun lamap map"
            )
        device = resolve_device(self.device)
        return set_layout(load_checkpoint(self.path, map_location=str(device)))


def observed_sd_of(loaded: Any) -> float:
    """Return the observed LAI's spread a checkpoint records (training summary), or NaN."""
    value = ((loaded.training or {}).get("uncertainty") or {}).get("observed_sd")
    return float("nan") if value is None else float(value)


def set_layout(loaded: Any, *, channels_last: bool = True) -> Any:
    """Put a loaded model's weights in the memory layout inference runs with, in place.

    Channels-last is the layout oneDNN and cuDNN convolutions prefer: ``lamap bench``
    measures it against the default layout in the same run (1.4× the float32 throughput on
    this project's 2-core CPU, the same output to 1e-6).

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`lamap.model.load_checkpoint`.
    channels_last : bool
        False restores the default (contiguous) layout.

    Returns
    -------
    LoadedModel
        ``loaded`` itself.
    """
    import torch

    layout = torch.channels_last if channels_last else torch.contiguous_format
    loaded.model.to(memory_format=layout)
    return loaded


PRECISIONS = ("auto", "float32", "bfloat16")


def precision_for(loaded: Any, requested: str = "auto") -> str:
    """Return the arithmetic the network runs in on this process's device.

    ``auto`` is the precision the checkpoint was trained in (``TrainConfig.precision``:
    a model trained under bfloat16 autocast is run the same way) where the device computes
    bfloat16 natively (CUDA with bf16, or a CPU with AVX512-BF16/AMX through oneDNN), else
    float32. On this project's CPU the demo weights run about 2× faster in bfloat16 than
    in float32, their LAI 0.008 m²/m² apart on average (0.18 at most; ``lamap bench``).

    Raises
    ------
    InputError
        For an unknown precision.
    """
    if requested not in PRECISIONS:
        raise InputError(f"precision {requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    trained = ((loaded.training or {}).get("config") or {}).get("precision", "float32")
    device = next(loaded.model.parameters()).device
    return "bfloat16" if trained == "bfloat16" and _native_bf16(device) else "float32"


def _native_bf16(device: Any) -> bool:
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _match_torch_threads() -> None:
    """Give PyTorch as many threads as this Dask worker has (no oversubscription)."""
    import torch

    try:
        from distributed import get_worker

        threads = max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError):
        return
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def stack_inputs(features: xr.Dataset, architecture: str = FUSED_NAME) -> da.Array:
    """Stack an architecture's spatial inputs into one ``(C, y, x)`` dask array, C in a chunk.

    In the declared order (the fused model: 6 S1 channels, 2 LAI channels, 2 × 6 mask
    channels, step-major: 20 channels).
    """
    names = get_architecture(architecture).spatial_inputs
    parts = [_as_dask(features[name].data) for name in names]
    parts = [part.reshape(-1, *part.shape[-2:]) for part in parts]
    stacked = da.concatenate(parts, axis=0).astype(np.float32).rechunk({0: -1})
    # one readable name for the whole feature assembly on the dashboard's task stream
    return stacked.map_blocks(
        _identity, dtype=np.float32, name=f"lamap-inputs-{tokenize(stacked.name)}"
    )


def _identity(block: np.ndarray) -> np.ndarray:
    return block


def context_vector(features: xr.Dataset, architecture: str = FUSED_NAME) -> np.ndarray:
    """Concatenate an architecture's vector inputs (season, days) into one float32 vector.

    A ``season`` missing from the features is computed from their ``date`` attribute.
    """
    names = get_architecture(architecture).vector_inputs
    values = [season_of(str(features.attrs["date"])) if name == "season" and
              name not in features else features[name].values for name in names]
    return np.concatenate([np.asarray(v, dtype=np.float32).ravel() for v in values])


def _unstack(model: Any, x: Any, context: Any) -> dict[str, Any]:
    """Split stacked ``(B, C, H, W)`` inputs and a ``(B, K)`` context into the named inputs."""
    arch = get_architecture(model.architecture)
    shapes = model.input_shapes()
    inputs, first = {}, 0
    for name in arch.spatial_inputs:
        size = int(np.prod(shapes[name]))
        inputs[name] = x[:, first:first + size].reshape(x.shape[0], *shapes[name], *x.shape[2:])
        first += size
    first = 0
    for name in arch.vector_inputs:
        size = int(np.prod(shapes[name]))
        inputs[name] = context[:, first:first + size].reshape(-1, *shapes[name])
        first += size
    return inputs


def _as_dask(data: Any) -> da.Array:
    return data if isinstance(data, da.Array) else da.from_array(data)


def _windows(core: tuple[int, int], window: int) -> list[tuple[int, int]]:
    rows = range(0, core[0], window)
    cols = range(0, core[1], window)
    return [(r, c) for r in rows for c in cols]


def predict_block(
    block: np.ndarray,
    context: np.ndarray,
    halo: int,
    model: Any,
    *,
    window: int,
    batch: int,
    precision: str = "float32",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Predict LAI/scale and its spread for the core of one block with a halo on every side.

    Parameters
    ----------
    block : numpy.ndarray
        ``(C, h + 2·halo, w + 2·halo)`` stacked inputs (:func:`stack_inputs`).
    context : numpy.ndarray
        ``(K,)`` vector inputs (:func:`context_vector`; the fused model: sin/cos of the day
        of year).
    halo : int
        Halo width in pixels (multiple of the down-sampling factor).
    model : LoadedModel
        From :func:`lamap.model.load_checkpoint`.
    window, batch : int
        Window edge and windows per call.
    precision : {"float32", "bfloat16"}
        ``bfloat16`` runs the network under ``torch.autocast`` (see :func:`precision_for`).

    Returns
    -------
    lai : numpy.ndarray
        ``(h, w)`` float32 on the LAI/scale scale.
    sd : numpy.ndarray or None
        ``(h, w)`` float32 spread on the same scale; None for a model without one.
    """
    import torch

    core = (block.shape[1] - 2 * halo, block.shape[2] - 2 * halo)
    size = (
        window if core[0] > window else _round4(core[0]),
        window if core[1] > window else _round4(core[1]),
    )
    padded_shape = (-(-core[0] // size[0]) * size[0], -(-core[1] // size[1]) * size[1])
    padded = np.zeros(
        (block.shape[0], padded_shape[0] + 2 * halo, padded_shape[1] + 2 * halo), dtype=np.float32
    )
    padded[:, : block.shape[1], : block.shape[2]] = block
    net = model.model
    device = next(net.parameters()).device
    starts = [
        (r, c)
        for r in range(0, padded_shape[0], size[0])
        for c in range(0, padded_shape[1], size[1])
    ]
    out = {"lai": np.empty(padded_shape, dtype=np.float32)}
    context_t = torch.as_tensor(context, dtype=torch.float32, device=device)
    for first in range(0, len(starts), batch):
        group = starts[first : first + batch]
        tiles = np.stack(
            [padded[:, r : r + size[0] + 2 * halo, c : c + size[1] + 2 * halo] for r, c in group]
        )
        x = torch.from_numpy(tiles).to(device).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"
        ):
            pred = net.outputs(**_unstack(net, x, context_t.expand(len(group), -1)))
        for name in ("lai", "sd"):
            if name not in pred:
                continue
            values = pred[name][:, 0, halo : halo + size[0], halo : halo + size[1]]
            layer = out.setdefault(name, np.empty(padded_shape, dtype=np.float32))
            for (r, c), part in zip(group, values.float().cpu().numpy(), strict=True):
                layer[r : r + size[0], c : c + size[1]] = part
    sd = out.get("sd")
    return out["lai"][: core[0], : core[1]], None if sd is None else sd[: core[0], : core[1]]


def predict_array(block: np.ndarray, context: np.ndarray, halo: int, model: Any, *,
                  window: int, batch: int, precision: str = "float32") -> np.ndarray:
    """Predict LAI/scale for the core of one block: the ``lai`` of :func:`predict_block`."""
    return predict_block(block, context, halo, model, window=window, batch=batch,
                         precision=precision)[0]


def _round4(value: int) -> int:
    return -(-value // 4) * 4


def infer_block(
    block: np.ndarray, *, ref: ModelRef, context: np.ndarray, halo: int, scale: float
) -> np.ndarray:
    """Model LAI and spread (m²/m²) of one block's core, ``(2, h, w)``; 0 where no input.

    The spread is NaN for a model without one. The model is loaded once per worker process
    (:meth:`ModelRef.load`).
    """
    core = (2, block.shape[1] - 2 * halo, block.shape[2] - 2 * halo)
    if not np.any(block):
        return np.zeros(core, dtype=np.float32)  # no radar, no valid past: nothing to infer
    model = ref.load()
    _match_torch_threads()  # every call: the model may have been loaded outside a task
    precision = precision_for(model, ref.precision)
    lai, sd = predict_block(block, context, halo, model, window=ref.window, batch=ref.batch,
                            precision=precision)  # fmt: skip
    spread = np.full_like(lai, np.nan) if sd is None else sd
    return (np.stack([lai, spread]) * np.float32(scale)).astype(np.float32)


def predict(
    features: xr.Dataset,
    ref: ModelRef,
    *,
    halo: int,
    lai_scale: float = 5.0,
    gpu_resource: bool = False,
    with_sd: bool = False,
) -> Any:
    """Model LAI (m²/m², unclipped) over the features' pixels, lazily.

    Parameters
    ----------
    features : xarray.Dataset
        From :func:`lamap.features.build_features`; its ``y``/``x`` chunks are the
        inference blocks (aligned with the grid's chunks).
    ref : ModelRef
        The checkpoint.
    halo : int
        Overlap depth: at least the receptive-field radius, a multiple of 4, and no wider
        than the smallest block.
    lai_scale : float
        The features' LAI scale (the model predicts LAI / scale).
    gpu_resource : bool
        Annotate the inference tasks with ``resources={"GPU": 1}``.
    with_sd : bool
        Return a Dataset with ``lai`` and ``lai_sd`` (the spread; NaN for a model without).

    Returns
    -------
    xarray.DataArray or xarray.Dataset
        ``(y, x)`` float32 LAI (and its spread). Only the pixels at least ``halo`` from the
        edge of the features equal a one-piece computation (the caller's cube has that
        margin).

    Raises
    ------
    InputError
        If the halo is not a multiple of 4 or wider than a block.
    """
    stacked = stack_inputs(features, ref.architecture)
    _check_halo(stacked, halo)
    context = context_vector(features, ref.architecture)
    name = f"lamap-infer-{tokenize(stacked.name, ref, halo, lai_scale, context)}"
    annotations = {"resources": {"GPU": 1}} if gpu_resource else {}
    with dask.annotate(**annotations):
        out = da.map_overlap(
            infer_block,
            stacked,
            depth={0: 0, 1: halo, 2: halo},
            boundary=0,
            trim=False,
            chunks=((2,), *stacked.chunks[1:]),
            dtype=np.float32,
            name=name,
            meta=np.empty((0, 0, 0), dtype=np.float32),
            ref=ref,
            context=context,
            halo=halo,
            scale=float(lai_scale),
        )
    coords = {"y": features.y, "x": features.x}
    lai = xr.DataArray(out[0], dims=("y", "x"), coords=coords, name="lai")
    if not with_sd:
        return lai
    return xr.Dataset({"lai": lai, "lai_sd": xr.DataArray(out[1], dims=("y", "x"), coords=coords)})


def _check_halo(stacked: da.Array, halo: int) -> None:
    if halo < 0 or halo % 4:
        raise InputError(f"the halo must be a non-negative multiple of 4 pixels, got {halo}")
    smallest = min(min(c) for c in stacked.chunks[1:])
    if halo > smallest:
        raise InputError(
            f"the halo ({halo} px) is wider than the smallest block ({smallest} px); use "
            "larger blocks or a cube margin of at least one halo"
        )
