"""Checkpoints of any registered network: written atomically, loaded with ``weights_only=True``.

A checkpoint (:func:`save_checkpoint`, :func:`load_checkpoint`) is a dict of plain types and
tensors, so it loads with ``torch.load(..., weights_only=True)``: ``format``,
``format_version``, ``architecture`` (a name in :mod:`lamap.model.registry`; the network is
rebuilt from it and ``config``), ``lamap_version``, ``config`` (the architecture's
``to_dict()``), ``feature_spec``, ``training`` (the training summary), ``extra`` and
``state_dict``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lamap import __version__
from lamap.errors import CheckpointError, InputError
from lamap.feature_spec import SERIES_DEFAULTS
from lamap.model.device import DeviceLike, resolve_device
from lamap.model.registry import ARCHITECTURES, Architecture, architecture_of, get_architecture
from lamap.runtime import write_atomic

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_FORMAT_VERSION",
    "CheckpointError",
    "LoadedModel",
    "file_sha256",
    "load_checkpoint",
    "save_checkpoint",
]

#: Value of a checkpoint's ``format`` key.
CHECKPOINT_FORMAT = "lamap-checkpoint"
#: Newest checkpoint layout this lamap writes and reads.
CHECKPOINT_FORMAT_VERSION = 1

_CHUNK = 1 << 20
#: State-dict keys of calibration factors: a file written before them gets their default (1).
CALIBRATION_BUFFERS = ("sigma.scale", "sd_scale")



@dataclass(frozen=True)
class LoadedModel:
    """A model loaded by :func:`load_checkpoint`, with the metadata it was saved with.

    Attributes
    ----------
    model : torch.nn.Module
        The network (:class:`~lamap.model.FusedLAINet`, :class:`~lamap.model.Li2025Net`),
        in eval mode, on the requested device.
    config : ModelConfig or Li2025Config
        Its configuration.
    feature_spec : dict
        The feature definition it was trained with (:meth:`lamap.features.FeatureSpec.to_dict`).
    training : dict
        Training summary (empty for an untrained model).
    lamap_version : str
        Version of lamap that wrote the checkpoint.
    sha256 : str
        Hex digest of the checkpoint file.
    extra : dict
        Anything else the writer stored.
    """

    model: nn.Module
    config: Any
    feature_spec: dict[str, Any]
    training: dict[str, Any]
    lamap_version: str
    sha256: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> Architecture:
        """The registered architecture of the model."""
        return architecture_of(self.model)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Return the SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, *,
                    feature_spec: Mapping[str, Any], training: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` and its metadata to ``path`` atomically (temporary file, then rename).

    Parameters
    ----------
    path : str or path-like
        Destination file (conventionally ``*.pt``); its directory must exist.
    model : torch.nn.Module
        A network of a registered architecture; its weights are copied to the CPU.
    feature_spec : mapping
        The feature definition of its inputs, :meth:`lamap.features.FeatureSpec.to_dict`.
    training : mapping, optional
        Training summary (data, epochs, metrics per split...).
    extra : mapping, optional
        Anything else; plain types only.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputError
        If a metadata value is not a plain type (dict with str keys, list, str, int, float,
        bool, None, tensor), the model is of no registered architecture, or the feature
        spec does not make the model's inputs.
    CheckpointError
        If the file cannot be written.
    """
    path = Path(path)
    arch = architecture_of(model)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "architecture": arch.name,
        "lamap_version": __version__,
        "config": _config_of(model).to_dict(),
        "feature_spec": _plain(feature_spec, "feature_spec"),
        "training": _plain(training or {}, "training"),
        "extra": _plain(extra or {}, "extra"),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    _check_spec_fits(model.config, payload["feature_spec"])
    _atomic_save(payload, path)
    return path


def _config_of(model: nn.Module) -> Any:
    return model.config


