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
- Pairs that share a seed ("1-2", "1-3") are not independent, so the t-test does not hold: the
  verdict is **undecided (pairs share seeds)**, whatever the numbers. The estimate and its interval
  are still reported, for figures, marked as not independent.

Every comparison also carries its **estimate**: the relative effect (mean paired difference over
the reference scale, positive in the claim's direction) and its two-sided 90 % t-interval (the
interval the equivalence test uses), from :func:`compare` (:class:`Decision`).
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
INTERVAL = 1 - 2 * ALPHA  # the two-sided confidence level of every reported interval (90 %)
ONE_PAIR = "undecided (one pair)"
SHARED_SEEDS = "undecided (pairs share seeds)"


@dataclass(frozen=True)
class Decision:
    """The outcome of :func:`compare`: the verdict and every number behind it."""

    verdict: str  # confirmed | reversed | no measurable effect | undecided | ONE_PAIR | SHARED_SEEDS
    mean_diff: float
    se: float
    pairs: int
    p_value: float
    threshold: float  # the minimum effect in the units of the data
    relative: float  # mean_diff / scale
    pairs_needed: int | None  # for an undecided claim: pairs that would detect the measured difference (at least the minimum effect)
    scale: float = 1.0  # the reference scale the relative effect is a fraction of
    low: float = float("nan")  # the 90 % t-interval of mean_diff (NaN for one pair)
    high: float = float("nan")
    independent: bool = True  # False when some seed appears in two pairs

    @property
    def relative_interval(self) -> tuple[float, float]:
        """The 90 % interval of the relative effect, (low, high) / scale."""
        return self.low / self.scale, self.high / self.scale

    def estimate(self) -> str:
        """The relative effect and its interval in a few words, e.g. ``+12 % [+5, +19]``."""
        return effect_text(self.relative, *self.relative_interval, self.pairs)

    def __str__(self) -> str:
        if self.pairs < 2:
            return f"{self.verdict} (difference {self.mean_diff:+.3f}; one pair has no standard error)"
        need = f"; about {self.pairs_needed} pairs would decide" if self.pairs_needed else ""
        shared = "; the pairs share seeds, so they are not independent" if not self.independent else ""
        return (f"{self.verdict} (difference {self.mean_diff:+.3f} ± {self.se:.3f}, {self.estimate()} % of the scale "
                f"at 90 %, threshold {self.threshold:.3f}, p = {self.p_value:.2g}, {self.pairs} pairs{need}{shared})")


def _points(x: float) -> str:
    """A fraction in signed whole percent points, never "-0"."""
    v = int(round(x * 100))
    return f"{v:+d}" if v else "0"


def effect_text(relative: float, low: float, high: float, pairs: int) -> str:
    """A relative effect and its 90 % interval in a few words: ``+12 % [+5, +19]`` (one pair: no interval)."""
    if pairs < 2 or not np.isfinite(low):
        return f"{_points(relative)} % (one pair)"
    return f"{_points(relative)} % [{_points(low)}, {_points(high)}]"


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


def _pair_labels(pairs, *sides) -> list[str] | None:
    if pairs is not None:
        return [str(p) for p in pairs]
    for side in sides:  # a Series indexed by pair ("1-2"), as check_barrier_table returns
        if isinstance(side, pd.Series) and side.index.name == "pair":
            return [str(p) for p in side.index]
    return None


def compare(lower, higher, scale: float, *, pairs: Sequence[str] | None = None, min_effect: float = MIN_EFFECT,
            alpha: float = ALPHA) -> Decision:
    """Is ``lower`` below ``higher``, pair by pair, by at least ``min_effect × scale``? (see the module rule)

    ``lower``/``higher``: one value per pair, in the same pair order; ``scale``: the reference (e.g. the
    mean vanilla barrier) the minimum effect is a fraction of; ``pairs``: the pair labels ("1-2"), by
    default the index of a side that is a Series indexed by ``pair``. Pairs sharing a seed give the
    estimate but the verdict ``SHARED_SEEDS``.
    """
    labels = _pair_labels(pairs, lower, higher)
    lo, hi = _values(lower, "lower"), _values(higher, "higher")
    if lo.shape != hi.shape:
        raise TxmergeError(f"{lo.size} and {hi.size} values: compare the same pairs on both sides.")
    if not (np.isfinite(scale) and scale > 0):
        raise TxmergeError(f"The reference scale must be a positive number, got {scale}; a minimum effect needs a size.")
    d = hi - lo
    n, m = d.size, float(d.mean())
    threshold = min_effect * float(scale)
    if labels is not None and len(labels) != n:
        raise TxmergeError(f"{len(labels)} pair labels for {n} values: label every pair once.")
    independent = labels is None or not shared_seeds(labels)
    if n < 2:
        return Decision(ONE_PAIR, m, float("nan"), n, float("nan"), threshold, m / scale, None, float(scale),
                        independent=independent)
    se = float(d.std(ddof=1) / math.sqrt(n))
    dof = n - 1
    if se == 0.0:
        p_up, p_down, half = (0.0 if m > 0 else 1.0), (0.0 if m < 0 else 1.0), 0.0
    else:
        t = m / se
        p_up, p_down = float(stats.t.sf(t, dof)), float(stats.t.cdf(t, dof))
        half = float(stats.t.ppf(1 - alpha, dof)) * se
    interval = dict(scale=float(scale), low=m - half, high=m + half, independent=independent)
    if not independent:
        return Decision(SHARED_SEEDS, m, se, n, min(p_up, p_down), threshold, m / scale, None, **interval)
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
    return Decision(verdict, m, se, n, p, threshold, m / scale, needed, **interval)


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


