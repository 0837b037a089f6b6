"""The paper's claims C1–C6 decided from this book's tables, by the one rule of :mod:`txmerge.experiments.verdicts`.

Every function takes the tidy tables the experiments return (``Results.barriers``: one row per pair
and method with ``barrier``, ``barrier_linear``, ``loss_B``, ``loss_A``, ``function_preserving``)
and returns a :class:`Claim`: the claim's verdict and every paired comparison behind it. A claim made
of several parts is confirmed only when every part is (:func:`txmerge.experiments.verdicts.combine`). The
chapters glue what these return; no chapter decides a verdict itself. C7 and C8 are
:func:`txmerge.experiments.verdicts.glue_claims`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from txmerge.base.errors import TxmergeError
from txmerge.experiments.verdicts import Decision, check_barrier_table, combine, compare, decisions_table, majority, mean_se

NOT_TESTABLE = "not testable"


@dataclass(frozen=True)
class Claim:
    """A claim's verdict and the comparisons (name → :class:`Decision`) it was decided from."""

    verdict: str
    decisions: dict[str, Decision] = field(default_factory=dict)
    reason: str = ""  # why a claim could not be tested

    def table(self) -> pd.DataFrame:
        """One row per comparison (see :func:`txmerge.experiments.verdicts.decisions_table`)."""
        return decisions_table(self.decisions)

    def __str__(self) -> str:
        return f"{self.verdict} ({self.reason})" if self.reason else self.verdict

    def detail(self) -> str:
        """Every comparison with its numbers (difference ± s.e., effect against the threshold, pairs, pairs needed)."""
        parts = [f"{name}: {d}" for name, d in self.decisions.items()]
        return "; ".join(([self.reason] if self.reason else []) + parts)


def _claim(decisions: dict[str, Decision]) -> Claim:
    return Claim(combine(decisions.values()), decisions)


def claim_c1(barriers: pd.DataFrame) -> Claim:
    """C1, vanilla averaging has a large barrier: the vanilla barrier against 10 % of the endpoint loss."""
    b = check_barrier_table(barriers, ["vanilla"])["vanilla"]
    rows = barriers[barriers["method"] == "vanilla"]  # validated above: one row per pair
    d = compare(np.zeros(len(b)), b, float(rows[["loss_A", "loss_B"]].to_numpy().mean()))
    return _claim({"vanilla barrier ≥ 10 % of the endpoint loss": d})


def claim_c2(barriers: pd.DataFrame) -> Claim:
    """C2: FF < vanilla, FF + attention < FF, FF < attention only (differences from 10 % of the vanilla barrier)."""
    b = check_barrier_table(barriers, ["vanilla", "attn", "ff", "ff+attn"])
    scale = float(b["vanilla"].mean())
    return _claim({"FF < vanilla": compare(b["ff"], b["vanilla"], scale),
                   "FF+attn < FF": compare(b["ff+attn"], b["ff"], scale),
                   "FF < attn only": compare(b["ff"], b["attn"], scale)})


def perplexity_ratio(barriers: pd.DataFrame, higher: str, lower: str) -> float:
    """How many times lower the pseudo-perplexity of ``lower`` is than ``higher``'s at λ = 0.5, averaged
    over pairs (the paper's "≈7× lower pseudo-PPL at λ = 0.5" for FF+attn against vanilla)."""
    mid = _pivot(barriers, "method", "loss_mid")
    return float(np.exp(mid[higher] - mid[lower]).mean())


def _keeps_function(barriers: pd.DataFrame, method: str) -> bool:
    return bool(barriers.loc[barriers["method"] == method, "function_preserving"].all())


def _ranked(barriers: pd.DataFrame, lower: str | Sequence[str], higher: str, scale: float,
            label: str | None = None) -> tuple[str, Decision]:
    """(name, decision) of "``lower`` < ``higher``" (several ``lower`` methods: their pairwise maximum).
    A method that changes B's function moves B's endpoint, so such a comparison uses the linear
    (Entezari) barrier, which does not count that shift, and says so in its name."""
    lows = [lower] if isinstance(lower, str) else list(lower)
    linear = not all(_keeps_function(barriers, m) for m in [*lows, higher])
    b = check_barrier_table(barriers, [*lows, higher], "barrier_linear" if linear else "barrier")
    name = f"{label or ' / '.join(lows)} < {higher}" + (" (linear barrier)" if linear else "")
    return name, compare(b[lows].max(axis=1), b[higher], scale)


