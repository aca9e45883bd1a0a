"""The model registry: declarations; checkpoints name their architecture; wrong ones refused."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from lamap.errors import CheckpointError, InputError, TrainingError
from lamap.feature_spec import FeatureSpec
from lamap.model import (
    ARCHITECTURES,
    TRAINING_CACHE_SPEC,
    FusedLAINet,
    Li2025Config,
    Li2025Net,
    ModelConfig,
    get_architecture,
    load_checkpoint,
    recommended_halo,
    save_checkpoint,
    seeded_network,
)
from lamap.model.checkpoint import CALIBRATION_BUFFERS
from lamap.train.run import initial_model
from lamap.weights import demo_weights

TINY = {"lnb-fused": ModelConfig.tiny(), "li2025": Li2025Config.tiny()}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("registry")
    found = {}
    for name, arch in ARCHITECTURES.items():
        path = folder / f"{name}.pt"
        save_checkpoint(path, seeded_network(arch, 0, TINY[name]),
                        feature_spec=arch.spec.to_dict())
        found[name] = path
    return found


def test_every_architecture_declares_inputs_halo_and_stages() -> None:
    assert set(ARCHITECTURES) == {"lnb-fused", "li2025"}
    fused, li = ARCHITECTURES["lnb-fused"], ARCHITECTURES["li2025"]
    assert fused.stage_names == ("enc1", "enc2", "fused", "sigma")
    assert li.stage_names == ("step1", "features", "step2", "sigma")
    assert fused.spec == FeatureSpec() and fused.spatial_inputs == ("s1", "lai", "masks")
    assert (li.spec.s1_at_steps, li.spec.s1_window_days, li.spec.s1_passes) == (False, 36, 6)
    assert fused.halo(ModelConfig()) == 44 and li.halo(Li2025Config()) == 20
    assert recommended_halo(Li2025Net(Li2025Config.tiny())) == 8
    for arch in ARCHITECTURES.values():
        assert TRAINING_CACHE_SPEC.provides(arch.spec) and arch.cache_spec() == TRAINING_CACHE_SPEC
        assert arch.methods["lai"] in ("model", "li2025")
    assert get_architecture("fused-lai-net") is fused  # the name older checkpoints carry
    with pytest.raises(InputError, match="unknown model architecture 'unet'.*li2025"):
        get_architecture("unet")


@pytest.mark.parametrize("name", ["lnb-fused", "li2025"])
def test_checkpoints_name_their_architecture_and_load_with_weights_only(
        checkpoints: dict[str, Path], name: str) -> None:
    raw = torch.load(checkpoints[name], weights_only=True)
    assert raw["architecture"] == name
    loaded = load_checkpoint(checkpoints[name])
    assert loaded.architecture.name == name
    assert type(loaded.model) is ARCHITECTURES[name].network
    assert loaded.config == TINY[name]
    original = seeded_network(ARCHITECTURES[name], 0, TINY[name]).state_dict()
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in original.items())
    assert load_checkpoint(checkpoints[name], architecture=name).sha256 == loaded.sha256


def test_a_checkpoint_of_another_architecture_is_refused(checkpoints: dict[str, Path]) -> None:
    with pytest.raises(CheckpointError, match="holds a 'lnb-fused' model, but a 'li2025' "
                                              "model is expected"):
        load_checkpoint(checkpoints["lnb-fused"], architecture="li2025")
    with pytest.raises(CheckpointError, match="--arch li2025"):
        initial_model("lnb-fused", checkpoints["li2025"])


def test_weights_of_one_architecture_under_the_others_name_are_refused(
        tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    data = torch.load(checkpoints["li2025"], weights_only=True)
    data["architecture"] = "lnb-fused"
    torch.save(data, tmp_path / "liar.pt")
    with pytest.raises(CheckpointError, match="unusable lnb-fused config"):
        load_checkpoint(tmp_path / "liar.pt")
    data["architecture"] = "resnet"
    torch.save(data, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match="architecture 'resnet'; this lamap builds "
                                              "lnb-fused, li2025"):
        load_checkpoint(tmp_path / "unknown.pt")


def test_the_spec_must_make_the_models_inputs(tmp_path: Path) -> None:
    li = seeded_network(ARCHITECTURES["li2025"], 0, Li2025Config.tiny())
    with pytest.raises(InputError, match="0 Sentinel-1 series passes but the model takes 6"):
        save_checkpoint(tmp_path / "a.pt", li, feature_spec=FeatureSpec().to_dict())
    fused = seeded_network(ARCHITECTURES["lnb-fused"], 0, ModelConfig.tiny())
    series_only = ARCHITECTURES["li2025"].spec.to_dict()
    with pytest.raises(InputError, match="no Sentinel-1 steps"):
        save_checkpoint(tmp_path / "b.pt", fused, feature_spec=series_only)


#: SHA-256 of the shipped fused weights' mean network (every tensor but the spread head's): the
#: family weights' selected end-to-end epoch, the one scored on the held-out worlds; the
#: spread stage that followed must not change the map's LAI.
SHIPPED_MEAN = "6643b8ba3a3e9b971c77402422ad07d835c128a748a02b56f25caf71d9095373"


def test_the_shipped_fused_weights_keep_their_mean_network() -> None:
    import hashlib

    path = demo_weights()
    assert path is not None
    loaded = load_checkpoint(path)
    assert isinstance(loaded.model, FusedLAINet) and loaded.architecture.name == "lnb-fused"
    state = torch.load(path, weights_only=True)["state_dict"]
    digest = hashlib.sha256()
    for key in sorted(k for k in state if not k.startswith("sigma.")):
        digest.update(key.encode())
        digest.update(state[key].numpy().tobytes())
    assert digest.hexdigest() == SHIPPED_MEAN


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_every_shipped_demo_checkpoint_loads_with_a_calibrated_spread(name: str) -> None:
    path = demo_weights(name)
    assert path is not None, f"no shipped demo weights for {name}"
    loaded = load_checkpoint(path)  # torch.load(weights_only=True) inside
    assert loaded.architecture.name == name
    state = torch.load(path, weights_only=True)["state_dict"]
    scales = [float(state[key]) for key in state if key.endswith(CALIBRATION_BUFFERS)]
    assert scales and all(scale > 0 and scale != 1.0 for scale in scales)  # fitted, not 1


def test_an_architecture_name_names_its_shipped_weights(tmp_path: Path) -> None:
    from lamap.weights import resolve_model

    assert resolve_model("li2025") == str(demo_weights("li2025"))
    assert resolve_model(None) == str(demo_weights())
    assert resolve_model(tmp_path / "mine.pt") == str(tmp_path / "mine.pt")  # a path stays one


def test_initial_model_adds_an_untrained_spread_head(checkpoints: dict[str, Path]) -> None:
    for name in ARCHITECTURES:
        model = initial_model(name, checkpoints[name])
        assert model.config.sigma_head
        old = load_checkpoint(checkpoints[name]).model.state_dict()
        assert all(torch.equal(v, model.state_dict()[k]) for k, v in old.items())
    without = replace(ModelConfig.tiny(), sigma_head=False)
    assert seeded_network(ARCHITECTURES["lnb-fused"], 0, without).sigma is None


def test_resuming_with_another_architecture_is_refused(tmp_path: Path) -> None:
    from lamap.train.config import TrainConfig
    from lamap.train.state import read_state

    path = tmp_path / "m.state.pt"
    config = TrainConfig(epochs=1)
    torch.save({"format": "lamap-train-state", "config": config.to_dict(),
                "architecture": "lnb-fused"}, path)
    with pytest.raises(TrainingError, match="trains a 'lnb-fused' model, not 'li2025'"):
        read_state(path, config, "li2025")


def test_the_cli_names_an_unknown_architecture_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lamap.cli.main", "train", "--arch", "unet", "--out",
         str(tmp_path / "m.pt"), "--catalog", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "lamap: error: unknown model architecture 'unet': lamap has lnb-fused, li2025 "
        "(choose one with --arch)"]