def _plain(value: Any, where: str) -> Any:
    """Copy ``value`` into types that ``torch.load(weights_only=True)`` accepts."""
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise InputError(f"checkpoint {where} has non-string keys {bad}: use strings")
        return {k: _plain(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return _plain(value.item(), where)
    if value is None or isinstance(value, bool):
        return value
    for plain in (str, int, float):  # subclasses (torch.__version__ is a str subclass)
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    raise InputError(
        f"checkpoint {where} is a {type(value).__name__}; checkpoints hold only dicts, lists, "
        "str, int, float, bool, None and tensors (so they load with weights_only=True): "
        "convert it, e.g. with .tolist() or str()"
    )


def _check_spec_fits(config: Any, spec: Mapping[str, Any]) -> None:
    onehot = spec.get("onehot_classes")
    if isinstance(onehot, list) and 1 + len(onehot) != config.mask_channels:
        raise InputError(
            f"the feature spec gives {1 + len(onehot)} mask channels per step (valid and "
            f"{len(onehot)} one-hot classes) but the model takes {config.mask_channels}: build "
            "the model with ModelConfig(mask_channels=...) matching the spec"
        )
    series = {**SERIES_DEFAULTS, **spec}
    passes = getattr(config, "passes", None)
    if passes is not None and series["s1_passes"] != passes:
        raise InputError(
            f"the feature spec gives {series['s1_passes']} Sentinel-1 series passes but the "
            f"model takes {passes}: give it the spec of its architecture (lamap.model.registry)"
        )
    if passes is None and not series["s1_at_steps"]:
        raise InputError("the feature spec has no Sentinel-1 steps (t-2, t-1, t), which the "
                         "fused model takes: give it the spec of its architecture")


def _atomic_save(payload: dict[str, Any], path: Path) -> None:
    try:
        write_atomic(path, lambda handle: torch.save(payload, handle))
    except OSError as err:
        raise CheckpointError(
            f"cannot write checkpoint {path}: {err.strerror}; check that the directory "
            "exists and is writable"
        ) from err


def load_checkpoint(path: str | os.PathLike[str], *, map_location: DeviceLike = "cpu",
                    architecture: str | None = None) -> LoadedModel:
    """Load a checkpoint written by :func:`save_checkpoint` (with ``weights_only=True``).

    The network is rebuilt from the architecture the checkpoint names and its config.

    Parameters
    ----------
    path : str or path-like
        The checkpoint file.
    map_location : str or torch.device
        Device for the model, as in :func:`resolve_device` (``"cpu"``, ``"cuda"``, ``"auto"``).
    architecture : str, optional
        The architecture the caller expects; a checkpoint of another one is refused.

    Returns
    -------
    LoadedModel
        The model in eval mode with its config, feature spec, training summary, the lamap
        version that wrote it and the file's SHA-256.

    Raises
    ------
    CheckpointError
        If the file is missing, corrupted, not a lamap checkpoint, from a newer format, of an
        unknown architecture or of another than ``architecture``, or holds weights that do
        not fit its config (the message names the keys and shapes).
    InputError
        If ``map_location`` is not an available device.
    """
    path = Path(path)
    device = resolve_device(map_location)
    data = _read_checkpoint(path, device)
    arch = _check_header(data, path, architecture)
    config = _config_from(arch, data, path)
    model = arch.build(config)
    _load_state(model, data["state_dict"], path, arch)
    return LoadedModel(
        model=model.to(device).eval(),
        config=config,
        feature_spec=_field(data, "feature_spec", dict, path),
        training=_field(data, "training", dict, path),
        lamap_version=_field(data, "lamap_version", str, path),
        sha256=file_sha256(path),
        extra=_field(data, "extra", dict, path),
    )


def _read_checkpoint(path: Path, device: torch.device) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist or is not a file: give the path of a *.pt "
            "written by `lamap train` or lamap.model.save_checkpoint"
        )
    if not zipfile.is_zipfile(path):
        raise CheckpointError(
            f"checkpoint {path} cannot be read: it is not a torch zip archive; the file is "
            "corrupted, truncated or of another kind: copy or train it again"
        )
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"checkpoint {path} holds objects other than plain types and tensors, so it cannot "
            f"be loaded safely (weights_only=True): {_first_line(err)}; re-save it with "
            "lamap.model.save_checkpoint"
        ) from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({type(err).__name__}: {_first_line(err)}); "
            "the file is corrupted, truncated or not a torch file: copy or train it again"
        ) from err
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(_not_lamap_message(path, data))
    return data


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _not_lamap_message(path: Path, data: object) -> str:
    found = f"a dict with keys {sorted(map(str, data))[:8]}" if isinstance(data, dict) else (
        f"a {type(data).__name__}")
    hint = ("; it looks like a bare state_dict: load it into its network (e.g. FusedLAINet) "
            "and re-save it with lamap.model.save_checkpoint") if isinstance(data, dict) and all(
        isinstance(v, Tensor) for v in data.values()) else ""
    return (f"{path} is not a lamap checkpoint: it holds {found}, without "
            f"format={CHECKPOINT_FORMAT!r}{hint}")


