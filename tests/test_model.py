"""Tests of the fused network, its receptive field and checkpoints (CPU, tiny config mostly)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lamap.errors import InputError
from lamap.model import (
    ALPHA,
    BETA,
    DOWNSAMPLING,
    CheckpointError,
    FusedLAINet,
    ModelConfig,
    Prediction,
    file_sha256,
    fused_loss,
    load_checkpoint,
    masked_mse,
    parameter_count,
    receptive_field_radius,
    recommended_halo,
    resolve_device,
    save_checkpoint,
    seeded_model,
)

TINY = ModelConfig.tiny()
SPEC = {"version": 1, "lai_scale": 5.0, "onehot_classes": [2, 3, 4, 5, 6]}


def make_inputs(batch: int, height: int, width: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    masks = (torch.rand((batch, 2, 6, height, width), generator=gen) > 0.5).float()
    angle = torch.rand(batch, generator=gen) * 2 * torch.pi
    return {
        "s1": torch.rand((batch, 6, height, width), generator=gen),
        "lai": torch.rand((batch, 2, height, width), generator=gen) * 2,
        "masks": masks,
        "season": torch.stack([angle.sin(), angle.cos()], dim=1),
    }


def first_conv(module: torch.nn.Module) -> torch.nn.Conv2d:
    return next(m for m in module.modules() if isinstance(m, torch.nn.Conv2d))


@pytest.fixture(scope="module")
def tiny() -> FusedLAINet:
    return seeded_model(3, TINY)


# --------------------------------------------------------------------------- architecture


def test_default_parameter_count() -> None:
    count = parameter_count(FusedLAINet())
    print(f"default FusedLAINet parameters: {count}")
    assert 2_600_000 <= count <= 3_000_000
    assert count == 2_839_217


def test_encoder_inputs_follow_model_md() -> None:
    model = FusedLAINet()
    assert first_conv(model.enc1.unet).in_channels == 11  # 6 S1 + 2x2 masks + 1 season
    assert first_conv(model.enc2.unet).in_channels == 7  # 2 LAI + 2x2 masks + 1 season
    assert first_conv(model.decoder).in_channels == 64
    assert model.downsampling == DOWNSAMPLING == 4


@pytest.mark.parametrize("height,width", [(64, 64), (96, 96), (128, 64), (4, 8)])
def test_output_shapes(tiny: FusedLAINet, height: int, width: int) -> None:
    with torch.no_grad():
        pred = tiny(**make_inputs(2, height, width))
    assert isinstance(pred, Prediction)
    for out in pred:
        assert out.shape == (2, 1, height, width)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("height,width", [(62, 64), (64, 66), (2, 4)])
def test_refuses_sizes_not_multiple_of_4(tiny: FusedLAINet, height: int, width: int) -> None:
    with pytest.raises(InputError, match="multiples of 4"):
        tiny(**make_inputs(1, height, width))


def test_refuses_inconsistent_inputs(tiny: FusedLAINet) -> None:
    inputs = make_inputs(2, 16, 16)
    with pytest.raises(InputError, match=r"s1 has shape \[2, 5, 16, 16\]"):
        tiny(**(inputs | {"s1": inputs["s1"][:, :5]}))
    with pytest.raises(InputError, match="disagree"):
        tiny(**(inputs | {"lai": inputs["lai"][:1]}))
    with pytest.raises(InputError, match="disagree"):
        tiny(**(inputs | {"masks": inputs["masks"][..., :8]}))
    with pytest.raises(InputError, match="dtype"):
        tiny(**(inputs | {"season": inputs["season"].long()}))


def test_encoder_paths_match_full_forward(tiny: FusedLAINet) -> None:
    inputs = make_inputs(2, 32, 32)
    with torch.no_grad():
        pred = tiny(**inputs)
        enc1 = tiny.forward_enc1(inputs["s1"], inputs["masks"], inputs["season"])
        enc2 = tiny.forward_enc2(inputs["lai"], inputs["masks"], inputs["season"])
    torch.testing.assert_close(enc1, pred.enc1)
    torch.testing.assert_close(enc2, pred.enc2)
    assert not torch.allclose(enc1, enc2)


def test_encoder_pretraining_touches_only_its_branch(tiny: FusedLAINet) -> None:
    model = seeded_model(4, TINY).train()
    inputs = make_inputs(2, 16, 16)
    model.forward_enc2(inputs["lai"], inputs["masks"], inputs["season"]).sum().backward()
    assert all(p.grad is None for p in model.enc1.parameters())
    assert all(p.grad is None for p in model.decoder.parameters())
    assert all(p.grad is not None for p in model.enc2.parameters())


def test_season_embedding_is_constant_map(tiny: FusedLAINet) -> None:
    season = torch.tensor([[0.5, -0.8], [0.0, 1.0]])
    out = tiny.enc1.season_embedding(season, 8, 12)
    assert out.shape == (2, 1, 8, 12)
    assert torch.equal(out, out[:, :, :1, :1].expand_as(out))


def test_mask_embedding_shared_across_steps(tiny: FusedLAINet) -> None:
    masks = make_inputs(1, 8, 8)["masks"]
    swapped = masks.flip(1)
    out, out_swapped = tiny.enc2.mask_embedding(masks), tiny.enc2.mask_embedding(swapped)
    assert out.shape == (1, 4, 8, 8)
    torch.testing.assert_close(out[:, :2], out_swapped[:, 2:])


def test_gradient_reaches_every_parameter() -> None:
    model = seeded_model(5, TINY).train()
    inputs = make_inputs(4, 32, 32, seed=1)
    target = torch.rand(4, 32, 32)
    weight = (torch.rand(4, 32, 32) > 0.3).float()
    loss = fused_loss(model(**inputs), target, weight)
    loss.backward()
    silent = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert silent == []


def test_fused_loss_weights() -> None:
    target = torch.zeros(1, 4, 4)
    weight = torch.ones(1, 4, 4)
    weight[0, 0, 0] = 0
    pred = Prediction(torch.full((1, 1, 4, 4), 1.0), torch.full((1, 1, 4, 4), 2.0),
                      torch.full((1, 1, 4, 4), 3.0))
    pred.lai[0, 0, 0, 0] = 100.0  # masked out
    expected = 1.0 + ALPHA * 4.0 + BETA * 9.0
    assert fused_loss(pred, target, weight).item() == pytest.approx(expected)
    assert masked_mse(pred.lai, target, torch.zeros(1, 4, 4)).item() == 0.0


def test_seeded_model_is_deterministic() -> None:
    inputs = make_inputs(1, 16, 16)
    state = torch.random.get_rng_state()
    a, b, c = seeded_model(11, TINY), seeded_model(11, TINY), seeded_model(12, TINY)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert not a.training
    with torch.no_grad():
        torch.testing.assert_close(a(**inputs).lai, b(**inputs).lai, rtol=0, atol=0)
        assert not torch.allclose(a(**inputs).lai, c(**inputs).lai)


# --------------------------------------------------------------------------- configuration


def test_config_round_trip() -> None:
    config = ModelConfig(dropout=0.1, batchnorm="conv", encoder_channels=[8, 16])  # type: ignore[arg-type]
    data = config.to_dict()
    assert data["encoder_channels"] == [8, 16]
    assert ModelConfig.from_dict(data) == config
    assert config.downsampling == 4  # the decoder keeps three levels


@pytest.mark.parametrize("changes,match", [
    ({"encoder_channels": []}, "encoder_channels"),
    ({"feature_width": 0}, "feature_width"),
    ({"dropout": 1.0}, "dropout"),
    ({"batchnorm": "after"}, "batchnorm"),
])
def test_config_validation(changes: dict[str, object], match: str) -> None:
    with pytest.raises(InputError, match=match):
        ModelConfig(**changes)  # type: ignore[arg-type]


def test_residual_output_adds_the_latest_clear_past() -> None:
    """The residual network predicts the change from the latest clear past LAI: t-1 where
    valid, else t-2 where valid, else 0; the same weights without the residual differ by
    exactly that base, in the decoder and in encoder 2's head (encoder 1 sees no LAI)."""
    from lamap.model.network import clear_past

    inputs = make_inputs(2, 16, 16, seed=5)
    valid = inputs["masks"][:, :, 0]
    base = clear_past(inputs["lai"], inputs["masks"])[:, 0]
    for y, x in ((0, 0), (3, 7), (9, 2), (15, 15), (6, 11)):
        t2, t1 = valid[0, 0, y, x] > 0.5, valid[0, 1, y, x] > 0.5
        want = inputs["lai"][0, 1, y, x] if t1 else inputs["lai"][0, 0, y, x] if t2 else 0.0
        assert float(base[0, y, x]) == pytest.approx(float(want))
    assert ((valid[:, 0] < 0.5) & (valid[:, 1] < 0.5)).any(), "some pixels have no clear past"
    residual = seeded_model(4, replace(TINY, residual=True))
    plain = seeded_model(4, replace(TINY, residual=False))
    with torch.no_grad():
        got, ref = residual(**inputs), plain(**inputs)
        torch.testing.assert_close(got.lai[:, 0], ref.lai[:, 0] + base)
        torch.testing.assert_close(got.enc2[:, 0], ref.enc2[:, 0] + base)
        torch.testing.assert_close(got.enc1, ref.enc1)
        alone = residual.forward_enc2(inputs["lai"], inputs["masks"], inputs["season"])
        torch.testing.assert_close(alone, got.enc2)


