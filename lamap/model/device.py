"""Where and how torch runs: the device (:func:`resolve_device`) and its CPU threads.

:func:`torch_threads` is the one place in lamap that changes torch's thread count for a
block of work and restores it afterwards (training, evaluation).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeAlias

import torch

from lamap.errors import InputError

__all__ = ["DeviceLike", "resolve_device", "torch_threads"]

DeviceLike: TypeAlias = str | torch.device


def resolve_device(device: DeviceLike = "auto") -> torch.device:
    """Turn ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` into a usable torch device.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` picks CUDA when available, else the CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    InputError
        If the name is not a device, or CUDA (or that CUDA index) is not available.
    """
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device.strip().lower() if isinstance(device, str) else device)
    except (RuntimeError, TypeError) as err:
        raise InputError(
            f"device {device!r} is not a torch device: use 'cpu', 'cuda', 'cuda:N' or 'auto'"
        ) from err
    if resolved.type == "cuda":
        _check_cuda(resolved)
    elif resolved.type != "cpu":
        raise InputError(f"device {device!r} is not supported: use 'cpu', 'cuda' or 'auto'")
    return resolved


def _check_cuda(device: torch.device) -> None:
    if not torch.cuda.is_available():
        raise InputError(
            f"device {str(device)!r} was requested but CUDA is not available (torch "
            f"{torch.__version__}, built for CUDA {torch.version.cuda}): use device 'cpu' or "
            "'auto', or install a CUDA build of torch on a machine with an NVIDIA GPU"
        )
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise InputError(
            f"device {str(device)!r} was requested but only {count} CUDA device(s) exist: "
            f"use an index below {count}"
        )


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Set ``torch.set_num_threads`` inside a ``with`` block, then restore the caller's count.

    Parameters
    ----------
    threads : int, optional
        Intra-op threads for the block; None keeps torch's current count.

    Yields
    ------
    None

    Raises
    ------
    InputError
        If ``threads`` is not a positive integer.
    """
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise InputError(f"threads must be a positive integer or None, got {threads!r}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
