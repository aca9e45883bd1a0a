"""li2025: its two steps, seamless tiled inference (any chunking), its losses and training."""

from __future__ import annotations

from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lamap.infer import ModelRef, predict
from lamap.model import ARCHITECTURES, Li2025Config, Li2025Net, save_checkpoint, seeded_network
from lamap.model.li2025_loss import compound_loss, ms_ssim
from lamap.train.stages import past_label_weights, prepare_stage, stage_loss, stage_parameters

SIZE = (104, 92)
ARCH = ARCHITECTURES["li2025"]
HALO = 8


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    h, w = SIZE
    valid = (rng.random((6, h, w)) > 0.2).astype(np.float32)
    valid[0] = 0.0  # an empty slot: a missing pass
    return {
        "s1_series": (rng.uniform(0.3, 0.8, (6, 2, h, w)) * valid[:, None]).astype(np.float32),
        "s1_series_valid": valid,
        "lai": rng.uniform(0.0, 1.2, (2, h, w)).astype(np.float32),
        "masks": (rng.random((2, 6, h, w)) > 0.5).astype(np.float32),
    }


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("li") / "li.pt"
    save_checkpoint(path, seeded_network(ARCH, 3, Li2025Config.tiny()),
                    feature_spec=ARCH.spec.to_dict())
    return path


def _features(inputs: dict[str, np.ndarray], rows: tuple[int, ...],
              cols: tuple[int, ...]) -> xr.Dataset:
    h, w = SIZE
    coords = {"y": np.arange(h, dtype=float), "x": np.arange(w, dtype=float)}
    dims = {"s1_series": ("s1_pass", "s1_band", "y", "x"), "s1_series_valid": ("s1_pass", "y", "x"),
            "lai": ("lai_channel", "y", "x"), "masks": ("step", "mask_channel", "y", "x")}
    variables = {name: xr.DataArray(da.from_array(data, chunks=(*data.shape[:-2], rows, cols)),
                                    dims=dims[name], coords=coords)
                 for name, data in inputs.items()}
    variables |= {
        "s1_days": xr.DataArray(np.arange(-36, 0, 6, dtype=np.float32), dims="s1_pass"),
        "past_days": xr.DataArray(np.array([10, 5], np.float32), dims="step"),
        "season": xr.DataArray(np.array([0.5, -0.8], np.float32), dims="season_channel"),
    }
    return xr.Dataset(variables, attrs={"date": "2024-06-15"})


def _cuts(sizes: list[int], total: int) -> tuple[int, ...]:
    cuts, used = [], 0
    for size in sizes:
        if used + size >= total - HALO:
            break
        cuts.append(size)
        used += size
    return (*cuts, total - used)


@pytest.fixture(scope="module")
def one_piece(inputs, checkpoint) -> xr.Dataset:  # type: ignore[no-untyped-def]
    ref = ModelRef.from_path(str(checkpoint), window=256, batch=1)
    with dask.config.set(scheduler="synchronous"):
        return predict(_features(inputs, (SIZE[0],), (SIZE[1],)), ref, halo=HALO,
                       with_sd=True).compute()


def test_the_reference_names_the_architecture_and_caps_the_window(checkpoint) -> None:  # type: ignore[no-untyped-def]
    ref = ModelRef.from_path(str(checkpoint), window=1000)
    assert (ref.architecture, ref.window) == ("li2025", 256)


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.sampled_from([8, 12, 20, 36, 52]), min_size=1, max_size=5),
       cols=st.lists(st.sampled_from([8, 16, 28, 40]), min_size=1, max_size=5),
       window=st.sampled_from([16, 32, 256]), batch=st.sampled_from([1, 3]))
def test_any_chunking_equals_one_piece(inputs, checkpoint, one_piece, rows, cols, window,
                                       batch) -> None:  # type: ignore[no-untyped-def]
    ref = ModelRef.from_path(str(checkpoint), window=window, batch=batch)
    features = _features(inputs, _cuts(rows, SIZE[0]), _cuts(cols, SIZE[1]))
    with dask.config.set(scheduler="synchronous"):
        blocked = predict(features, ref, halo=HALO, with_sd=True).compute()
    core = {"y": slice(HALO, -HALO), "x": slice(HALO, -HALO)}
    for name in ("lai", "lai_sd"):
        np.testing.assert_allclose(blocked[name].isel(core), one_piece[name].isel(core),
                                   atol=1e-5, rtol=0)
    assert float(one_piece["lai_sd"].isel(core).min()) > 0


