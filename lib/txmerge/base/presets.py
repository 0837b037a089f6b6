"""The book's presets, one list for every module: ``tiny`` (default, offline CPU), ``smoke`` (seconds,
tests and CI) and ``paper`` (MultiBERTs and the Hub's datasets, a GPU)."""

from __future__ import annotations

from txmerge.base.errors import TxmergeError

PRESETS: tuple[str, ...] = ("tiny", "smoke", "paper")


def check_preset(preset: str) -> str:
    """``preset`` if it is one of :data:`PRESETS`, else one clear error listing them."""
    if preset not in PRESETS:
        raise TxmergeError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)} (e.g. make book PRESET=tiny).")
    return preset
