"""The result tables of an experiment: one interpolation path (:class:`CurveResult`), several pairs
and methods (:class:`Results`, tidy tables for the chapters) and the barrier table beside the paper's."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from txmerge.base.errors import TxmergeError
from txmerge.experiments.verdicts import mean_se

Pair = tuple[int, int]


@dataclass
class CurveResult:
    """One interpolation path: losses per λ, both barriers, and the verification of B's permutation."""

    pair: Pair
    name: str
    method: dict[str, Any]
    curve: pd.DataFrame
    barrier: float
    barrier_linear: float
    max_abs_diff: float
    function_preserving: bool
    matched_corr: dict[str, float]
    identity_corr: dict[str, float]
    seconds: float


@dataclass
class Results:
    """Curves of several pairs and methods, with tidy tables for the chapters."""

    results: list[CurveResult] = field(default_factory=list)

    @property
    def curves(self) -> pd.DataFrame:
        """Tidy table: pair, method, lambda, loss (+ metrics)."""
        frames = [r.curve.assign(pair=f"{r.pair[0]}-{r.pair[1]}", method=r.name) for r in self.results]
        return pd.concat(frames, ignore_index=True)

    @property
    def barriers(self) -> pd.DataFrame:
        """One row per (pair, method): both barriers, endpoint losses, verification error."""
        rows = []
        for r in self.results:
            loss = r.curve["loss"].to_numpy()
            rows.append({"pair": f"{r.pair[0]}-{r.pair[1]}", "method": r.name, "barrier": r.barrier,
                         "barrier_linear": r.barrier_linear, "loss_B": loss[0], "loss_A": loss[-1],
                         "loss_mid": float(np.interp(0.5, r.curve["lambda"], loss)),
                         "max_abs_diff": r.max_abs_diff, "function_preserving": r.function_preserving,
                         "seconds": r.seconds})
        return pd.DataFrame(rows)

    def summary(self, order: Sequence[str] | None = None) -> pd.DataFrame:
        """Mean ± standard error over pairs of both barriers, per method."""
        b = self.barriers
        rows = []
        for name in order or list(dict.fromkeys(b["method"])):
            sub = b[b["method"] == name]
            m, se = mean_se(sub["barrier"])
            ml, sel = mean_se(sub["barrier_linear"])
            rows.append({"method": name, "barrier": m, "se": se, "barrier_linear": ml, "se_linear": sel,
                         "pairs": len(sub), "max_abs_diff": float(sub["max_abs_diff"].max()),
                         "function_preserving": bool(sub["function_preserving"].all())})
        return pd.DataFrame(rows).set_index("method")

    def matrix(self, name: str, column: str = "loss") -> tuple[np.ndarray, np.ndarray]:
        """(lambdas, values [pairs, λ]) of one method, for plotting bands over pairs."""
        rs = [r for r in self.results if r.name == name]
        if not rs:
            raise TxmergeError(f"No curves for method {name!r}; run it first.")
        return rs[0].curve["lambda"].to_numpy(), np.stack([r.curve[column].to_numpy() for r in rs])

    def curve_matrices(self, names: Sequence[str], column: str = "loss") -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(lambdas, {method: values [pairs, λ]}) for ``plots.plot_curves``."""
        mats = {name: self.matrix(name, column) for name in names}
        return next(iter(mats.values()))[0], {name: m[1] for name, m in mats.items()}


def barrier_table(results: Results, paper: Mapping[str, tuple[float, float]] | None = None,
                  order: Sequence[str] | None = None) -> pd.DataFrame:
    """Mean ± s.e. barrier per method beside the paper's (value, s.e.) where given."""
    table = results.summary(order)
    if paper:
        table["paper"] = [paper.get(m, (np.nan, np.nan))[0] for m in table.index]
        table["paper_se"] = [paper.get(m, (np.nan, np.nan))[1] for m in table.index]
    return table
