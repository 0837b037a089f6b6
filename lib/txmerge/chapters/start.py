"""The one start-up sequence of a chapter, calling down: validate → (paper preset) prefetch check → plan → torch.

Every chapter's first code cell, after its ``parameters`` cell::

    from txmerge.chapters.start import start
    P, DEVICE = start("04_residual", globals())
"""

from __future__ import annotations

from typing import Any

from txmerge.base.precision import resolve_device
from txmerge.chapters.params import validate_namespace
from txmerge.chapters.plan import show_plan
from txmerge.chapters.prefetch import require_for
from txmerge.chapters.schemas import CommonParams


def setup_torch(params: CommonParams) -> str:
    """Apply ``threads`` and ``seed`` to torch and return the device string (see ``resolve_device``)."""
    import torch

    if params.threads:
        torch.set_num_threads(params.threads)
    torch.manual_seed(params.seed)
    return resolve_device(params.device)


def require_online_for(params: CommonParams) -> None:
    """Before any work, the ``paper`` preset needs the Hub or, offline (HF_HUB_OFFLINE=1), every model and
    dataset of the chapter in the Hugging Face caches (``txmerge prefetch``); then the chapter's plan
    (models, tokens, curves, time estimate: :mod:`txmerge.chapters.plan`) is printed. Other presets: nothing."""
    if params.preset == "paper":
        require_for(params)
        show_plan(params)


def start(chapter: str, namespace: dict[str, Any]) -> tuple[CommonParams, str]:
    """(validated parameters, device) of ``chapter`` from the notebook's ``globals()``: one-sentence errors
    for bad values, the paper preset's Hub check and plan, then torch's threads and seed."""
    params = validate_namespace(chapter, namespace)
    require_online_for(params)
    return params, setup_torch(params)
