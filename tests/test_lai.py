"""The SNAP LAI network reproduces the published test vectors, eagerly and lazily."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from lamap.errors import InputError
from lamap.lai import SNAP_BANDS, snap_lai
from tests.conftest import REFERENCE


@pytest.fixture(scope="module")
def vectors() -> dict[str, np.ndarray]:
    cases = json.loads((REFERENCE / "snap_lai_s2.json").read_text())["test_vectors"]
    return {
        "reflectance": np.array([c["reflectance"] for c in cases]),
        "view": np.array([c["view_zenith_deg"] for c in cases]),
        "sun": np.array([c["sun_zenith_deg"] for c in cases]),
        "azimuth": np.array([c["relative_azimuth_deg"] for c in cases]),
        "lai": np.array([c["lai"] for c in cases]),
    }


def test_reference_vectors(vectors: dict[str, np.ndarray]) -> None:
    assert len(vectors["lai"]) == 64
    lai = snap_lai(vectors["reflectance"], vectors["view"], vectors["sun"], vectors["azimuth"])
    np.testing.assert_allclose(lai, vectors["lai"], rtol=0, atol=1e-6)


def test_each_vector_alone(vectors: dict[str, np.ndarray]) -> None:
    for i in range(0, 64, 7):
        value = snap_lai(
            vectors["reflectance"][i], vectors["view"][i], vectors["sun"][i], vectors["azimuth"][i]
        )
        assert abs(float(value) - vectors["lai"][i]) < 1e-6


def test_broadcasts_scalar_angles_over_an_image() -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(0.02, 0.4, size=(5, 7, 8))
    lai = snap_lai(image, 5.0, 40.0, 120.0)
    assert lai.shape == (5, 7)
    pixel = snap_lai(image[3, 4], 5.0, 40.0, 120.0)
    assert float(pixel) == pytest.approx(float(lai[3, 4]), abs=1e-12)


def test_lazy_on_dask_and_xarray(vectors: dict[str, np.ndarray]) -> None:
    refl = xr.DataArray(
        da.from_array(vectors["reflectance"], chunks=(16, 8)),
        dims=("sample", "band"),
        coords={"band": list(SNAP_BANDS)},
    )
    angles = {k: xr.DataArray(vectors[k], dims="sample") for k in ("view", "sun", "azimuth")}
    lai = snap_lai(refl, angles["view"], angles["sun"], angles["azimuth"])
    assert isinstance(lai.data, da.Array), "snap_lai computed eagerly"
    assert lai.dims == ("sample",)
    np.testing.assert_allclose(lai.compute().values, vectors["lai"], atol=1e-6)


def test_wrong_band_count_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="8 bands"):
        snap_lai(np.zeros((3, 10)), 0.0, 30.0, 0.0)
