"""Verdict helpers that turn per-pair numbers into the book's one-line verdicts."""

from __future__ import annotations

from txmerge.experiments.paper import beats_prior


def test_beats_prior():
    assert beats_prior([0.7, 0.72], 0.51, higher_is_better=True)
    assert not beats_prior([0.7, 0.50], 0.51, higher_is_better=True)
    assert beats_prior([0.6, 0.65], 0.69, higher_is_better=False)
    assert not beats_prior([0.6, 0.70], 0.69, higher_is_better=False)
    assert beats_prior([0.2, 0.3], float("nan"), higher_is_better=True)  # NaN prior (Pearson) counts as 0
    assert not beats_prior([], 0.5, higher_is_better=True)