def _check_header(data: dict[str, Any], path: Path, expected: str | None) -> Architecture:
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CheckpointError(
            f"checkpoint {path} has an invalid format_version {version!r}: the file was "
            "edited or damaged; write it again with lamap.model.save_checkpoint"
        )
    if version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {version} (written by lamap "
            f"{data.get('lamap_version')}), newer than the version {CHECKPOINT_FORMAT_VERSION} "
            f"this lamap {__version__} reads: upgrade lamap"
        )
    name = data.get("architecture")
    try:
        arch = get_architecture(str(name))
    except InputError:
        raise CheckpointError(
            f"checkpoint {path} holds architecture {name!r}; this lamap builds "
            f"{', '.join(ARCHITECTURES)}: use the lamap version that wrote it"
        ) from None
    if expected is not None and get_architecture(expected).name != arch.name:
        raise CheckpointError(
            f"checkpoint {path} holds a {arch.name!r} model, but a {expected!r} model is "
            f"expected here: give a {expected} checkpoint, or ask for --arch {arch.name}"
        )
    return arch


def _config_from(arch: Architecture, data: dict[str, Any], path: Path) -> Any:
    try:
        return arch.config_from_dict(data.get("config"))  # type: ignore[arg-type]
    except InputError as err:
        raise CheckpointError(f"checkpoint {path} has an unusable {arch.name} config: "
                              f"{err}") from err


def _field(data: dict[str, Any], name: str, kind: type, path: Path) -> Any:
    value = data.get(name)
    if not isinstance(value, kind):
        raise CheckpointError(
            f"checkpoint {path} has {name} of type {type(value).__name__}, expected "
            f"{kind.__name__}: the file was edited or damaged; write it again"
        )
    return value


def _load_state(model: nn.Module, state: object, path: Path, arch: Architecture) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {path} has no state_dict of tensors: write it again")
    defaults = {k: v for k, v in model.state_dict().items()
                if k.endswith(CALIBRATION_BUFFERS) and k not in state}
    state = {**state, **defaults}  # calibration factors of files written before them: 1
    problems = _state_mismatch(model.state_dict(), state)
    if problems:
        config = _config_of(model).to_dict()
        raise CheckpointError(
            f"checkpoint {path} does not fit its {arch.name} config {config}: "
            f"{'; '.join(problems)}. The weights were saved from another architecture or "
            "edited; save them with the model they came from"
        )
    model.load_state_dict(state)


def _state_mismatch(expected: Mapping[str, Tensor], found: Mapping[str, Tensor],
                    limit: int = 5) -> list[str]:
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} is {list(found[k].shape)}, expected {list(v.shape)}"
              for k, v in expected.items() if k in found and found[k].shape != v.shape]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected),
                         ("wrong shapes", shapes)):
        if items:
            more = f" and {len(items) - limit} more" if len(items) > limit else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return problems