def pairs_note(pairs: Iterable[Sequence[int]]) -> str:
    """One sentence on whether the pairs of a build are independent (e.g. for the results page)."""
    names = [f"{min(p)}-{max(p)}" for p in pairs]
    return (f"The pairs of this build ({', '.join(names)}) "
            + ("share seeds, so they are not independent: every verdict on them reads "
               f"{SHARED_SEEDS!r}." if shared_seeds(names) else "share no seed, so they are independent."))


def decisions_table(decisions: dict[str, Decision]) -> pd.DataFrame:
    """One row per claim: verdict, difference ± s.e., effect against the threshold, pairs, pairs needed."""
    rows = [{"claim": name, "verdict": d.verdict, "difference": d.mean_diff, "s.e.": d.se,
             "effect [90 %]": d.estimate(), "threshold": d.threshold, "pairs": d.pairs,
             "pairs needed": d.pairs_needed if d.pairs_needed else ""} for name, d in decisions.items()]
    return pd.DataFrame(rows).set_index("claim")


def combine(decisions: Iterable[Decision]) -> str:
    """One verdict for a claim made of several comparisons that must all hold (e.g. C4, every learned
    residual permutation worse than the identity): pairs sharing seeds → SHARED_SEEDS; any reversed →
    reversed; all confirmed → confirmed; all without a measurable effect → no measurable effect;
    anything else → undecided."""
    verdicts = [d.verdict for d in decisions]
    if not verdicts:
        raise TxmergeError("No comparisons to combine; run the methods of the claim first.")
    if SHARED_SEEDS in verdicts:
        return SHARED_SEEDS
    if "reversed" in verdicts:
        return "reversed"
    for outcome in ("confirmed", "no measurable effect"):
        if all(v == outcome for v in verdicts):
            return outcome
    return "undecided"


def majority(decisions: Iterable[Decision]) -> str:
    """One verdict for a claim that must hold on most of several tasks (C7): pairs sharing seeds →
    SHARED_SEEDS; confirmed (or reversed) on more than half → confirmed (reversed); no measurable
    effect on all → no measurable effect; otherwise undecided."""
    verdicts = [d.verdict for d in decisions]
    if not verdicts:
        raise TxmergeError("No comparisons to combine; run the tasks of the claim first.")
    n = len(verdicts)
    if SHARED_SEEDS in verdicts:
        return SHARED_SEEDS
    for outcome in ("confirmed", "reversed"):
        if verdicts.count(outcome) > n / 2:
            return outcome
    return "no measurable effect" if verdicts.count("no measurable effect") == n else "undecided"


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
    c7b = majority(full_vs_vanilla.values())
    ok = shapes[shapes["task"].map(lambda t: bool(calibrated.get(t, False)))]
    k_dip, k_m = int(ok["dips below both endpoints"].sum()), int(ok["M-shaped"].sum())
    n_dip, n_m = int(shapes["dips below both endpoints"].sum()), int(shapes["M-shaped"].sum())
    c8 = ("undecided" if ok.empty else "confirmed" if k_dip and k_m else "partly confirmed" if k_dip or k_m else "not confirmed")
    return {
        "c7": f"{c7a} (GLUE barriers below the MLM barrier); {c7b} (full lower on {counts['confirmed']} of {n} tasks by the rule)",
        "c8": (f"{c8} ({k_dip} of {len(ok)} curves of tasks whose fine-tunes beat the prior's loss dip below both endpoints, "
               f"{k_m} are M-shaped; over all tasks {n_dip} of {len(shapes)} dip, {n_m} are M-shaped)"),
    }
