"""The decision rule on hand-made barrier tables: every outcome, and the edge cases."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from txmerge.base.errors import TxmergeError
from txmerge.experiments.verdicts import check_barrier_table, compare, decisions_table, mean_se, shared_seeds

VANILLA = 1.0  # the reference scale: a minimum effect of 0.1


def test_mean_se_one_copy_for_scalars_and_curves():
    v = [0.3, 0.1, 0.7, 0.25, 0.4]
    m, se = mean_se(v)
    assert m == pytest.approx(np.mean(v)) and se == pytest.approx(np.std(v, ddof=1) / np.sqrt(len(v)))
    m1, se1 = mean_se([0.42])
    assert m1 == pytest.approx(0.42) and np.isnan(se1)  # one pair has no standard error (not 0)
    curves = np.array([[1.0, 2.0], [3.0, 4.0]])
    mc, sc = mean_se(curves, axis=0)
    assert np.allclose(mc, [2.0, 3.0]) and np.allclose(sc, [1.0, 1.0])
    _, s1 = mean_se(curves[:1], axis=0)
    assert np.isnan(s1).all()
    with pytest.raises(TxmergeError):
        mean_se([])


def test_a_large_consistent_difference_is_confirmed():
    d = compare([0.70, 0.72, 0.69, 0.71], [1.0, 1.02, 0.98, 1.01], VANILLA)
    assert d.verdict == "confirmed" and d.p_value < 0.05 and d.relative == pytest.approx(0.2975, abs=1e-3)
    assert d.pairs_needed is None and "confirmed" in str(d)


def test_the_same_difference_the_other_way_is_reversed():
    d = compare([1.0, 1.02, 0.98, 1.01], [0.70, 0.72, 0.69, 0.71], VANILLA)
    assert d.verdict == "reversed"


def test_a_significant_but_tiny_difference_is_no_measurable_effect():
    """+0.005 nats on every pair: significant, but 0.5 % of the barrier (the C2 case of the old rule)."""
    lower = np.array([0.280, 0.290, 0.300])
    d = compare(lower, lower + np.array([0.004, 0.005, 0.006]), 0.29)
    assert d.verdict == "no measurable effect" and d.p_value < 0.05


def test_a_noisy_difference_is_undecided_with_the_pairs_a_decision_needs():
    d = compare([0.5, 0.9, 0.4], [0.9, 0.6, 0.8], VANILLA)
    assert d.verdict == "undecided" and d.pairs_needed is not None and d.pairs_needed > 3
    assert "pairs would decide" in str(d)


def test_two_pairs_use_one_degree_of_freedom():
    """t = 2.0 with one degree of freedom is p ≈ 0.15: not significant, whatever the effect size."""
    d = compare([0.0, 0.0], [1.0, 3.0], VANILLA)  # mean 2, se 1
    assert d.p_value == pytest.approx(0.1476, abs=1e-3) and d.verdict == "undecided"


def test_one_pair_is_undecided_and_says_why():
    d = compare([0.5], [1.5], VANILLA)
    assert d.verdict == "undecided (one pair)" and np.isnan(d.se) and "no standard error" in str(d)


def test_ties_are_no_measurable_effect():
    d = compare([0.5, 0.6, 0.7], [0.5, 0.6, 0.7], VANILLA)
    assert d.verdict == "no measurable effect" and d.mean_diff == 0.0


@pytest.mark.parametrize("lower,higher,scale,match", [
    ([0.5, np.nan], [1.0, 1.0], 1.0, "NaN"),
    ([0.5, 0.6], [1.0], 1.0, "same pairs"),
    ([0.5], [1.0], 0.0, "positive"),
    ([], [], 1.0, "no values"),
])
def test_bad_inputs_are_refused(lower, higher, scale, match):
    with pytest.raises(TxmergeError, match=match):
        compare(lower, higher, scale)


def _table(rows):
    return pd.DataFrame(rows, columns=["pair", "method", "barrier"])


def test_barrier_table_is_checked_before_any_verdict():
    ok = _table([("1-2", "vanilla", 1.0), ("1-2", "ff", 0.8), ("3-4", "vanilla", 1.1), ("3-4", "ff", 0.9)])
    table = check_barrier_table(ok, ["vanilla", "ff"])
    assert list(table.columns) == ["vanilla", "ff"] and list(table.index) == ["1-2", "3-4"]
    with pytest.raises(TxmergeError, match="no rows for attn"):
        check_barrier_table(ok, ["vanilla", "attn"])
    with pytest.raises(TxmergeError, match="appears twice"):
        check_barrier_table(pd.concat([ok, ok.iloc[:1]]), ["vanilla", "ff"])
    with pytest.raises(TxmergeError, match="non-finite"):
        check_barrier_table(_table([("1-2", "vanilla", np.inf), ("1-2", "ff", 0.8)]), ["vanilla", "ff"])
    with pytest.raises(TxmergeError, match="missing"):
        check_barrier_table(_table([("1-2", "vanilla", 1.0), ("1-2", "ff", 0.8), ("3-4", "vanilla", 1.0)]), ["vanilla", "ff"])


def test_shared_seeds_are_detected():
    assert shared_seeds(["1-2", "1-3", "2-3"]) and not shared_seeds(["1-2", "3-4"])


def test_decisions_table_lists_every_claim():
    table = decisions_table({"C2": compare([0.7, 0.72, 0.69], [1.0, 1.02, 0.98], VANILLA), "X": compare([0.5], [1.5], VANILLA)})
    assert list(table.index) == ["C2", "X"] and table.loc["C2", "verdict"] == "confirmed" and table.loc["X", "pairs"] == 1


def test_combine_every_outcome():
    yes, no_effect = compare([0.7, 0.72, 0.69], [1.0, 1.02, 0.98], 1.0), compare([0.5, 0.6], [0.5, 0.6], 1.0)
    rev, undecided = compare([1.0, 1.02, 0.98], [0.7, 0.72, 0.69], 1.0), compare([0.5, 0.9, 0.4], [0.9, 0.6, 0.8], 1.0)
    from txmerge.experiments.verdicts import combine

    assert combine([yes, yes]) == "confirmed" and combine([yes, rev]) == "reversed"
    assert combine([no_effect, no_effect]) == "no measurable effect" and combine([yes, undecided]) == "undecided"
    with pytest.raises(TxmergeError):
        combine([])


def test_glue_claims_count_only_tasks_whose_fine_tunes_beat_the_prior():
    from txmerge.experiments.verdicts import glue_claims

    yes = compare([0.7, 0.72, 0.69], [1.0, 1.02, 0.98], 1.0)
    shapes = pd.DataFrame({"task": ["a", "a", "b"], "dips below both endpoints": [True, False, True],
                           "M-shaped": [False, False, True]})
    out = glue_claims(2.0, {"a": 0.5, "b": 0.7}, {"a": yes, "b": yes}, shapes, {"a": True, "b": False})
    assert out["c7"].startswith("confirmed") and "full lower on 2 of 2" in out["c7"]
    assert out["c8"].startswith("partly confirmed (1 of 2 curves")  # task b's M-shape does not count
    none = glue_claims(2.0, {"a": 3.0}, {"a": yes}, shapes, {})
    assert none["c7"].startswith("not confirmed") and none["c8"].startswith("undecided")


def test_the_pairs_a_decision_needs_are_sized_on_the_measured_difference_when_it_is_large():
    """-1.3 nats (52 % of the scale) but p ≈ 0.07 with three pairs: a fourth pair or so decides it, not 80
    (the number a 10 % effect would need at this spread)."""
    d = compare([2.3, 2.5, 3.1], [2.0, 1.0, 1.0], 2.5)  # differences -0.3, -1.5, -2.1
    assert d.verdict == "undecided" and d.pairs_needed == 4
    sd = float(np.std([-0.3, -1.5, -2.1], ddof=1))
    z = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)
    assert (z * sd / 0.25) ** 2 > 80  # what sizing on the minimum effect alone would have said


def test_the_interval_is_the_90_percent_t_interval_of_the_relative_effect():
    lower, higher = np.array([0.5, 0.9, 0.4, 0.6]), np.array([0.9, 0.95, 0.8, 0.7])
    d = compare(lower, higher, 2.0)
    diff = higher - lower
    half = stats.t.ppf(0.95, 3) * diff.std(ddof=1) / 2.0
    lo, hi = d.relative_interval
    assert d.relative == pytest.approx(diff.mean() / 2.0)
    assert (lo, hi) == pytest.approx((diff.mean() / 2.0 - half / 2.0, diff.mean() / 2.0 + half / 2.0))
    assert d.estimate().startswith(f"{round(d.relative * 100):+d} % [") and d.independent


def test_pairs_sharing_a_seed_are_undecided_whatever_the_numbers():
    lower, higher = [0.70, 0.72, 0.69], [1.0, 1.02, 0.98]
    assert compare(lower, higher, VANILLA, pairs=["1-2", "3-4", "5-6"]).verdict == "confirmed"
    d = compare(lower, higher, VANILLA, pairs=["1-2", "3-4", "1-5"])
    assert d.verdict == "undecided (pairs share seeds)" and not d.independent and d.pairs_needed is None
    by_index = compare(pd.Series(lower, index=pd.Index(["1-2", "1-3", "2-3"], name="pair")), higher, VANILLA)
    assert by_index.verdict == "undecided (pairs share seeds)"
    with pytest.raises(TxmergeError, match="pair labels"):
        compare(lower, higher, VANILLA, pairs=["1-2"])


def test_the_pairs_note_says_whether_pairs_are_independent():
    from txmerge.experiments.verdicts import pairs_note

    assert "share no seed" in pairs_note([[2, 1], [3, 4]]) and "(1-2, 3-4)" in pairs_note([[2, 1], [3, 4]])
    assert "not independent" in pairs_note([[1, 2], [1, 3]])
