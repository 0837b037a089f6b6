"""The book's figure style: one seaborn theme and one palette for vanilla and every method.

Use ``setup()`` once per chapter (``plot_curves`` and ``plot_heatmap`` call it too); colours come
from ``PALETTE`` by method name so a method has the same colour in every chapter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

from txmerge.experiments.verdicts import mean_se

LAMBDA_LABEL = "λ (0 = model B permuted, 1 = model A)"

#: method name -> colour (fixed across the book). Colour-blind friendly (seaborn "colorblind" + greys).
_CB = sns.color_palette("colorblind", 10).as_hex()
PALETTE: dict[str, str] = {
    "vanilla": "#4d4d4d",  # dark grey: no alignment
    "ff": _CB[0],  # blue
    "attn": _CB[2],  # green
    "ff+attn": _CB[3],  # red-orange
    "monotonic": _CB[4],  # purple
    "ignore": _CB[8],  # yellow
    "permute": _CB[1],  # orange
    "identity": _CB[7],  # grey
    "first": _CB[9],  # light blue
    "full": _CB[9],  # = FF + Head-Perm + residual "first" (the GLUE chapter)
    "last": _CB[5],  # brown
    "all": _CB[6],  # pink
    "separate": "#117733",  # dark green
    "official": "#000000",  # black
}
_DARK = sns.color_palette("dark", 10).as_hex()
for _name, _i in (("first", 9), ("last", 5), ("all", 6)):  # residual strategies under the other decoder treatments
    PALETTE[f"{_name} (untied)"] = _DARK[_i]
    PALETTE[f"{_name} (official)"] = "#000000"

_DONE = False


def setup() -> None:
    """Apply the book's seaborn theme (idempotent)."""
    global _DONE
    if not _DONE:
        sns.set_theme(context="notebook", style="whitegrid", font_scale=0.95)
        matplotlib.rcParams.update({"figure.dpi": 110, "savefig.dpi": 150, "axes.titleweight": "bold"})
        _DONE = True


def color(method: str) -> str:
    """Colour of ``method``; unknown names get a neutral grey (add them to PALETTE)."""
    return PALETTE.get(method, "#999999")


def plot_curves(
    ax: plt.Axes,
    lambdas: Sequence[float],
    curves_by_method: Mapping[str, np.ndarray],
    ylabel: str,
    *,
    title: str | None = None,
    legend: bool = True,
) -> plt.Axes:
    """Mean ± s.e. over pairs of each method's curve; ``curves_by_method[m]`` is ``[pairs, n_lambda]``."""
    setup()
    lambdas = np.asarray(lambdas, dtype=float)
    for method, curves in curves_by_method.items():
        mean, se = mean_se(np.atleast_2d(curves), axis=0)  # no band for one pair (no standard error)
        if mean.shape != lambdas.shape:
            raise ValueError(f"curve of {method!r} has {mean.shape[0]} points but there are {lambdas.size} λ values")
        n = np.atleast_2d(curves).shape[0]
        c = color(method)
        ax.plot(lambdas, mean, marker="o", ms=3, lw=1.8, color=c, label=f"{method} (n={n})")
        if n > 1:
            ax.fill_between(lambdas, mean - se, mean + se, color=c, alpha=0.2, lw=0)
    ax.set_xlabel(LAMBDA_LABEL)
    ax.set_ylabel(ylabel)
    ax.set_xlim(lambdas.min(), lambdas.max())
    if title:
        ax.set_title(title)
    if legend and curves_by_method:
        ax.legend(frameon=False, fontsize="small")
    return ax


def plot_heatmap(
    ax: plt.Axes,
    matrix: np.ndarray,
    *,
    xlabel: str = "",
    ylabel: str = "",
    title: str | None = None,
    cmap: str = "vlag",
    center: float | None = 0.0,
    cbar_label: str = "",
    **kwargs,
) -> plt.Axes:
    """A heatmap of ``matrix`` (e.g. a correlation matrix) in the book's style."""
    setup()
    sns.heatmap(
        np.asarray(matrix),
        ax=ax,
        cmap=cmap,
        center=center,
        square=matrix.shape[0] == matrix.shape[1],
        xticklabels=False if matrix.shape[1] > 20 else "auto",
        yticklabels=False if matrix.shape[0] > 20 else "auto",
        cbar_kws={"label": cbar_label} if cbar_label else None,
        **kwargs,
    )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def figures_dir() -> Path:
    """Where ``savefig`` writes (``$TXMERGE_FIGURES``, default ``executed/figures``)."""
    return Path(os.environ.get("TXMERGE_FIGURES", "executed/figures"))


def savefig(fig: plt.Figure, name: str) -> Path:
    """Save ``fig`` as ``<figures_dir>/<name>.png`` (for ``{figure}`` in text pages); returns the path."""
    path = figures_dir() / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight")
    return path


