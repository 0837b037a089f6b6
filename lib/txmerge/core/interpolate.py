"""Straight lines between two models, and the loss barrier along them.

θ(λ) = λ·θ_A + (1−λ)·θ'_B, so λ = 1 is model A and λ = 0 is (permuted) model B; the paper's grid
is 21 points ``np.arange(21) / 20``. One working model is reused: its tensors are overwritten in
place at each λ (``torch.lerp``) instead of building a new model per point.
"""

from __future__ import annotations

import copy
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from txmerge.base.errors import TxmergeError


def default_lambdas(n: int = 21) -> np.ndarray:
    """The paper's grid: n evenly spaced points from 0 to 1 (21 by default)."""
    return np.arange(n) / (n - 1)


def check_lambdas(lambdas) -> np.ndarray:
    """Validate a λ grid: increasing, within [0, 1], and containing both endpoints 0 and 1."""
    lam = np.asarray(lambdas, dtype=float)
    if lam.ndim != 1 or lam.size < 2:
        raise TxmergeError("The λ grid needs at least the two endpoints 0 and 1, e.g. np.arange(21) / 20.")
    if not np.all(np.isfinite(lam)):
        raise TxmergeError(f"The λ grid contains NaN or infinite values ({lam.tolist()}); use finite numbers in [0, 1], e.g. np.arange(21) / 20.")
    if not (np.isclose(lam[0], 0.0) and np.isclose(lam[-1], 1.0)):
        raise TxmergeError(
            f"The λ grid runs from {lam[0]:g} to {lam[-1]:g} but must start at 0 (model B) and end at 1 (model A): "
            "the barrier is measured against both endpoint losses; use e.g. np.arange(21) / 20."
        )
    if np.any(np.diff(lam) <= 0) or lam.min() < 0 or lam.max() > 1:
        raise TxmergeError("The λ grid must be strictly increasing within [0, 1], e.g. np.arange(21) / 20.")
    return lam


def interpolate_state_dicts(sd_a: dict, sd_b: dict, lam: float) -> dict:
    """λ·A + (1−λ)·B for every floating tensor; other tensors (integer buffers) are taken from A."""
    if sd_a.keys() != sd_b.keys():
        missing = sorted(set(sd_a) ^ set(sd_b))[:3]
        raise TxmergeError(f"The two models have different parameters (e.g. {missing}); interpolate models of one architecture.")
    return {k: torch.lerp(sd_b[k].float(), sd_a[k].float(), lam) if sd_a[k].is_floating_point() else sd_a[k] for k in sd_a}


class InterpolationPath:
    """A reusable working model positioned anywhere on the line between ``model_a`` and ``model_b``.

    The working model has ``model_b``'s structure (so an untied decoder of a permuted B is kept);
    A's tensors are read by name from ``model_a.state_dict()``.
    """

    def __init__(self, model_a: torch.nn.Module, model_b: torch.nn.Module):
        sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
        extra = sorted(set(sd_a) - set(sd_b))
        if extra:
            raise TxmergeError(f"Model A has parameters that model B lacks (e.g. {extra[:3]}); "
                               "interpolate two models of one architecture (same layers, heads and task head).")
        self.model = copy.deepcopy(model_b).float().eval()
        self._pairs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        seen: set[int] = set()
        for name, target in self.model.state_dict(keep_vars=True).items():
            if id(target) in seen:  # tied tensors (the MLM decoder) are one tensor
                continue
            seen.add(id(target))
            if name not in sd_a or name not in sd_b:
                raise TxmergeError(f"Parameter {name} is missing from one model; interpolate models of one architecture.")
            a, b = sd_a[name], sd_b[name]
            if a.shape != b.shape:
                raise TxmergeError(f"Parameter {name} has shape {tuple(a.shape)} in A but {tuple(b.shape)} in B; the architectures differ.")
            if target.is_floating_point():
                dev = target.device
                self._pairs.append((target, a.detach().to(dev, torch.float32).clone(), b.detach().to(dev, torch.float32).clone()))

    @torch.no_grad()
    def set(self, lam: float) -> torch.nn.Module:
        """Overwrite the working model's tensors with λ·A + (1−λ)·B and return it."""
        for target, a, b in self._pairs:
            target.data.copy_(torch.lerp(b, a, float(lam)))
        return self.model


def interpolation_curve(
    model_a: torch.nn.Module,
    model_b: torch.nn.Module,
    evaluate: Callable[[torch.nn.Module], dict[str, float]],
    lambdas=None,
    progress: bool = True,
    desc: str = "λ",
) -> pd.DataFrame:
    """Evaluate ``evaluate(model)`` (a dict with at least "loss") at every λ; one row per λ."""
    lam = check_lambdas(default_lambdas() if lambdas is None else lambdas)
    path = InterpolationPath(model_a, model_b)
    rows = []
    for value in tqdm(lam, desc=desc, disable=not progress, leave=False):
        metrics = evaluate(path.set(value))
        if "loss" not in metrics:
            raise TxmergeError("The evaluation function must return a dict with a 'loss' entry.")
        rows.append({"lambda": float(value), **metrics})
    return pd.DataFrame(rows)


def loss_barrier(losses, lambdas=None) -> float:
    """The paper's barrier: max over λ of the loss minus the mean of the two endpoint losses (nats)."""
    loss = np.asarray(losses, dtype=float)
    lam = check_lambdas(default_lambdas(loss.size) if lambdas is None else lambdas)
    if lam.size != loss.size:
        raise TxmergeError(f"{loss.size} losses for {lam.size} values of λ; give one loss per λ.")
    return float(loss.max() - 0.5 * (loss[0] + loss[-1]))


def loss_barrier_linear(losses, lambdas=None) -> float:
    """The alternative barrier: max over λ of loss(λ) − [λ·L_A + (1−λ)·L_B] (Entezari et al.)."""
    loss = np.asarray(losses, dtype=float)
    lam = check_lambdas(default_lambdas(loss.size) if lambdas is None else lambdas)
    if lam.size != loss.size:
        raise TxmergeError(f"{loss.size} losses for {lam.size} values of λ; give one loss per λ.")
    return float(np.max(loss - (lam * loss[-1] + (1 - lam) * loss[0])))


def dips_below_endpoints(losses) -> bool:
    """Whether some interior point of a curve (losses over λ, endpoints first and last) is below both endpoints."""
    loss = np.asarray(losses, dtype=float)
    return bool(loss.size > 2 and loss[1:-1].min() < min(loss[0], loss[-1]))


def m_shaped(losses, lambdas=None, margin: float = 0.05) -> bool:
    """Whether a curve has a bump on each side of a lower middle (the paper's "M" shape): the highest loss on
    λ < 0.5 and on λ > 0.5 both exceed the loss at λ = 0.5 by more than ``margin`` (relative)."""
    loss = np.asarray(losses, dtype=float)
    lam = check_lambdas(default_lambdas(loss.size) if lambdas is None else lambdas)
    mid = loss[np.argmin(np.abs(lam - 0.5))]
    left, right = loss[lam < 0.5].max(), loss[lam > 0.5].max()
    return bool(min(left, right) > mid + margin * max(abs(mid), 1e-9))
