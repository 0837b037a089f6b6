"""The book's decision rule: when does a difference between two methods count?

One rule for every claim (quoted on the results page):

- The unit is a seed pair; the statistic is the mean paired difference ``d = higher − lower`` (the
  expected order: ``lower`` below ``higher``), its standard error, and a one-sided t-test with
  ``pairs − 1`` degrees of freedom.
- A difference counts only if it is at least ``min_effect`` (10 % by default, declared before the
  data is seen) of a reference scale, typically the vanilla barrier, **and** significant at
  ``alpha`` (5 %). Then the claim is **confirmed** (or **reversed**, the other way round).
- **No measurable effect**: the (1 − 2α) confidence interval of ``d`` lies inside ± the minimum
  effect (an equivalence test): whatever the difference is, it is too small to matter.
- Otherwise **undecided**, with the number of pairs the measured spread says a decision would need.
- One pair has no standard error: the verdict is **undecided (one pair)**.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from txmerge.base.errors import TxmergeError

MIN_EFFECT = 0.10  # a difference must be at least 10 % of the reference scale
ALPHA = 0.05
POWER = 0.80  # for the number of pairs a decision would need


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`compare`: the verdict and every number behind it."""

    verdict: str  # confirmed | reversed | no measurable effect | undecided | undecided (one pair)
    mean_diff: float
    se: float
    pairs: int
    p_value: float
    threshold: float  # the minimum effect in the units of the data
    relative: float  # mean_diff / scale
    pairs_needed: int | None  # for an undecided claim: pairs that would detect the measured difference (at least the minimum effect)

    def __str__(self) -> str:
        if self.pairs < 2:
            return f"{self.verdict} (difference {self.mean_diff:+.3f}; one pair has no standard error)"
        need = f"; about {self.pairs_needed} pairs would decide" if self.pairs_needed else ""
        return (f"{self.verdict} (difference {self.mean_diff:+.3f} ± {self.se:.3f}, {self.relative:+.0%} of the scale, "
                f"threshold {self.threshold:.3f}, p = {self.p_value:.2g}, {self.pairs} pairs{need})")


def _values(values, name: str) -> np.ndarray:
    v = np.asarray(values, dtype=float).reshape(-1)
    if v.size == 0:
        raise TxmergeError(f"{name} holds no values; run at least one pair.")
    if not np.isfinite(v).all():
        raise TxmergeError(f"{name} holds NaN or infinite values; a verdict is not computed on them (check the curves).")
    return v