def _batch(net: Li2025Net, size: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    shapes = net.input_shapes()
    batch = {name: torch.rand((2, *shape, *(() if name in net.vector_inputs else (size, size))),
                              generator=gen) for name, shape in shapes.items()}
    batch["s1_days"] = torch.tensor([[-30.0, -24, -18, -12, -6, 0]]).expand(2, 6)
    batch["past_days"] = torch.tensor([[10.0, 5.0]]).expand(2, 2)
    batch["masks"] = (batch["masks"] > 0.5).float()
    batch["target"] = torch.rand((2, 1, size, size), generator=gen)
    batch["weight"] = (torch.rand((2, 1, size, size), generator=gen) > 0.3).float()
    return batch


def test_cloudy_references_are_filled_from_step_one_and_weigh_less() -> None:
    net = seeded_network(ARCH, 0, Li2025Config.tiny())
    batch = _batch(net)
    inputs = {k: batch[k] for k in net.input_shapes()}
    with torch.no_grad():
        out = net.outputs(**inputs)
        clear = dict(inputs, masks=inputs["masks"].clone())
        clear["masks"][:, 1, 0] = 1.0  # t-1 valid everywhere
        cloudy = dict(inputs, masks=inputs["masks"].clone(), lai=inputs["lai"] * 0 + 7)
        cloudy["masks"][:, 1, 0] = 0.0  # t-1 invalid everywhere: its LAI is never read
        a, b = net.outputs(**cloudy), net.outputs(**dict(cloudy, lai=cloudy["lai"] * 0))
    torch.testing.assert_close(a["ref_t-1"], b["ref_t-1"])
    total = out["weight_t-2"] + out["weight_t-1"]
    torch.testing.assert_close(total, torch.ones_like(total))
    torch.testing.assert_close(out["lai"], out["weight_t-2"] * out["ref_t-2"]
                               + out["weight_t-1"] * out["ref_t-1"])
    assert set(out) >= {"lai", "sd", "step1", "ref_t-2", "ref_t-1"}


def test_ms_ssim_is_one_for_equal_images_and_drops_with_noise() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((2, 1, 64, 64), generator=gen)
    assert float(ms_ssim(x, x)) == pytest.approx(1.0, abs=1e-5)
    small = x + 0.1 * torch.rand((2, 1, 64, 64), generator=gen)
    large = x + 0.5 * torch.rand((2, 1, 64, 64), generator=gen)
    assert 1.0 > float(ms_ssim(x, small)) > float(ms_ssim(x, large))
    assert float(ms_ssim(x, torch.rand((2, 1, 64, 64), generator=gen))) < 0.5
    with pytest.raises(ValueError, match="at least 28 px"):
        ms_ssim(x[..., :20, :20], x[..., :20, :20])


def test_the_compound_loss_ignores_the_holes_of_the_target() -> None:
    net = seeded_network(ARCH, 0, Li2025Config.tiny())
    pred = torch.rand((1, 1, 32, 32))
    target = pred.clone()
    weight = torch.ones_like(target)
    weight[..., :16, :] = 0
    target[..., :16, :] = 5.0  # a cloud: any value
    loss = compound_loss(net, pred, target, weight).detach()
    assert float(loss) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("stage", ["step1", "features", "step2", "sigma"])
def test_each_stage_trains_only_its_part(stage: str) -> None:
    net = seeded_network(ARCH, 0, Li2025Config.tiny())
    before = {k: v.clone() for k, v in net.state_dict().items()}
    prepare_stage(net, stage)
    trained = {id(p) for p in stage_parameters(net, stage)}
    optimizer = torch.optim.Adam(stage_parameters(net, stage), lr=0.05)
    loss, pred = stage_loss(net, _batch(net), stage, _batch(net)["weight"])
    loss.backward()
    optimizer.step()
    assert pred.shape == (2, 1, 32, 32) and torch.isfinite(loss)
    named = dict(net.named_parameters())
    changed = {k for k, v in net.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(id(named[k]) in trained for k in changed)


def test_past_labels_skip_cloud_shadows() -> None:
    from lamap.feature_spec import FeatureSpec

    masks = torch.zeros((1, 2, 6, 1, 2))
    masks[0, :, 0] = 1.0
    masks[0, 1, 2, 0, 0] = 1.0  # SCL 3 (cloud shadow) at t-1 on pixel 0
    weights = past_label_weights(masks, FeatureSpec())
    assert weights[0, :, 0].tolist() == [[1.0, 1.0], [0.0, 1.0]]