def test_configs_written_before_the_residual_read_back_without_it() -> None:
    """The shipped li2025-era and earlier fused checkpoints predate the option."""
    data = ModelConfig().to_dict()
    data.pop("residual")
    assert ModelConfig.from_dict(data).residual is False
    assert ModelConfig().residual is True  # new networks are residual
    with pytest.raises(InputError, match="residual"):
        ModelConfig(residual="yes")  # type: ignore[arg-type]


def test_config_from_dict_is_strict() -> None:
    data = ModelConfig().to_dict() | {"depth": 4}
    with pytest.raises(InputError, match="unknown keys \\['depth'\\]"):
        ModelConfig.from_dict(data)


@pytest.mark.parametrize("batchnorm", ["conv", "none"])
def test_other_batchnorm_positions(batchnorm: str) -> None:
    model = seeded_model(0, replace(TINY, batchnorm=batchnorm, dropout=0.2))  # type: ignore[arg-type]
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert n_bn == {"conv": 2 * 15, "none": 0}[batchnorm]  # 5 blocks per U-net
    with torch.no_grad():
        assert model(**make_inputs(1, 16, 16)).lai.shape == (1, 1, 16, 16)


# --------------------------------------------------------------------------- receptive field


def test_receptive_field_default_is_about_42() -> None:
    model = FusedLAINet().train()
    radius = receptive_field_radius(model, size=128)
    print(f"default FusedLAINet receptive-field radius: {radius}")
    assert 38 <= radius <= 46
    assert model.training  # mode restored