def ranked(barriers: pd.DataFrame, lower: str, higher: str, reference: str) -> Decision:
    """One comparison "``lower`` < ``higher``" outside the paper's claims, differences counting from
    10 % of ``reference``'s mean barrier (linear barriers if a method changes B's function)."""
    scale = float(check_barrier_table(barriers, [reference])[reference].mean())
    return _ranked(barriers, lower, higher, scale)[1]


def claim_c3(barriers: pd.DataFrame) -> Claim:
    """C3, the chain Head-Perm < Ignore-Heads < Monotonic < FF only (no attention alignment; its barrier
    is the scale). Ignore-Heads does not keep B's function: it is ranked by the linear barrier."""
    scale = float(check_barrier_table(barriers, ["ff", "monotonic", "ignore", "permute"])["ff"].mean())
    return _claim(dict(_ranked(barriers, lo, hi, scale) for lo, hi in
                       (("permute", "ignore"), ("ignore", "monotonic"), ("monotonic", "ff"))))


LEARNED = ("first", "last", "all")


def claim_c4(barriers: pd.DataFrame, treatment: str = "untied") -> Claim:
    """C4: every learned residual permutation (first, last, all) has a higher barrier than the identity,
    and *separate* is worst. ``treatment``: the decoder handling of the learned strategies (``untied``:
    the paper's method made function-preserving; ``correct``: the plain names, which also align the LM
    head). *Separate* changes B's function, so it is ranked by the linear (Entezari) barrier, which
    does not count the shift of its endpoint."""
    names = [s if treatment == "correct" else f"{s} ({treatment})" for s in LEARNED]
    b = check_barrier_table(barriers, ["identity", *names])
    scale = float(b["identity"].mean())
    decisions = dict(_ranked(barriers, "identity", n, scale) for n in names)
    if "separate" in set(barriers["method"]):
        decisions.update([_ranked(barriers, names, "separate", scale, label="worst learned")])
    return _claim(decisions)


def claim_head_alignment(barriers: pd.DataFrame) -> Claim:
    """This book's extension: aligning the LM head (``correct``) lowers the barrier against the minimal
    fix (``untied``: the decoder keeps B's own embeddings, the heads are not aligned), per strategy."""
    names = [n for s in LEARNED for n in (s, f"{s} (untied)")]
    b = check_barrier_table(barriers, ["identity", *names])
    scale = float(b["identity"].mean())
    return _claim({f"{s} < {s} (untied)": compare(b[s], b[f"{s} (untied)"], scale) for s in LEARNED})


