"""Inference is seamless: any chunking gives the one-piece map; the model loads once."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamap.errors import InputError
from lamap.features import FeatureSpec
from lamap.infer import ModelRef, predict
from lamap.model import ModelConfig, recommended_halo, save_checkpoint, seeded_model

SIZE = (232, 200)


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    h, w = SIZE
    masks = (rng.random((2, 6, h, w)) > 0.5).astype(np.float32)
    return {
        "s1": rng.uniform(0.3, 0.8, (6, h, w)).astype(np.float32),
        "lai": rng.uniform(0.0, 1.2, (2, h, w)).astype(np.float32),
        "masks": masks,
    }


def _features(inputs: dict[str, np.ndarray], rows: tuple[int, ...], cols: tuple[int, ...]):
    h, w = SIZE
    coords = {"y": np.arange(h, dtype=float), "x": np.arange(w, dtype=float)}

    def arr(name: str, dims: tuple[str, ...]) -> xr.DataArray:
        data = inputs[name]
        chunks = (*data.shape[:-2], rows, cols)
        return xr.DataArray(da.from_array(data, chunks=chunks), dims=dims, coords=coords)

    return xr.Dataset(
        {
            "s1": arr("s1", ("s1_channel", "y", "x")),
            "lai": arr("lai", ("lai_channel", "y", "x")),
            "masks": arr("masks", ("step", "mask_channel", "y", "x")),
        },
        attrs={"date": "2024-06-15"},
    )


def _cuts(draw_sizes: list[int], total: int) -> tuple[int, ...]:
    cuts, used = [], 0
    for size in draw_sizes:
        if used + size >= total - 44:
            break
        cuts.append(size)
        used += size
    cuts.append(total - used)
    return tuple(cuts)


@pytest.fixture(scope="module")
def one_piece(inputs, model) -> np.ndarray:  # type: ignore[no-untyped-def]
    ref = ModelRef.from_path(str(model), device="cpu", window=256, batch=2)
    features = _features(inputs, (SIZE[0],), (SIZE[1],))
    with dask.config.set(scheduler="synchronous"):
        return predict(features, ref, halo=44).values


def test_halo_covers_the_receptive_field() -> None:
    assert recommended_halo(ModelConfig()) == 44
    assert recommended_halo(ModelConfig.tiny()) == 44


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(st.sampled_from([44, 48, 64, 96, 128]), min_size=1, max_size=4),
    cols=st.lists(st.sampled_from([44, 52, 64, 100]), min_size=1, max_size=4),
    window=st.sampled_from([32, 64, 256]),
    batch=st.sampled_from([1, 3]),
)
def test_any_chunking_equals_one_piece(
    inputs, model, one_piece, rows, cols, window, batch
) -> None:  # type: ignore[no-untyped-def]
    ref = ModelRef.from_path(str(model), device="cpu", window=window, batch=batch)
    features = _features(inputs, _cuts(rows, SIZE[0]), _cuts(cols, SIZE[1]))
    with dask.config.set(scheduler="synchronous"):
        blocked = predict(features, ref, halo=44).values
    core = (slice(44, -44), slice(44, -44))
    np.testing.assert_allclose(blocked[core], one_piece[core], atol=1e-5, rtol=0)


def test_no_input_blocks_are_skipped(inputs, model) -> None:  # type: ignore[no-untyped-def]
    empty = {k: np.zeros_like(v) for k, v in inputs.items()}
    ref = ModelRef(path="/nonexistent.pt", sha256="0" * 64)  # never loaded
    features = _features(empty, (SIZE[0],), (SIZE[1],))
    with dask.config.set(scheduler="synchronous"):
        assert not predict(features, ref, halo=44).values.any()


def test_bad_halo_is_refused(inputs, model) -> None:  # type: ignore[no-untyped-def]
    ref = ModelRef.from_path(str(model))
    with pytest.raises(InputError, match="multiple of 4"):
        predict(_features(inputs, (SIZE[0],), (SIZE[1],)), ref, halo=42)
    with pytest.raises(InputError, match="wider than the smallest block"):
        predict(_features(inputs, (32, SIZE[0] - 32), (SIZE[1],)), ref, halo=44)


def test_changed_model_file_is_refused(tmp_path: Path, inputs) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "m.pt"
    save_checkpoint(path, seeded_model(1, ModelConfig.tiny()), feature_spec=FeatureSpec().to_dict())
    ref = ModelRef.from_path(str(path))
    save_checkpoint(path, seeded_model(2, ModelConfig.tiny()), feature_spec=FeatureSpec().to_dict())
    with pytest.raises(Exception, match="changed"), dask.config.set(scheduler="synchronous"):
        _ = predict(_features(inputs, (SIZE[0],), (SIZE[1],)), ref, halo=44).values


def test_graph_carries_the_model_reference_not_the_model(tmp_path: Path) -> None:
    import pickle

    path = tmp_path / "full.pt"
    save_checkpoint(path, seeded_model(0), feature_spec=FeatureSpec().to_dict())
    assert path.stat().st_size > 10_000_000
    h, w = SIZE
    features = xr.Dataset(
        {
            "s1": (("s1_channel", "y", "x"), da.ones((6, h, w), chunks=(6, 116, 100))),
            "lai": (("lai_channel", "y", "x"), da.ones((2, h, w), chunks=(2, 116, 100))),
            "masks": (
                ("step", "mask_channel", "y", "x"),
                da.ones((2, 6, h, w), chunks=(2, 6, 116, 100)),
            ),
        },
        attrs={"date": "2024-06-15"},
    )
    lai = predict(features, ModelRef.from_path(str(path)), halo=44)
    size = len(pickle.dumps(dict(lai.data.__dask_graph__())))
    assert size < 200_000, f"the graph is {size} bytes: the model must not be embedded"


def test_precision_follows_the_checkpoint_where_the_device_has_it(model) -> None:  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from lamap.infer import _native_bf16, precision_for
    from lamap.model import load_checkpoint

    loaded = load_checkpoint(model)
    assert precision_for(loaded) == "float32"  # never trained: float32
    assert precision_for(loaded, "bfloat16") == "bfloat16"
    trained = replace(loaded, training={"config": {"precision": "bfloat16"}})
    native = _native_bf16(next(loaded.model.parameters()).device)
    assert precision_for(trained) == ("bfloat16" if native else "float32")
    assert precision_for(trained, "float32") == "float32"
    with pytest.raises(InputError, match="precision 'half'"):
        precision_for(loaded, "half")


def test_bfloat16_inference_stays_close_to_float32(model) -> None:  # type: ignore[no-untyped-def]
    from lamap.infer import predict_array, set_layout
    from lamap.model import load_checkpoint

    loaded = set_layout(load_checkpoint(model))
    block = np.random.default_rng(3).random((20, 96, 96), dtype=np.float32)
    season = np.array([0.2, 0.9], dtype=np.float32)
    full = predict_array(block, season, 16, loaded, window=64, batch=2)
    half = predict_array(block, season, 16, loaded, window=64, batch=2, precision="bfloat16")
    assert half.dtype == np.float32 and not np.array_equal(full, half)
    np.testing.assert_allclose(half, full, atol=0.05)
