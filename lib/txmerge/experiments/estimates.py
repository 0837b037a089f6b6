"""The estimates table: every comparison of every claim, as a size with an interval, beside the paper.

One row per comparison (a :class:`txmerge.experiments.verdicts.Decision` of a claim):

- ``estimate``: the relative effect, the mean paired difference over the comparison's reference
  scale, positive in the claim's direction (``lower`` below ``higher``);
- ``low``/``high``: its two-sided 90 % t-interval (pairs − 1 degrees of freedom);
- ``pairs`` and ``independent`` (False when some seed appears in two pairs);
- ``verdict``: the rule's outcome, unchanged;
- ``paper``: the paper's relative effect for the same comparison from its Tables 1–3 and Fig. 4/6,
  in the same direction and on the same reference scale, where the paper reports both numbers.

Chapters build their rows with :func:`estimates_of`, show them with :func:`compact_table` and
:func:`txmerge.chapters.plots.forest_plot`, and record them (:func:`record`) for the results page,
which reads every chapter's rows back with :func:`load` — one table behind every verdict on the page.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from txmerge.base.cache import atomic_write_bytes
from txmerge.base.errors import TxmergeError
from txmerge.experiments import paper
from txmerge.experiments.claims import Claim
from txmerge.experiments.verdicts import effect_text

#: the chapters whose comparisons the results page shows, in its order
BOOK_CHAPTERS = ("02_ffn_attention", "03_attention_heads", "04_residual", "05_data_amount", "06_glue")
COLUMNS = ["claim", "comparison", "chapter", "estimate", "low", "high", "pairs", "independent", "verdict", "paper"]


def _rel(lower: float, higher: float, scale: float) -> float:
    return (higher - lower) / scale


def _paper_effects() -> dict[tuple[str, str], float]:
    """{(claim, comparison without its " (linear barrier)" note): the paper's relative effect}."""
    c, t1, t2 = paper.COMPONENTS, paper.TABLE1, paper.TABLE2
    v, ff = c["vanilla"][0], c["ff"][0]
    out = {
        ("C2", "FF < vanilla"): _rel(ff, v, v),
        ("C2", "FF+attn < FF"): _rel(c["ff+attn"][0], ff, v),
        ("C3", "permute < ignore"): _rel(t1["permute"][0], t1["ignore"][0], ff),
        ("C3", "ignore < monotonic"): _rel(t1["ignore"][0], t1["monotonic"][0], ff),
        ("C3", "monotonic < ff"): _rel(t1["monotonic"][0], ff, ff),
        ("C4", "worst learned < separate"): _rel(max(t2[s][0] for s in ("first", "last", "all")), t2["separate"][0], v),
    }
    for s in ("first", "last", "all"):  # the paper's residual permutations; ours are made function-preserving
        for name in (f"identity < {s}", f"identity < {s} (untied)"):
            out[("C4", name)] = _rel(t2["identity"][0], t2[s][0], v)
    for n, (b, _) in paper.FIG6.items():
        out[("C5", f"aligned < vanilla at {n:,} sentences")] = _rel(b, v, v)
    aligned = np.mean(paper.FIG4["ff aligned"] + paper.FIG4["attn aligned"])
    unaligned = np.mean(paper.FIG4["ff unaligned"] + paper.FIG4["attn unaligned"])
    out[("C6", "aligned > unaligned (held-out text)")] = float(aligned - unaligned)
    for task, row in paper.TABLE3.items():
        out[("C7", f"full < vanilla ({task})")] = _rel(row["full"][0], row["vanilla"][0], row["vanilla"][0])
    return out


PAPER_EFFECTS = _paper_effects()


def paper_effect(claim: str, comparison: str) -> float:
    """The paper's relative effect for ``comparison`` of ``claim`` (NaN where the paper has no number)."""
    base = re.sub(r" \((linear barrier)\)$", "", comparison)
    return float(PAPER_EFFECTS.get((claim.split(" ")[0], base), np.nan))


def estimates_of(claims: Mapping[str, Claim], chapter: str) -> pd.DataFrame:
    """The rows of ``claims`` ({claim id such as "C2": Claim}) measured in ``chapter``, one per comparison."""
    rows = []
    for claim_id, claim in claims.items():
        for name, d in claim.decisions.items():
            low, high = d.relative_interval
            rows.append({"claim": claim_id, "comparison": name, "chapter": chapter, "estimate": float(d.relative),
                         "low": float(low), "high": float(high), "pairs": int(d.pairs), "independent": bool(d.independent),
                         "verdict": d.verdict, "paper": paper_effect(claim_id, name)})
    if not rows:
        raise TxmergeError(f"Chapter {chapter} gave no comparisons to estimate; run its claims first.")
    return pd.DataFrame(rows, columns=COLUMNS)


def check_estimates(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` unchanged, or one sentence naming the first comparison whose estimate or interval is
    missing or not finite (a figure would silently drop it)."""
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise TxmergeError(f"The estimates table lacks the column(s) {', '.join(missing)}; build it with estimates_of.")
    if table.empty:
        raise TxmergeError("The estimates table is empty; run the chapters' claims first.")
    for _, row in table.iterrows():
        values = [row["estimate"]] + ([row["low"], row["high"]] if row["pairs"] > 1 else [])
        if not np.isfinite(np.asarray(values, dtype=float)).all():
            raise TxmergeError(f"Claim {row['claim']} ({row['comparison']!r}, chapter {row['chapter']}) has no finite "
                               "estimate or interval; rerun that chapter.")
    return table


def _pct(x: float) -> str:
    return effect_text(x, np.nan, np.nan, 1).replace(" (one pair)", "")


def estimate_text(row: Mapping) -> str:
    """``+12 % [+5, +19]`` (one pair: no interval); a trailing † marks pairs that share seeds."""
    return effect_text(row["estimate"], row["low"], row["high"], row["pairs"]) + ("" if row["independent"] else " †")


def compact_table(table: pd.DataFrame) -> pd.DataFrame:
    """claim | comparison | paper | this build (estimate [90 % interval]) | verdict | pairs | chapter, a few words per cell."""
    t = check_estimates(table)
    return pd.DataFrame({
        "claim": t["claim"], "comparison": t["comparison"].str.replace(" (linear barrier)", " (linear)", regex=False),
        "paper": [_pct(p) if np.isfinite(p) else "–" for p in t["paper"]],
        "this build [90 %]": [estimate_text(r) for _, r in t.iterrows()],
        "verdict": t["verdict"].str.replace("undecided (pairs share seeds)", "undecided †", regex=False),
        "pairs": t["pairs"], "chapter": t["chapter"]}).reset_index(drop=True)


# ------------------------------------------------------------------ the record read by the results page
def estimates_dir() -> Path:
    """Where chapters record their rows (``$TXMERGE_ESTIMATES``, default ``executed/estimates``)."""
    return Path(os.environ.get("TXMERGE_ESTIMATES", "executed/estimates"))


def record(table: pd.DataFrame, chapter: str, preset: str, pairs: Sequence[Sequence[int]]) -> Path:
    """Write ``chapter``'s rows (with the preset and pairs they came from) for the results page; atomic."""
    check_estimates(table)
    path = estimates_dir() / f"{chapter}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"chapter": chapter, "preset": preset, "pairs": [list(map(int, p)) for p in pairs],
           "rows": json.loads(table.to_json(orient="records"))}
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode())
    return path


def load(chapters: Sequence[str], preset: str) -> pd.DataFrame:
    """Every recorded row of ``chapters`` (in that order), refusing a chapter not recorded for ``preset``."""
    frames = []
    for chapter in chapters:
        path = estimates_dir() / f"{chapter}.json"
        if not path.exists():
            raise TxmergeError(f"No estimates from chapter {chapter} in {estimates_dir()}; execute that chapter first "
                               "(make book runs it before this page).")
        doc = json.loads(path.read_text())
        if doc.get("preset") != preset:
            raise TxmergeError(f"The estimates of chapter {chapter} come from preset {doc.get('preset')!r}, not {preset!r}; "
                               f"rerun it with PRESET={preset}.")
        frames.append(pd.DataFrame(doc["rows"], columns=COLUMNS))
    table = pd.concat(frames, ignore_index=True)
    for column in ("estimate", "low", "high", "paper"):  # JSON null -> NaN
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    return check_estimates(table)
