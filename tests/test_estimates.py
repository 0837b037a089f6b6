"""The estimates table: sizes and intervals of every comparison, the paper's effects, the record the
results page reads, and the forest plot drawn from the same rows."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from test_claims import table
from txmerge.base.errors import TxmergeError
from txmerge.experiments import estimates, paper
from txmerge.experiments.claims import claim_c2, claim_c3, claim_c4

matplotlib.use("Agg")

BARRIERS = {"vanilla": 1.0, "attn": 0.95, "ff": 0.8, "ff+attn": 0.6}


def c2_rows(pairs_share: bool = False) -> pd.DataFrame:
    b = table(BARRIERS)
    if pairs_share:
        b = b.replace({"pair": {"5-6": "1-5"}})
    return estimates.estimates_of({"C2": claim_c2(b)}, "02_ffn_attention")


def test_one_row_per_comparison_with_the_decision_numbers():
    claim = claim_c2(table(BARRIERS))
    rows = estimates.estimates_of({"C2": claim}, "02_ffn_attention")
    assert list(rows.columns) == estimates.COLUMNS and len(rows) == len(claim.decisions)
    for (_, row), (name, d) in zip(rows.iterrows(), claim.decisions.items()):
        assert row["comparison"] == name and row["verdict"] == d.verdict and row["pairs"] == 4
        assert row["estimate"] == pytest.approx(d.relative) and (row["low"], row["high"]) == pytest.approx(d.relative_interval)
        assert row["low"] <= row["estimate"] <= row["high"] and row["independent"]


def test_the_paper_effects_are_computed_from_its_tables_in_the_claims_direction():
    v, ff, both = paper.COMPONENTS["vanilla"][0], paper.COMPONENTS["ff"][0], paper.COMPONENTS["ff+attn"][0]
    assert estimates.paper_effect("C2", "FF < vanilla") == pytest.approx((v - ff) / v)  # 4.95 -> 4.31: +13 %
    assert estimates.paper_effect("C2", "FF+attn < FF") == pytest.approx((ff - both) / v)
    assert np.isnan(estimates.paper_effect("C2", "FF < attn only"))  # no attention-only barrier in the paper
    assert estimates.paper_effect("C3", "ignore < monotonic (linear barrier)") == pytest.approx((4.13 - 3.97) / ff)
    assert estimates.paper_effect("C4", "identity < first (untied)") == pytest.approx((7.58 - 4.95) / v)  # positive: the paper's C4 holds
    mrpc = paper.TABLE3["mrpc"]
    assert estimates.paper_effect("C7", "full < vanilla (mrpc)") == pytest.approx((mrpc["vanilla"][0] - mrpc["full"][0]) / mrpc["vanilla"][0])


def test_every_claim_function_gives_rows_the_paper_can_be_matched_to():
    """The names the claims produce must be the names the paper's effects are keyed by."""
    b = table({"identity": 1.0, "first (untied)": 1.2, "last (untied)": 1.3, "all (untied)": 1.25, "separate": 2.0,
               "ff": 0.8, "monotonic": 0.75, "ignore": 0.7, "permute": 0.6},
              preserving={"separate": False, "ignore": False})
    rows = estimates.estimates_of({"C3": claim_c3(b), "C4": claim_c4(b)}, "x")
    assert rows["paper"].notna().all(), rows[rows["paper"].isna()]["comparison"].tolist()


def test_the_compact_table_has_a_few_words_per_cell_and_marks_shared_pairs():
    t = estimates.compact_table(pd.concat([c2_rows(), c2_rows(pairs_share=True)]))
    assert list(t.columns) == ["claim", "comparison", "paper", "this build [90 %]", "verdict", "pairs", "chapter"]
    assert t.map(lambda c: len(str(c)) <= 30).all().all()
    assert t["this build [90 %]"].iloc[0].startswith("+20 % [") and t["paper"].iloc[0] == "+13 %"
    assert t["verdict"].iloc[-1] == "undecided †" and t["this build [90 %]"].iloc[-1].endswith("†")


def test_a_non_finite_estimate_stops_with_the_claim_and_chapter():
    rows = c2_rows()
    rows.loc[1, "high"] = np.nan
    with pytest.raises(TxmergeError, match=r"Claim C2 \('FF\+attn < FF', chapter 02_ffn_attention\)"):
        estimates.check_estimates(rows)
    with pytest.raises(TxmergeError, match="empty"):
        estimates.check_estimates(rows.iloc[:0])


def test_record_and_load_round_trip_and_refuse_a_missing_or_other_preset(tmp_path, monkeypatch):
    monkeypatch.setenv("TXMERGE_ESTIMATES", str(tmp_path))
    rows = c2_rows()
    estimates.record(rows, "02_ffn_attention", "tiny", [[1, 2], [3, 4]])
    back = estimates.load(["02_ffn_attention"], "tiny")
    pd.testing.assert_frame_equal(back, rows, check_dtype=False)
    with pytest.raises(TxmergeError, match="preset 'tiny', not 'smoke'"):
        estimates.load(["02_ffn_attention"], "smoke")
    with pytest.raises(TxmergeError, match="No estimates from chapter 04_residual"):
        estimates.load(["02_ffn_attention", "04_residual"], "tiny")
    assert [p.name for p in tmp_path.iterdir()] == ["02_ffn_attention.json"]  # atomic: no temporary left


def test_the_forest_plot_has_a_row_for_every_comparison_and_the_paper_marker():
    rows = pd.concat([c2_rows(), c2_rows(pairs_share=True)], ignore_index=True)
    from txmerge.chapters import plots

    fig = plots.forest_plot(rows)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"{r.claim} · {r.comparison}" for r in rows.itertuples()]
    diamonds = [ln for ln in ax.get_lines() if ln.get_marker() == "D" and ln.get_markerfacecolor() == "none"]
    assert len(diamonds) == int(rows["paper"].notna().sum())
    pairs = [t.get_text() for t in ax.child_axes[0].get_yticklabels()]
    assert pairs == ["4"] * 3 + ["4 †"] * 3
    bad = rows.copy()
    bad.loc[0, "estimate"] = np.inf
    with pytest.raises(TxmergeError, match="Claim C2"):
        plots.forest_plot(bad)