def endpoint_table(barriers: pd.DataFrame, reference: str, order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per method: both barriers (mean over pairs), the endpoint shift L(B′) − L(B) against
    ``reference`` (a method that leaves B as it is), and whether permuted B kept B's function.
    A method whose barrier is mostly its endpoint shift cannot be ranked by that barrier."""
    methods = list(order or dict.fromkeys(barriers["method"]))
    b = check_barrier_table(barriers, methods, "barrier")
    lin = check_barrier_table(barriers, methods, "barrier_linear")
    end = check_barrier_table(barriers, list(dict.fromkeys([reference, *methods])), "loss_B")
    shift = end[methods].sub(end[reference], axis=0)
    keeps = barriers.groupby("method")["function_preserving"].all()
    return pd.DataFrame({"barrier": b.mean(), "linear barrier": lin.mean(), "endpoint shift": shift.mean(),
                         "keeps B's function": [bool(keeps[m]) for m in methods]}, index=pd.Index(methods, name="method"))


def _pivot(table: pd.DataFrame, columns: str, value: str) -> pd.DataFrame:
    if table.duplicated(["pair", columns]).any():
        raise TxmergeError(f"A pair appears twice for the same {columns}; each pair counts once.")
    out = table.pivot(index="pair", columns=columns, values=value)
    if out.isna().any().any() or not np.isfinite(out.to_numpy(dtype=float)).all():
        raise TxmergeError(f"The {value} table has missing or non-finite entries; fix the runs before deciding.")
    return out


def amount_summary(amount: pd.DataFrame) -> pd.DataFrame:
    """Mean ± s.e. barrier per amount of correlation text (``amount``: sentences, pair, barrier[, tokens])."""
    b = _pivot(amount, "sentences", "barrier")
    ms = [mean_se(b[n]) for n in b.columns]
    out = pd.DataFrame({"barrier": [m for m, _ in ms], "se": [s for _, s in ms]}, index=b.columns)
    if "tokens" in amount:
        out["tokens"] = amount.groupby("sentences")["tokens"].first()
    return out


def claim_c5(amount: pd.DataFrame, vanilla: Mapping[str, float]) -> Claim:
    """C5, the barrier hardly depends on the amount of correlation text. Testable only where alignment
    has a confirmed effect (below vanilla by 10 % of its barrier) at some amount; then confirmed when
    the largest amount has no measurable effect against the smallest."""
    b = _pivot(amount, "sentences", "barrier")
    missing = [p for p in b.index if p not in vanilla]
    if missing:
        raise TxmergeError(f"No vanilla barrier for pair(s) {', '.join(map(str, missing))}; run vanilla on the same pairs.")
    v = pd.Series({p: float(vanilla[p]) for p in b.index})
    scale = float(v.mean())
    decisions = {f"aligned < vanilla at {n:,} sentences": compare(b[n], v, scale) for n in b.columns}
    if not any(d.verdict == "confirmed" for d in decisions.values()):
        return Claim(NOT_TESTABLE, decisions, "alignment has no confirmed effect at any amount, so a flat barrier says nothing")
    small, large = b.columns.min(), b.columns.max()
    flat = compare(b[large], b[small], scale)
    decisions[f"more text lowers the barrier ({small:,} → {large:,})"] = flat
    verdict = {"no measurable effect": "confirmed", "confirmed": "not confirmed", "reversed": "not confirmed"}.get(flat.verdict, "undecided")
    return Claim(verdict, decisions)


def correlation_table(correlations: Mapping[str, tuple[Mapping[str, float], Mapping[str, float]]],
                      kinds: Sequence[str] = ("ff", "attn")) -> pd.DataFrame:
    """Tidy table (pair, kind, layer, aligned, unaligned) from {pair: (matched, identity)} correlations
    per group ("ff.0", "attn.0", ...), e.g. :meth:`txmerge.experiments.pipeline.Experiment.heldout_correlation`."""
    rows = []
    for pair, (matched, identity) in correlations.items():
        for group, value in matched.items():
            kind, _, layer = group.partition(".")
            if kind in kinds and layer.isdigit():
                rows.append({"pair": pair, "kind": kind, "layer": int(layer) + 1, "aligned": float(value),
                             "unaligned": float(identity[group])})
    if not rows:
        raise TxmergeError(f"No {' or '.join(kinds)} groups in the correlations; align with ff and attn first.")
    return pd.DataFrame(rows)


def claim_c6(table: pd.DataFrame) -> Claim:
    """C6, alignment raises the correlation of matched features: per pair, the mean aligned against the
    mean unaligned correlation (a correlation table from :func:`correlation_table`, on text the
    matching never saw), a difference counting from 0.1 (10 % of a perfect correlation)."""
    if table.duplicated(["pair", "kind", "layer"]).any():
        raise TxmergeError("A (pair, kind, layer) appears twice in the correlation table; each counts once.")
    by_pair = table.groupby("pair")[["unaligned", "aligned"]].mean()
    return _claim({"aligned > unaligned (held-out text)": compare(by_pair["unaligned"], by_pair["aligned"], 1.0)})


# ------------------------------------------------------------------------------------------ GLUE
def finetune_table(results: Mapping[str, Any], priors: Mapping[str, Mapping[str, float]], metrics: Mapping[str, str]) -> pd.DataFrame:
    """Validation loss and metric of every fine-tuned endpoint and of each task's prior, indexed by
    (task, model). ``results``: {task: Results with a "vanilla" run}; ``priors``: {task: the prior's
    loss and metric}; ``metrics``: {task: "accuracy" or "pearson"}."""
    rows = []
    for task, res in results.items():
        metric = metrics[task]
        for r in res.results:
            if r.name == "vanilla":
                for seed, row in ((r.pair[1], r.curve.iloc[0]), (r.pair[0], r.curve.iloc[-1])):
                    rows.append({"task": task, "model": f"seed {seed}", "validation loss": row["loss"], metric: row[metric]})
        rows.append({"task": task, "model": "prior", "validation loss": priors[task]["loss"], metric: priors[task].get(metric, np.nan)})
    table = pd.DataFrame(rows).drop_duplicates(["task", "model"])
    if not (table["model"] != "prior").any():
        raise TxmergeError("No vanilla run among the results; the fine-tuned endpoints are read from it.")
    return table.set_index(["task", "model"]).sort_index()


def beats_prior_by_task(endpoints: pd.DataFrame, metrics: Mapping[str, str]) -> tuple[dict[str, bool], dict[str, bool]]:
    """({task: every fine-tune's metric beats the prior's}, {task: every fine-tune's loss is below the prior's})."""
    from txmerge.experiments.paper import beats_prior

    learned, calibrated = {}, {}
    for task, metric in metrics.items():
        models = endpoints.loc[task]
        fine = models.drop("prior")
        learned[task] = beats_prior(fine[metric], models.loc["prior", metric], higher_is_better=True)
        calibrated[task] = beats_prior(fine["validation loss"], models.loc["prior", "validation loss"], higher_is_better=False)
    return learned, calibrated


def glue_barrier_table(results: Mapping[str, Any], analogue_of: Mapping[str, str],
                       reported: Mapping[str, Mapping[str, tuple[float, float]]]) -> tuple[pd.DataFrame, dict[str, Decision]]:
    """Table 3 as text cells that fit a page: per task the vanilla and full barriers ("mean ± s.e."),
    "full lower?" by the rule (10 % of the vanilla barrier), the paper's values; and the decisions
    themselves (with every number) for C7."""
    rows, decisions = [], {}
    for task, res in results.items():
        b = check_barrier_table(res.barriers, ["vanilla", "full"])
        decisions[task] = compare(b["full"], b["vanilla"], float(b["vanilla"].mean()))
        ref = reported.get(task)
        rows.append({"task": task, "analogue of": analogue_of[task], "vanilla": _pm(b["vanilla"]), "full": _pm(b["full"]),
                     "full lower?": decisions[task].verdict,
                     "paper: vanilla → full": f"{ref['vanilla'][0]:.2f} → {ref['full'][0]:.2f}" if ref else "–"})
    return pd.DataFrame(rows).set_index("task"), decisions


def claim_c7(full_vs_vanilla: Mapping[str, Decision]) -> Claim:
    """C7's paired part as a claim: per task, "full < vanilla" (the decisions of :func:`glue_barrier_table`),
    decided by :func:`txmerge.experiments.verdicts.majority` (the full method lowers most tasks)."""
    if not full_vs_vanilla:
        raise TxmergeError("No GLUE task was run; give at least one task.")
    decisions = {f"full < vanilla ({task})": d for task, d in full_vs_vanilla.items()}
    return Claim(majority(decisions.values()), decisions)


def _pm(values) -> str:
    m, se = mean_se(values)
    return f"{m:.3f} ± {se:.3f}" if np.isfinite(se) else f"{m:.3f} (one pair)"


def curve_shapes(results: Mapping[str, Any]) -> pd.DataFrame:
    """One row per GLUE curve: task, pair, method, whether it dips below both endpoints, whether it is M-shaped."""
    from txmerge.core.interpolate import dips_below_endpoints, m_shaped

    return pd.DataFrame([{"task": t, "pair": f"{r.pair[0]}-{r.pair[1]}", "method": r.name,
                          "dips below both endpoints": dips_below_endpoints(r.curve["loss"]),
                          "M-shaped": m_shaped(r.curve["loss"], r.curve["lambda"])}
                         for t, res in results.items() for r in res.results])


def glue_claims_table(mlm_vanilla: float, glue_vanilla: Mapping[str, float], claims: Mapping[str, str]) -> pd.DataFrame:
    """C7 and C8 beside the paper: one row per part, our sentence (``claims`` from
    :func:`txmerge.experiments.verdicts.glue_claims`) and the paper's."""
    barriers = ", ".join(f"{t} {v:.2f}" for t, v in glue_vanilla.items())
    return pd.DataFrame({
        "claim": ["C7: GLUE barriers much smaller than the MLM barrier", "C7: the full method lowers the barrier on most tasks",
                  "C8: curves dip below both endpoints / M-shaped curves"],
        "ours": [f"classification vanilla barriers {barriers} vs MLM {mlm_vanilla:.2f} nats", claims["c7"], claims["c8"]],
        "paper": ["0.4–1.4 nats (CE tasks) vs 4.95", "6 of 8 tasks", "yes (λ≈0.15 and 0.85); M-shaped CoLA, QQP, RTE, MRPC"],
    })
