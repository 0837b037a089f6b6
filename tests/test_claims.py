"""The paper's claims decided by library functions, on hand-made tables: every outcome and the bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from txmerge.base.errors import TxmergeError
from txmerge.experiments.claims import (
    NOT_TESTABLE,
    amount_summary,
    beats_prior_by_task,
    claim_c1,
    claim_c2,
    claim_c3,
    claim_c4,
    claim_c5,
    claim_c6,
    claim_head_alignment,
    correlation_table,
    curve_shapes,
    endpoint_table,
    finetune_table,
    glue_barrier_table,
)

PAIRS = ["1-2", "3-4", "5-6", "7-8"]  # disjoint: independent pairs
NOISE = np.array([0.01, -0.012, 0.004, -0.002])  # pair-to-pair spread, the same for every method


def table(barriers: dict[str, float], *, linear: dict[str, float] | None = None, loss_b: dict[str, float] | None = None,
          preserving: dict[str, bool] | None = None) -> pd.DataFrame:
    """A barrier table: one row per pair and method, method means as given plus the same pair noise."""
    rows = []
    for m, value in barriers.items():
        for p, e in zip(PAIRS, NOISE):
            rows.append({"pair": p, "method": m, "barrier": value + e, "barrier_linear": (linear or barriers).get(m, value) + e,
                         "loss_A": 6.30 + e, "loss_B": (loss_b or {}).get(m, 6.32) + e,
                         "function_preserving": (preserving or {}).get(m, True)})
    return pd.DataFrame(rows)


def test_c1_needs_a_barrier_of_a_tenth_of_the_endpoint_loss():
    assert claim_c1(table({"vanilla": 1.5})).verdict == "confirmed"  # 1.5 > 0.63
    small = claim_c1(table({"vanilla": 0.2}))  # any positive barrier passed the old C1; this one is far below 10 %
    assert small.verdict == "no measurable effect"
    assert "vanilla barrier" in small.table().index[0]


def test_c2_confirmed_and_no_effect():
    ok = claim_c2(table({"vanilla": 1.0, "attn": 0.95, "ff": 0.8, "ff+attn": 0.6}))
    assert ok.verdict == "confirmed" and set(ok.table()["verdict"]) == {"confirmed"}
    flat = claim_c2(table({"vanilla": 1.0, "attn": 1.0, "ff": 1.0, "ff+attn": 0.995}))
    assert flat.verdict == "no measurable effect"
    mixed = claim_c2(table({"vanilla": 1.0, "attn": 0.95, "ff": 0.8, "ff+attn": 0.8}))
    assert mixed.verdict == "undecided"  # one part without effect, the others confirmed: the claim as a whole is not
    assert mixed.decisions["FF+attn < FF"].verdict == "no measurable effect"


def test_c2_refuses_a_missing_method_and_a_duplicated_pair_and_nan():
    with pytest.raises(TxmergeError, match="no rows for ff"):
        claim_c2(table({"vanilla": 1.0, "attn": 0.9, "ff+attn": 0.6}))
    t = table({"vanilla": 1.0, "attn": 0.95, "ff": 0.8, "ff+attn": 0.6})
    with pytest.raises(TxmergeError, match="appears twice"):
        claim_c2(pd.concat([t, t.iloc[[0]]]))
    t.loc[3, "barrier"] = np.nan
    with pytest.raises(TxmergeError, match="non-finite"):
        claim_c2(t)


def test_c3_is_a_chain_and_reversed_if_one_link_is():
    chain = {"ff": 1.0, "monotonic": 0.85, "ignore": 0.7, "permute": 0.55}
    c3 = claim_c3(table(chain))
    assert c3.verdict == "confirmed" and list(c3.decisions)[0] == "permute < ignore"
    assert claim_c3(table({**chain, "ignore": 1.05})).verdict == "reversed"  # Ignore-Heads above Monotonic
    # Ignore-Heads breaks B's function: its barrier is mostly the endpoint shift, its linear barrier decides
    broken = table({**chain, "ignore": 2.0}, linear={**chain, "ignore": 0.7}, preserving={"ignore": False})
    c3b = claim_c3(broken)
    assert c3b.verdict == "confirmed" and "permute < ignore (linear barrier)" in c3b.decisions


def test_c4_against_the_minimal_fix_and_separate_ranked_by_its_linear_barrier():
    b = {"identity": 0.3, "first (untied)": 0.5, "last (untied)": 0.55, "all (untied)": 0.6,
         "separate": 1.5}
    # separate's endpoint moved by 1.2 nats: its barrier is mostly that shift, its linear barrier is low
    t = table(b, linear={**b, "separate": 0.1}, loss_b={"separate": 7.5}, preserving={"separate": False})
    c4 = claim_c4(t)
    assert c4.decisions["identity < first (untied)"].verdict == "confirmed"
    assert c4.decisions["worst learned < separate (linear barrier)"].verdict == "reversed"
    assert c4.verdict == "reversed"
    ends = endpoint_table(t, "identity")
    assert ends.loc["separate", "endpoint shift"] == pytest.approx(7.5 - 6.32)
    assert ends.loc["first (untied)", "endpoint shift"] == pytest.approx(0.0)
    assert not ends.loc["separate", "keeps B's function"] and ends.loc["identity", "keeps B's function"]
    assert claim_c4(table({k: v for k, v in b.items() if k != "separate"})).verdict == "confirmed"
    with pytest.raises(TxmergeError, match="no rows for first \\(untied\\)"):
        claim_c4(table({"identity": 0.3, "first": 0.5, "last": 0.5, "all": 0.5}))
    assert claim_c4(table({"identity": 0.3, "first": 0.5, "last": 0.5, "all": 0.5}), treatment="correct").verdict == "confirmed"


def test_head_alignment_is_its_own_claim():
    b = {"identity": 0.3, "first": 0.4, "last": 0.45, "all": 0.42,
         "first (untied)": 0.5, "last (untied)": 0.55, "all (untied)": 0.52}
    assert claim_head_alignment(table(b)).verdict == "confirmed"
    same = {**b, "first": 0.5, "last": 0.55, "all": 0.52}
    assert claim_head_alignment(table(same)).verdict == "no measurable effect"


def amount_rows(by_amount: dict[int, float]) -> pd.DataFrame:
    return pd.DataFrame([{"sentences": n, "pair": p, "barrier": v + e, "tokens": 30 * n}
                         for n, v in by_amount.items() for p, e in zip(PAIRS, NOISE)])


VANILLA = {p: 1.0 + e for p, e in zip(PAIRS, NOISE)}


def test_c5_not_testable_when_alignment_does_nothing():
    c5 = claim_c5(amount_rows({500: 1.0, 4000: 0.99, 10000: 1.0}), VANILLA)
    assert c5.verdict == NOT_TESTABLE and "no confirmed effect" in str(c5)  # flat, but flat because alignment is idle


def test_c5_confirmed_flat_and_not_confirmed_when_more_text_helps():
    assert claim_c5(amount_rows({500: 0.7, 4000: 0.69, 10000: 0.7}), VANILLA).verdict == "confirmed"
    assert claim_c5(amount_rows({500: 0.95, 4000: 0.8, 10000: 0.6}), VANILLA).verdict == "not confirmed"
    s = amount_summary(amount_rows({500: 0.7, 4000: 0.69}))
    assert list(s.index) == [500, 4000] and s.loc[500, "barrier"] == pytest.approx(0.7 + NOISE.mean())
    assert s.loc[4000, "tokens"] == 120000 and s["se"].gt(0).all()


def test_c5_refuses_a_pair_without_vanilla_and_duplicates():
    with pytest.raises(TxmergeError, match="No vanilla barrier for pair"):
        claim_c5(amount_rows({500: 0.7}), {"1-2": 1.0})
    rows = amount_rows({500: 0.7})
    with pytest.raises(TxmergeError, match="appears twice"):
        claim_c5(pd.concat([rows, rows.iloc[[0]]]), VANILLA)


def test_c6_on_a_correlation_table():
    corr = {p: ({"ff.0": 0.3 + e, "attn.0": 0.2, "residual": 0.9}, {"ff.0": 0.01, "attn.0": 0.0, "residual": 0.5})
            for p, e in zip(PAIRS, NOISE)}
    t = correlation_table(corr)
    assert set(t["kind"]) == {"ff", "attn"} and t["layer"].eq(1).all()  # the residual group is not a layer's
    assert claim_c6(t).verdict == "confirmed"
    same = {p: (m, m) for p, (m, _) in corr.items()}
    assert claim_c6(correlation_table(same)).verdict == "no measurable effect"
    with pytest.raises(TxmergeError, match="No ff or attn groups"):
        correlation_table({"1-2": ({"residual": 0.9}, {"residual": 0.5})})


def test_one_pair_leaves_every_claim_undecided():
    one = table({"vanilla": 1.0, "attn": 0.95, "ff": 0.8, "ff+attn": 0.6})
    one = one[one["pair"] == "1-2"]
    c2 = claim_c2(one)
    assert c2.verdict == "undecided" and all(d.verdict == "undecided (one pair)" for d in c2.decisions.values())


def glue_results(values: dict[str, tuple[float, float, float]], pairs=((1, 2), (3, 4), (5, 6))):
    """Results of one task: {method: (loss of B, peak, loss of A)} for three pairs, accuracy along."""
    from txmerge.experiments.pipeline import CurveResult, Results

    out = []
    for (a, b), e in zip(pairs, [0.0, 0.01, -0.01]):
        for name, (lb, peak, la) in values.items():
            lam = np.linspace(0, 1, 5)
            loss = np.array([lb, (lb + peak) / 2, peak, (la + peak) / 2, la]) + e
            curve = pd.DataFrame({"lambda": lam, "loss": loss, "accuracy": 0.8 - loss / 10})
            out.append(CurveResult((a, b), name, {}, curve, float(loss.max() - (loss[0] + loss[-1]) / 2), 0.0, 0.0, True, {}, {}, 0.0))
    return Results(out)


def test_glue_tables_and_flags():
    results = {"sst2": glue_results({"vanilla": (0.5, 0.9, 0.52), "full": (0.5, 0.6, 0.52)}),
               "mrpc": glue_results({"vanilla": (0.7, 0.9, 0.72), "full": (0.7, 0.9, 0.72)})}
    metrics = {"sst2": "accuracy", "mrpc": "accuracy"}
    priors = {"sst2": {"loss": 0.69, "accuracy": 0.5}, "mrpc": {"loss": 0.62, "accuracy": 0.68}}
    ends = finetune_table(results, priors, metrics)
    assert list(ends.loc["sst2"].index) == ["prior"] + [f"seed {s}" for s in range(1, 7)]
    learned, calibrated = beats_prior_by_task(ends, metrics)
    assert learned == {"sst2": True, "mrpc": True} and calibrated == {"sst2": True, "mrpc": False}
    t3, decisions = glue_barrier_table(results, {"sst2": "SST-2", "mrpc": "MRPC"}, {"sst2": {"vanilla": (0.42, 0.04), "full": (0.36, 0.07)}})
    assert t3.loc["sst2", "full lower?"] == "confirmed" and t3.loc["mrpc", "full lower?"] == "no measurable effect"
    assert t3.loc["sst2", "paper: vanilla → full"] == "0.42 → 0.36" and t3.loc["mrpc", "paper: vanilla → full"] == "–"
    assert t3.loc["sst2", "vanilla"] == "0.390 ± 0.000" and t3.loc["sst2", "full"] == "0.090 ± 0.000"
    assert decisions["sst2"].verdict == "confirmed"
    shapes = curve_shapes(results)
    assert len(shapes) == 12 and not shapes["dips below both endpoints"].any()
    with pytest.raises(TxmergeError, match="No vanilla run"):
        finetune_table({"sst2": glue_results({"full": (0.5, 0.6, 0.52)})}, priors, metrics)


def test_pairs_sharing_seeds_keep_the_estimate_but_decide_nothing():
    """1-2, 3-4, 1-5: seed 1 twice. The same numbers that confirm C2 on disjoint pairs are undecided."""
    shared = table({"vanilla": 1.0, "attn": 0.95, "ff": 0.8, "ff+attn": 0.6}).replace({"pair": {"5-6": "1-5", "7-8": "2-3"}})
    disjoint = claim_c2(table({"vanilla": 1.0, "attn": 0.95, "ff": 0.8, "ff+attn": 0.6}))
    c2 = claim_c2(shared)
    assert disjoint.verdict == "confirmed"
    assert c2.verdict == "undecided (pairs share seeds)"
    for name, d in c2.decisions.items():
        assert d.verdict == "undecided (pairs share seeds)" and not d.independent
        assert d.relative == pytest.approx(disjoint.decisions[name].relative)
        assert d.relative_interval == pytest.approx(disjoint.decisions[name].relative_interval)
    assert "not independent" in c2.detail()
    results = {"sst2": glue_results({"vanilla": (0.5, 0.9, 0.52), "full": (0.5, 0.6, 0.52)}, pairs=((1, 2), (1, 3), (2, 3)))}
    _, decisions = glue_barrier_table(results, {"sst2": "SST-2"}, {})
    assert decisions["sst2"].verdict == "undecided (pairs share seeds)"


def test_perplexity_ratio_and_the_glue_claims_table():
    from txmerge.experiments.claims import glue_claims_table, perplexity_ratio

    b = table({"vanilla": 1.0, "ff+attn": 0.6})
    b["loss_mid"] = np.where(b["method"] == "vanilla", 8.0, 6.0)
    assert perplexity_ratio(b, "vanilla", "ff+attn") == pytest.approx(np.exp(2.0))
    t = glue_claims_table(4.2, {"sst2": 0.31}, {"c7": "confirmed (...)", "c8": "undecided (...)"})
    assert list(t.columns) == ["claim", "ours", "paper"] and "sst2 0.31 vs MLM 4.20" in t.loc[0, "ours"]
