"""The paper's reported numbers (arXiv v1/v2 via paper-spec §3; unverified against TMLR) and its claims.

Paired comparisons follow the decision rule of :mod:`txmerge.experiments.verdicts`.

Tables are ``{row: (value, standard error)}``; the chapters print them beside ours.
"""

from __future__ import annotations

import numpy as np

#: Table 1 — MLM barrier of FF + attention variants (10 MultiBERTs pairs).
TABLE1 = {"ff": (4.31, 0.21), "monotonic": (4.13, 0.20), "ignore": (3.97, 0.25), "permute": (3.71, 0.23)}
#: Fig. 3 / Table 1 / Table 2 — component merges (vanilla = Table 2's identity row).
COMPONENTS = {"vanilla": (4.95, 0.38), "ff": (4.31, 0.21), "ff+attn": (3.71, 0.23)}
#: Table 2 — residual strategies (residual only).
TABLE2 = {"identity": (4.95, 0.38), "first": (7.58, 0.19), "last": (7.41, 0.18), "all": (7.34, 0.22), "separate": (9.38, 0.49)}
#: Fig. 6 — barrier vs number of correlation sentences (read off the plot).
FIG6 = {1_000: (3.98, 0.17), 5_000: (3.92, 0.14), 10_000: (3.61, 0.20), 50_000: (3.91, 0.22), 100_000: (3.71, 0.21),
        500_000: (3.83, 0.24), 1_000_000: (3.84, 0.24)}
#: Fig. 4 — mean correlation per layer (1..12), aligned and unaligned (read off the plot).
FIG4 = {
    "ff aligned": [0.134, 0.103, 0.095, 0.099, 0.105, 0.110, 0.115, 0.119, 0.116, 0.133, 0.265, 0.113],
    "attn aligned": [0.115, 0.103, 0.087, 0.091, 0.092, 0.089, 0.085, 0.081, 0.085, 0.078, 0.072, 0.071],
    "ff unaligned": [0.001] * 9 + [0.016, 0.175, 0.015],
    "attn unaligned": [0.0] * 12,
}
#: Table 3 — GLUE barriers, vanilla vs the full method (FF + Head-Perm + residual 'first').
TABLE3 = {
    "mnli-mm": {"vanilla": (0.61, 0.03), "full": (0.72, 0.08)},
    "qqp": {"vanilla": (1.37, 0.09), "full": (1.20, 0.11)},
    "qnli": {"vanilla": (0.64, 0.04), "full": (0.77, 0.06)},
    "sst2": {"vanilla": (0.42, 0.04), "full": (0.36, 0.07)},
    "cola": {"vanilla": (1.31, 0.14), "full": (1.11, 0.13)},
    "stsb": {"vanilla": (5.15, 0.44), "full": (4.24, 0.35)},
    "mrpc": {"vanilla": (2.74, 0.08), "full": (1.93, 0.11)},
    "rte": {"vanilla": (0.53, 0.04), "full": (0.41, 0.05)},
}

#: The paper's qualitative claims, as the results page lists them.
CLAIMS = {
    "C1": "Vanilla averaging of two seeds has a large MLM loss barrier.",
    "C2": "Permuting FF units lowers the barrier; adding Head-Perm attention lowers it further; attention alone helps less than FF alone.",
    "C3": "Head structure matters: Head-Perm < Ignore-Heads < Monotonic < no attention alignment.",
    "C4": "Every learned residual permutation is worse than the identity; Separate is worst.",
    "C5": "The barrier hardly depends on the amount of correlation data.",
    "C6": "Alignment raises the correlation of matched features far above the unaligned baseline.",
    "C7": "GLUE barriers are much smaller than MLM barriers, and the full method lowers them on most tasks.",
    "C8": "GLUE interpolation curves dip below both endpoints and can be M-shaped.",
}


def beats_prior(values, prior: float, higher_is_better: bool) -> bool:
    """Whether every fine-tune's ``values`` (a metric or a loss per seed) beats the prior baseline's
    ``prior``; a NaN prior (Pearson of a constant prediction) counts as 0."""
    v = np.asarray(values, float)
    ref = 0.0 if np.isnan(prior) else float(prior)
    return bool(v.size > 0 and ((v > ref).all() if higher_is_better else (v < ref).all()))
