"""Mixed precision of the forward passes: bf16 autocast on CUDA (as the official code runs its models),
float64 statistics and float32 losses whatever the forward pass ran in; and which device ``auto`` means.

:func:`forward_autocast` is the one switch: ``enabled=None`` (the default everywhere) turns bf16
autocast on for CUDA devices only, so CPU results are bit-for-bit those of float32; ``enabled=True``
forces it, on CPU too (``torch.autocast("cpu", dtype=torch.bfloat16)``), which is how the tests
exercise the GPU code path and bound its error against float32. ``TXMERGE_AUTOCAST=0`` turns it off
on CUDA as well (e.g. to compare a GPU run with float32).
"""

from __future__ import annotations

import contextlib
import os

import torch

from txmerge.base.errors import TxmergeError


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if available, else ``mps`` if available, else ``cpu``; an unavailable
    ``cuda`` is refused in one sentence."""
    if device != "auto":
        if device == "cuda" and not torch.cuda.is_available():
            raise TxmergeError("device=cuda was asked for but torch sees no CUDA GPU; use device=auto or cpu.")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def autocast_enabled(device: torch.device | str, enabled: bool | None = None) -> bool:
    """Whether forward passes on ``device`` run under autocast (``enabled``: None = CUDA unless TXMERGE_AUTOCAST=0)."""
    if enabled is not None:
        return bool(enabled)
    return torch.device(device).type == "cuda" and os.environ.get("TXMERGE_AUTOCAST", "1") != "0"


def forward_autocast(device: torch.device | str, enabled: bool | None = None, dtype: torch.dtype = torch.bfloat16):
    """Context for forward passes on ``device``: bf16 autocast when :func:`autocast_enabled`, else nothing."""
    if not autocast_enabled(device, enabled):
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def full_precision(device: torch.device | str):
    """Context inside a forward pass (hooks, losses) where autocast must not touch the arithmetic."""
    return torch.autocast(torch.device(device).type, enabled=False)
