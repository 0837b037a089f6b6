"""Verdict helpers that turn per-pair numbers into the book's one-line verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from txmerge.paper import beats_prior, flatness_verdict, paired_verdict


def test_paired_verdict_confirmed_not_confirmed_inconclusive():
    v = paired_verdict([1.0, 1.1, 0.9], [2.0, 2.2, 1.9])  # lower is clearly lower in every pair
    assert v.verdict == "confirmed" and v.pairs == 3 and v.mean_diff == pytest.approx(1.0333, abs=1e-3)
    assert paired_verdict([2.0, 2.2, 1.9], [1.0, 1.1, 0.9]).verdict == "not confirmed"
    assert paired_verdict([1.0, 2.0, 1.0], [1.5, 1.0, 1.6]).verdict == "inconclusive"  # pairs disagree
    assert "3 pairs" in str(v)


def test_paired_verdict_one_pair_uses_the_sign_beyond_a_margin():
    assert paired_verdict([1.0], [1.2]).verdict == "confirmed"
    assert paired_verdict([1.0], [1.01]).verdict == "inconclusive"
    assert np.isnan(paired_verdict([1.0], [1.2]).se_diff)


def test_flatness_verdict():
    assert flatness_verdict([3.6, 3.9, 4.0], [0.2, 0.2, 0.2]) == "confirmed"
    assert flatness_verdict([1.0, 3.0], [0.1, 0.1]) == "not confirmed"


def test_beats_prior():
    assert beats_prior([0.7, 0.72], 0.51, higher_is_better=True)
    assert not beats_prior([0.7, 0.50], 0.51, higher_is_better=True)
    assert beats_prior([0.6, 0.65], 0.69, higher_is_better=False)
    assert not beats_prior([0.6, 0.70], 0.69, higher_is_better=False)
    assert beats_prior([0.2, 0.3], float("nan"), higher_is_better=True)  # NaN prior (Pearson) counts as 0
    assert not beats_prior([], 0.5, higher_is_better=True)