def mean_se(values, axis: int = 0) -> tuple:
    """Mean and standard error (sample std / √n) along ``axis``; the s.e. is NaN for a single value
    (one pair has no standard error). Scalars for 1-d input, arrays otherwise."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise TxmergeError("No values to average; run at least one pair.")
    n = v.shape[axis]
    mean = v.mean(axis=axis)
    se = v.std(axis=axis, ddof=1) / math.sqrt(n) if n > 1 else np.full_like(mean, np.nan, dtype=float)
    return (float(mean), float(se)) if v.ndim == 1 else (mean, se)


def compare(lower, higher, scale: float, *, min_effect: float = MIN_EFFECT, alpha: float = ALPHA) -> Decision:
    """Is ``lower`` below ``higher``, pair by pair, by at least ``min_effect × scale``? (see the module rule)

    ``lower``/``higher``: one value per pair, in the same pair order; ``scale``: the reference (e.g. the
    mean vanilla barrier) the minimum effect is a fraction of.
    """
    lo, hi = _values(lower, "lower"), _values(higher, "higher")
    if lo.shape != hi.shape:
        raise TxmergeError(f"{lo.size} and {hi.size} values: compare the same pairs on both sides.")
    if not (np.isfinite(scale) and scale > 0):
        raise TxmergeError(f"The reference scale must be a positive number, got {scale}; a minimum effect needs a size.")
    d = hi - lo
    n, m = d.size, float(d.mean())
    threshold = min_effect * float(scale)
    if n < 2:
        return Decision("undecided (one pair)", m, float("nan"), n, float("nan"), threshold, m / scale, None)
    se = float(d.std(ddof=1) / math.sqrt(n))
    dof = n - 1
    if se == 0.0:
        p_up, p_down, half = (0.0 if m > 0 else 1.0), (0.0 if m < 0 else 1.0), 0.0
    else:
        t = m / se
        p_up, p_down = float(stats.t.sf(t, dof)), float(stats.t.cdf(t, dof))
        half = float(stats.t.ppf(1 - alpha, dof)) * se
    if p_up < alpha and m >= threshold:
        verdict, p = "confirmed", p_up
    elif p_down < alpha and -m >= threshold:
        verdict, p = "reversed", p_down
    elif abs(m) + half < threshold:
        verdict, p = "no measurable effect", min(p_up, p_down)
    else:
        verdict, p = "undecided", min(p_up, p_down)
    needed = None
    if verdict == "undecided":  # pairs that would detect the measured difference, or the minimum effect if smaller
        sd = float(d.std(ddof=1))
        z = stats.norm.ppf(1 - alpha) + stats.norm.ppf(POWER)
        effect = max(abs(m), threshold)
        needed = max(n + 1, int(math.ceil((z * sd / effect) ** 2))) if sd > 0 else n + 1
    return Decision(verdict, m, se, n, p, threshold, m / scale, needed)


def check_barrier_table(barriers: pd.DataFrame, methods: Sequence[str], value: str = "barrier") -> pd.DataFrame:
    """The per-pair table [pair × method] of ``value``, refusing a missing method, a duplicated
    (pair, method) row or a non-finite value with one clear error (never silently averaged)."""
    missing = [m for m in methods if m not in set(barriers["method"])]
    if missing:
        raise TxmergeError(f"The barrier table has no rows for {', '.join(missing)}; run those methods first.")
    rows = barriers[barriers["method"].isin(methods)]
    dup = rows.duplicated(["pair", "method"])
    if dup.any():
        first = rows[dup].iloc[0]
        raise TxmergeError(f"Pair {first['pair']} appears twice for method {first['method']!r}; each pair counts once.")
    table = rows.pivot(index="pair", columns="method", values=value)[list(methods)]
    if table.isna().any().any() or not np.isfinite(table.to_numpy(dtype=float)).all():
        raise TxmergeError(f"The {value} table has missing or non-finite entries (pairs without every method, or NaN "
                           "losses); fix the runs before deciding.")
    return table


def shared_seeds(pairs: Iterable[str]) -> bool:
    """Whether some seed appears in more than one pair ("1-2", "1-3" share seed 1): such pairs are not independent."""
    seeds = [s for p in pairs for s in str(p).split("-")]
    return len(seeds) != len(set(seeds))


def decisions_table(decisions: dict[str, Decision]) -> pd.DataFrame:
    """One row per claim: verdict, difference ± s.e., effect against the threshold, pairs, pairs needed."""
    rows = [{"claim": name, "verdict": d.verdict, "difference": d.mean_diff, "s.e.": d.se,
             "effect": f"{d.relative:+.0%}", "threshold": d.threshold, "pairs": d.pairs,
             "pairs needed": d.pairs_needed if d.pairs_needed else ""} for name, d in decisions.items()]
    return pd.DataFrame(rows).set_index("claim")


def combine(decisions: Iterable[Decision]) -> str:
    """One verdict for a claim made of several comparisons that must all hold (e.g. C4, every learned
    residual permutation worse than the identity): any reversed → reversed; all confirmed → confirmed;
    all without a measurable effect → no measurable effect; anything else → undecided."""
    verdicts = [d.verdict for d in decisions]
    if not verdicts:
        raise TxmergeError("No comparisons to combine; run the methods of the claim first.")
    if "reversed" in verdicts:
        return "reversed"
    for outcome in ("confirmed", "no measurable effect"):
        if all(v == outcome for v in verdicts):
            return outcome
    return "undecided"


def glue_claims(mlm_vanilla: float, glue_vanilla: dict[str, float], full_vs_vanilla: dict[str, Decision],
                shapes: pd.DataFrame, calibrated: dict[str, bool]) -> dict[str, str]:
    """C7 and C8 of the GLUE chapter as sentences.

    - C7a: every classification task's vanilla barrier is below the MLM vanilla barrier;
    - C7b: the full method lowers the barrier (a confirmed :func:`compare`) on more than half the tasks;
    - C8: among tasks whose fine-tunes beat the prior's loss (``calibrated``), curves dip below both
      endpoints and some are M-shaped (``shapes``: one row per curve with columns task, "dips below
      both endpoints", "M-shaped"). Between over-fitted endpoints a dip is no evidence, so with no
      such task C8 is undecided.
    """
    if not full_vs_vanilla:
        raise TxmergeError("No GLUE task was run; give at least one task.")
    c7a = ("confirmed" if glue_vanilla and all(v < mlm_vanilla for v in glue_vanilla.values()) else "not confirmed")
    counts = {v: sum(d.verdict == v for d in full_vs_vanilla.values()) for v in ("confirmed", "reversed", "no measurable effect")}
    n = len(full_vs_vanilla)
    c7b = ("confirmed" if counts["confirmed"] > n / 2 else "reversed" if counts["reversed"] > n / 2
           else "no measurable effect" if counts["no measurable effect"] == n else "undecided")
    ok = shapes[shapes["task"].map(lambda t: bool(calibrated.get(t, False)))]
    k_dip, k_m = int(ok["dips below both endpoints"].sum()), int(ok["M-shaped"].sum())
    n_dip, n_m = int(shapes["dips below both endpoints"].sum()), int(shapes["M-shaped"].sum())
    c8 = ("undecided" if ok.empty else "confirmed" if k_dip and k_m else "partly confirmed" if k_dip or k_m else "not confirmed")
    return {
        "c7": f"{c7a} (GLUE barriers below the MLM barrier); {c7b} (full lower on {counts['confirmed']} of {n} tasks by the rule)",
        "c8": (f"{c8} ({k_dip} of {len(ok)} curves of tasks whose fine-tunes beat the prior's loss dip below both endpoints, "
               f"{k_m} are M-shaped; over all tasks {n_dip} of {len(shapes)} dip, {n_m} are M-shaped)"),
    }