def barrier_styler(table, digits: int = 3):
    """A barrier table (``pipeline.barrier_table``) as the chapters show it, narrow enough for the page:
    barrier ± s.e., the linear (Entezari) barrier, the paper's value where given, pairs, whether B kept its function."""
    cols = {"barrier": "barrier", "se": "± s.e.", "barrier_linear": "linear", "paper": "paper", "pairs": "pairs",
            "function_preserving": "keeps B"}
    shown = table[[c for c in cols if c in table]].rename(columns=cols)
    return shown.style.format(precision=digits, na_rep="–")


def wrap_columns(styler, columns, width: str = "14em"):
    """Let the long text of ``columns`` wrap inside ``width`` so that a table fits the page's text column."""
    return styler.set_properties(subset=list(columns), **{"white-space": "normal", "max-width": width,
                                                          "min-width": "6em", "overflow-wrap": "anywhere"})


#: verdict -> (colour, marker) of the forest plot
VERDICT_STYLE: dict[str, tuple[str, str]] = {
    "confirmed": (_CB[2], "o"),
    "reversed": (_CB[3], "s"),
    "no measurable effect": ("#4d4d4d", "D"),
    "undecided": (_CB[1], "^"),
    "undecided (one pair)": ("#999999", "v"),
    "undecided (pairs share seeds)": ("#999999", "X"),
}


def forest_plot(table, *, title: str | None = None, min_effect: float | None = None) -> plt.Figure:
    """One row per comparison of an estimates table (:mod:`txmerge.experiments.estimates`): the relative
    effect with its 90 % interval (positive = the claim's direction), the ±``min_effect`` band, the
    paper's effect (hollow diamond), colour and marker by verdict, and the pairs at the right margin
    (``†``: pairs that share seeds, not independent)."""
    from txmerge.experiments.estimates import check_estimates
    from txmerge.experiments.verdicts import MIN_EFFECT

    setup()
    t = check_estimates(table).reset_index(drop=True)
    band = MIN_EFFECT if min_effect is None else min_effect
    n = len(t)
    fig, ax = plt.subplots(figsize=(7.4, 0.9 + 0.34 * n))
    y = np.arange(n)[::-1]
    ax.axvspan(-band * 100, band * 100, color="#dddddd", alpha=0.6, lw=0, label=f"±{band:.0%}: too small to matter")
    ax.axvline(0, color="#777777", lw=0.8)
    for yi, (_, row) in zip(y, t.iterrows()):
        c, marker = VERDICT_STYLE.get(row["verdict"], ("#999999", "o"))
        if row["pairs"] > 1:
            ax.plot([row["low"] * 100, row["high"] * 100], [yi, yi], color=c, lw=2, solid_capstyle="butt")
        ax.plot(row["estimate"] * 100, yi, marker=marker, color=c, ms=7, ls="none",
                mfc=c if row["independent"] else "white")
        if np.isfinite(row["paper"]):
            ax.plot(row["paper"] * 100, yi, marker="D", ms=6, mfc="none", mec="black", mew=1.2, ls="none")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{r['claim']} · {r['comparison'].replace(' (linear barrier)', ' (lin.)')}" for _, r in t.iterrows()],
                       fontsize="small")
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("effect in the claim's direction (% of the reference scale), 90 % interval")
    right = ax.secondary_yaxis("right")
    right.set_yticks(y)
    right.set_yticklabels([f"{r['pairs']}{'' if r['independent'] else ' †'}" for _, r in t.iterrows()], fontsize="small")
    right.set_ylabel("pairs")
    handles = [plt.Line2D([], [], color=c, marker=m, ls="none", label=v) for v, (c, m) in VERDICT_STYLE.items()
               if v in set(t["verdict"])]
    handles.append(plt.Line2D([], [], marker="D", mfc="none", mec="black", ls="none", label="the paper"))
    handles.append(matplotlib.patches.Patch(color="#dddddd", label=f"±{band:.0%} band"))
    if title:
        ax.set_title(title)
    ax.grid(axis="y", visible=False)
    fig.tight_layout()
    fig.legend(handles=handles, frameon=False, fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(4, len(handles)))
    return fig


def claims_at_a_glance(claims, chapter: str, preset: str, pairs, *, title: str | None = None):
    """A chapter's comparisons at a glance: records their estimates for the results page
    (:func:`txmerge.experiments.estimates.record`), shows and saves the forest plot
    (``<chapter>_forest.png``) and returns the compact table, styled to fit the page.
    ``claims``: {claim id ("C2", or the book's own "LM head"): Claim}."""
    from txmerge.experiments import estimates

    rows = estimates.estimates_of(claims, chapter)
    estimates.record(rows, chapter, preset, pairs)
    fig = forest_plot(rows, title=title)
    savefig(fig, f"{chapter}_forest")
    plt.show()
    return compact_styler(estimates.compact_table(rows))


def compact_styler(table):
    """The compact claims table (:func:`txmerge.experiments.estimates.compact_table`) without its index,
    its comparison column wrapping."""
    styler = wrap_columns(table.style.hide(axis="index"), ["comparison"], width="16em")
    return styler.set_properties(subset=["this build [90 %]", "paper"], **{"white-space": "nowrap"})