def test_receptive_field_too_small_input() -> None:
    with pytest.raises(InputError, match="larger size"):
        receptive_field_radius(seeded_model(0, TINY), size=64)


def test_recommended_halo_covers_radius() -> None:
    halo = recommended_halo(TINY)
    radius = receptive_field_radius(seeded_model(0, TINY))
    assert halo % DOWNSAMPLING == 0
    assert radius <= halo < radius + DOWNSAMPLING
    assert recommended_halo(seeded_model(9, TINY)) == halo


def test_outputs_ignore_pixels_beyond_radius(tiny: FusedLAINet) -> None:
    radius = receptive_field_radius(tiny)
    size, centre = 128, 64
    inputs = make_inputs(1, size, size, seed=2)
    far = torch.ones(size, size, dtype=torch.bool)
    far[centre - radius:centre + radius + 1, centre - radius:centre + radius + 1] = False
    changed = {k: torch.where(far, torch.rand_like(v) * 3, v) if v.dim() > 2 else v
               for k, v in inputs.items()}
    near = {k: v.clone() for k, v in inputs.items()}
    near["s1"][0, :, centre - 5, centre + 3] += 5.0  # inside the receptive field
    with torch.no_grad():
        base, moved, poked = (tiny(**x) for x in (inputs, changed, near))
    for a, b in zip(base, moved, strict=True):
        assert torch.equal(a[..., centre, centre], b[..., centre, centre])
    assert not torch.equal(base.lai[..., centre, centre], poked.lai[..., centre, centre])
    assert not torch.equal(base.lai, moved.lai)


# --------------------------------------------------------------------------- checkpoints


def test_shipped_demo_checkpoint_loads_with_its_state_dict_keys() -> None:
    from lamap.weights import demo_weights

    path = demo_weights()
    assert path is not None, "lamap/data/demo_model.pt ships with the package"
    raw = torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    state = loaded.model.state_dict()
    assert list(raw["state_dict"]) == list(FusedLAINet(loaded.config).state_dict()) == list(state)
    assert all(torch.equal(raw["state_dict"][k], v) for k, v in state.items())


