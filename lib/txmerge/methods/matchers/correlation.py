"""The paper's matcher: correlations of activations → permutations (linear assignment, two-stage head
matching, the residual strategies), group by group of the method's spec.

Every matcher returns a permutation ``perm`` (LongTensor) in the CONTRIBUTING.md convention: rows of
the correlation are A's units, columns B's, and A's unit ``i`` is matched to B's unit ``perm[i]``
(scipy's ``col_ind``), so permuting B by ``perm`` puts B's matched unit at position ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from txmerge.base.errors import TxmergeError
from txmerge.core.features import PairCovariance, PairMoments, average_moments
from txmerge.core.spec import PermGroup, residual_strategy_nodes
from txmerge.methods.method import HEAD_MODES, RESIDUAL_STRATEGIES, Alignment, MergeMethod, required_nodes  # noqa: F401

Stats = PairMoments | PairCovariance


# ------------------------------------------------------------------------------- primitives
def match_units(corr: np.ndarray) -> torch.Tensor:
    """LSA maximising Σ corr[i, perm[i]] over a square [d, d] correlation; returns perm [d]."""
    corr = np.asarray(corr, dtype=np.float64)
    if corr.ndim != 2 or corr.shape[0] != corr.shape[1]:
        raise TxmergeError(f"match_units needs a square correlation matrix, got shape {corr.shape}; pass the A×B cross block.")
    if not np.isfinite(corr).all():
        raise TxmergeError("the correlation matrix holds NaN or inf; compute it with PairMoments.correlation() (which guards them).")
    rows, cols = linear_sum_assignment(corr, maximize=True)
    perm = np.empty(corr.shape[0], dtype=np.int64)
    perm[rows] = cols
    return torch.from_numpy(perm)


@dataclass
class HeadMatch:
    """Result of attention matching for one layer.

    ``perm`` [d]; ``head_assignment`` [h]: A-head j ↔ B-head ``head_assignment[j]`` (None for
    ``ignore``); ``head_scores`` [h, h]: summed matched correlation of the best within-head LSA of
    every (A-head, B-head) block; ``within`` [h][head_dim]: the chosen within-head perms (None for ``ignore``).
    """

    perm: torch.Tensor
    head_assignment: torch.Tensor | None
    head_scores: np.ndarray
    within: list[torch.Tensor] | None
    mode: str = "permute"


def _head_blocks(corr: np.ndarray, n_heads: int) -> tuple[np.ndarray, list[list[torch.Tensor]], int]:
    d = corr.shape[0]
    if corr.shape != (d, d) or d % n_heads:
        raise TxmergeError(f"attention correlation of shape {corr.shape} cannot be split into {n_heads} heads; pass a square [d, d] matrix with d divisible by n_heads.")
    hd = d // n_heads
    scores = np.zeros((n_heads, n_heads))
    inner: list[list[torch.Tensor]] = []
    for j in range(n_heads):
        row = []
        for k in range(n_heads):
            block = corr[j * hd:(j + 1) * hd, k * hd:(k + 1) * hd]
            p = match_units(block)
            scores[j, k] = block[np.arange(hd), p.numpy()].sum()
            row.append(p)
        inner.append(row)
    return scores, inner, hd


def match_heads(corr: np.ndarray, n_heads: int, mode: Literal["permute", "monotonic", "ignore"] = "permute") -> HeadMatch:
    """Attention matching on the context correlation [d, d] (heads = ``n_heads`` blocks of d/h).

    - ``permute`` (Head-Perm, Algorithm 1 as in the official code): a within-head LSA for ALL h×h
      (A-head, B-head) pairs (the paper's printed loop bounds are a typo, paper-spec §5 item 4), an
      outer LSA on the h×h scores, then the chosen within-head perms concatenated.
    - ``monotonic``: identity head assignment, within-head LSA on the diagonal blocks.
    - ``ignore``: one LSA over all d units; units can move across heads, so the result is NOT
      function-preserving (an ablation, Table 1 "Ignore-Heads").
    """
    if mode not in HEAD_MODES:
        raise TxmergeError(f"heads mode {mode!r} is not known; use one of {', '.join(map(repr, HEAD_MODES))}.")
    corr = np.asarray(corr, dtype=np.float64)
    scores, inner, hd = _head_blocks(corr, n_heads)
    if mode == "ignore":
        return HeadMatch(match_units(corr), None, scores, None, mode)
    assignment = match_units(scores) if mode == "permute" else torch.arange(n_heads)
    within = [inner[j][int(assignment[j])] for j in range(n_heads)]
    perm = torch.cat([int(assignment[j]) * hd + within[j] for j in range(n_heads)])
    return HeadMatch(perm, assignment, scores, within, mode)


def match_qk(corr_qk: np.ndarray, head_assignment: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Separate Q/K permutation: keep the head mapping found on the context features and redo only the
    within-head LSAs on the pooled query/key correlation [d, d]."""
    corr_qk = np.asarray(corr_qk, dtype=np.float64)
    d = corr_qk.shape[0]
    if corr_qk.shape != (d, d) or d % n_heads:
        raise TxmergeError(f"Q/K correlation of shape {corr_qk.shape} cannot be split into {n_heads} heads; pass a square [d, d] matrix.")
    hd = d // n_heads
    parts = []
    for j in range(n_heads):
        k = int(head_assignment[j])
        parts.append(k * hd + match_units(corr_qk[j * hd:(j + 1) * hd, k * hd:(k + 1) * hd]))
    return torch.cat(parts)


def residual_perms(
    moments_by_node: Mapping[str, Stats], strategy: str, n_layers: int | None = None, absolute: bool = False
) -> dict[str, torch.Tensor]:
    """Residual permutations for a strategy (paper-spec §2.10).

    ``identity`` -> {}; ``first`` -> {"residual"} from ``res.emb``; ``last`` -> from ``res.{L-1}.ff``;
    ``all`` -> one LSA on the correlation of the averaged covariances of all 2L+1 residual nodes;
    ``separate`` -> one LSA per node, groups ``res.emb``/``res.{l}.attn``/``res.{l}.ff`` (not function-preserving).
    ``n_layers`` defaults to the deepest ``res.{l}.*`` node present.
    """
    if strategy not in RESIDUAL_STRATEGIES:
        raise TxmergeError(f"residual strategy {strategy!r} is not known; use one of {', '.join(map(repr, RESIDUAL_STRATEGIES))}.")
    if strategy == "identity":
        return {}
    if n_layers is None:
        layers = [int(n.split(".")[1]) for n in moments_by_node if n.startswith("res.") and n != "res.emb"]
        n_layers = max(layers) + 1 if layers else 1
    nodes = residual_strategy_nodes(strategy, n_layers)
    groups = [PermGroup(n, 0, "residual", (n,)) for n in nodes] if strategy == "separate" else [PermGroup("residual", 0, "residual", nodes)]
    return {g.name: match_group(g, moments_by_node, absolute)[0] for g in groups}


def _node_stats(group: PermGroup, moments: Mapping[str, Stats]) -> Stats:
    """The statistics a group is matched on: its node's, or the average covariance of its nodes."""
    missing = [n for n in group.nodes if n not in moments]
    if missing:
        raise TxmergeError(f"group {group.name!r} needs moments for {', '.join(missing[:4])}"
                           f"{' ...' if len(missing) > 4 else ''}; collect with nodes=required_nodes(method, model).")
    return moments[group.nodes[0]] if len(group.nodes) == 1 else average_moments([moments[n] for n in group.nodes])


def match_group(group: PermGroup, moments: Mapping[str, Stats], absolute: bool = False,
                head_mode: str = "permute", partners: Mapping[str, HeadMatch] | None = None) -> tuple[torch.Tensor, np.ndarray, HeadMatch | None]:
    """(perm, signed correlation it was matched on, HeadMatch or None) for one group of a spec, by its kind."""
    signed = _node_stats(group, moments).correlation(False)
    used = np.abs(signed) if absolute else signed
    if group.kind == "heads":  # no head structure in the group: the Ignore-Heads ablation
        hm = match_heads(used, group.heads, head_mode) if group.heads else match_heads(used, 1, "ignore")
        return hm.perm, signed, hm
    if group.kind == "qk":
        partner = (partners or {}).get(group.partner)
        if partner is None or partner.head_assignment is None:
            raise TxmergeError(f"group {group.name!r} reuses the head mapping of {group.partner!r}; match that group first.")
        return match_qk(used, partner.head_assignment, int(group.heads)), signed, None
    return match_units(used), signed, None


def _scores(corr: np.ndarray, perm: torch.Tensor) -> tuple[float, float]:
    idx = np.arange(corr.shape[0])
    return float(corr[idx, perm.numpy()].mean()), float(np.diag(corr).mean())


def matched_correlation(alignment: Alignment, moments: Mapping[str, Stats]) -> tuple[dict[str, float], dict[str, float]]:
    """({group: mean matched correlation}, {group: mean diagonal correlation}) of ``alignment``'s
    permutations on other ``moments``, e.g. features of text the matching never saw."""
    matched, ident = {}, {}
    for name, group in alignment.spec.groups.items():
        matched[name], ident[name] = _scores(_node_stats(group, moments).correlation(False), alignment.perms[name])
    return matched, ident


def compute_alignment(moments: Mapping[str, Stats], config: Any, method: MergeMethod, *, prefix: str | None = None) -> Alignment:
    """Permutations of B for ``method`` from ``{node: PairMoments}`` (see :func:`required_nodes`): every
    group of the method's spec is matched on its own nodes, by its kind.

    ``config``: the model itself (a spec with its exact keys and prefix) or its config.
    """
    spec = method.spec(config, prefix=prefix)
    missing = [n for n in spec.nodes() if n not in moments]
    if missing:
        raise TxmergeError(f"moments lack node(s) {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}; "
                           "collect with nodes=required_nodes(method, model).")
    perms: dict[str, torch.Tensor] = {}
    matched: dict[str, float] = {}
    ident: dict[str, float] = {}
    heads: dict[str, HeadMatch] = {}
    for name, group in spec.groups.items():
        perm, signed, hm = match_group(group, moments, method.absolute, method.heads, heads)
        perms[name] = perm
        matched[name], ident[name] = _scores(signed, perm)
        if hm is not None:
            heads[name] = hm
    head_matches = {spec.groups[g].layer: hm for g, hm in heads.items()}
    return Alignment(perms, spec, matched, ident, head_matches, spec.function_preserving, method)


class CorrelationMatcher:
    """Activation matching (Verma & Elbayad; the official code): needs the pair's feature statistics."""

    name = "correlation"
    needs_statistics = True
    description = "activation correlations on a text, matched by linear assignment (the paper's method)"

    def nodes(self, method: MergeMethod, model: Any) -> list[str]:
        return required_nodes(method, model)

    def match(self, method: MergeMethod, model_a: Any, model_b: Any, statistics: Mapping[str, Stats] | None) -> Alignment:
        if statistics is None:
            raise TxmergeError("the correlation matcher needs the feature statistics of the pair; pass statistics or batches.")
        return compute_alignment(statistics, model_b, method)


MATCHER = CorrelationMatcher()