def test_checkpoint_round_trip(tmp_path: Path, tiny: FusedLAINet) -> None:
    path = tmp_path / "model.pt"
    training = {"epochs": 3, "rmse": np.float64(0.1), "splits": ("clear", "cloudy")}
    assert save_checkpoint(path, tiny, feature_spec=SPEC, training=training,
                           extra={"note": "x"}) == path
    assert not list(tmp_path.glob(".*tmp"))
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "lamap-checkpoint" and raw["format_version"] == 1
    loaded = load_checkpoint(path)
    assert not loaded.model.training
    assert loaded.config == TINY
    assert loaded.feature_spec == SPEC
    assert loaded.training == {"epochs": 3, "rmse": 0.1, "splits": ["clear", "cloudy"]}
    assert loaded.extra == {"note": "x"}
    assert loaded.sha256 == file_sha256(path) and len(loaded.sha256) == 64
    inputs = make_inputs(2, 32, 48)
    with torch.no_grad():
        for a, b in zip(tiny(**inputs), loaded.model(**inputs), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_checkpoint_mismatched_state(tmp_path: Path, tiny: FusedLAINet) -> None:
    path = tmp_path / "bad.pt"
    save_checkpoint(path, tiny, feature_spec=SPEC)
    data = torch.load(path, weights_only=True)
    data["config"]["feature_width"] = 8
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="does not fit") as info:
        load_checkpoint(path)
    assert "enc1.head.weight is [1, 4, 1, 1], expected [1, 8, 1, 1]" in str(info.value)
    del data["state_dict"]["enc1.head.bias"]
    data["config"]["feature_width"] = 4
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="1 missing keys: enc1.head.bias"):
        load_checkpoint(path)


def test_checkpoint_errors(tmp_path: Path, tiny: FusedLAINet) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    text = tmp_path / "notes.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(text)
    bare = tmp_path / "bare.pt"
    torch.save(tiny.state_dict(), bare)
    with pytest.raises(CheckpointError, match="not a lamap checkpoint.*bare state_dict"):
        load_checkpoint(bare)
    good = tmp_path / "good.pt"
    save_checkpoint(good, tiny, feature_spec=SPEC)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="corrupted"):
        load_checkpoint(truncated)


def test_checkpoint_newer_format(tmp_path: Path, tiny: FusedLAINet) -> None:
    path = tmp_path / "new.pt"
    save_checkpoint(path, tiny, feature_spec=SPEC)
    data = torch.load(path, weights_only=True)
    data["format_version"] = 2
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="format version 2.*upgrade lamap"):
        load_checkpoint(path)


def test_checkpoint_with_objects_is_refused(tmp_path: Path, tiny: FusedLAINet) -> None:
    path = tmp_path / "objects.pt"
    save_checkpoint(path, tiny, feature_spec=SPEC)
    data = torch.load(path, weights_only=True)
    data["training"] = {"when": Path("x")}
    torch.save(data, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)


def test_save_refuses_non_plain_metadata(tmp_path: Path, tiny: FusedLAINet) -> None:
    with pytest.raises(InputError, match=r"training.when is a PosixPath"):
        save_checkpoint(tmp_path / "m.pt", tiny, feature_spec=SPEC, training={"when": Path("x")})
    with pytest.raises(InputError, match="mask channels"):
        save_checkpoint(tmp_path / "m.pt", tiny, feature_spec={"onehot_classes": [4]})
    assert not list(tmp_path.iterdir())


def test_save_into_missing_directory(tmp_path: Path, tiny: FusedLAINet) -> None:
    with pytest.raises(CheckpointError, match="directory exists"):
        save_checkpoint(tmp_path / "no" / "m.pt", tiny, feature_spec=SPEC)


# --------------------------------------------------------------------------- devices


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(InputError, match="not a torch device"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            resolve_device("cuda")


def test_checkpoint_metadata_with_str_subclasses_loads(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from lamap.features import FeatureSpec
    from lamap.model import ModelConfig, load_checkpoint, save_checkpoint, seeded_model

    path = tmp_path / "m.pt"
    save_checkpoint(path, seeded_model(0, ModelConfig.tiny()),
                    feature_spec=FeatureSpec().to_dict(), training={"torch": torch.__version__})
    assert load_checkpoint(path).training["torch"] == str(torch.__version__)
