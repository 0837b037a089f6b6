"""Within-head matching: heads matched by a rotation-invariant cost, then the exact maps inside each
head (Tran et al., "Functional Equivalence in Attention") on top of the permutations.

Per attention layer ``l``, with C = Cov(x_A, x_B) [d, d] of a node (rows A's units), A's head j,
B's head k and head width d_h:

1. heads: ρ_jk = ‖C_jk‖_* / √(tr Σ_A,j · tr Σ_B,k) on the context node ``attn.l`` plus the same on
   the pooled query/key node ``qk.l``. ρ = 1 − ½ · the residual of the best orthogonal Procrustes fit
   of the two heads' features, each scaled to unit total variance, so it does not change when either
   head is rotated inside; a linear assignment maximises Σ ρ (``heads='monotonic'`` keeps heads).
2. within heads: the correlation matcher's LSA on the assigned blocks (``match_qk``); it makes a map
   that is a permutation the identity, so permutations stay index permutations.
3. maps, on the permuted blocks M = C_jkᵀ [B's units, A's units] = X_Bᵀ X_A / n: R_j = U Vᵀ
   (M = U Σ Vᵀ) on the pooled queries and keys, the orthogonal R minimising ‖X_B R − X_A‖ (queries
   and keys both move by R, as R⁻ᵀ = R), and S_j the same on the context (the attention-weighted
   values: they move by the same S as the values, so no value node is needed). ``maps='gl'``:
   S_j = Σ_BB⁻¹ M (least squares; statistics collected with ``full=True``), its fit and condition
   number reported. QK stays orthogonal: the pooled node mixes queries and keys, which a
   general map moves differently (R and R⁻ᵀ).

A map within ``SNAP`` of the identity in a head is set to it (float noise of an exact permutation
match; any map keeps B's function), and a map that is the identity in every head is left out. The maps
travel in ``perms`` under the spec's map names (``map.qk.{l}``, ``map.vo.{l}``), which
:func:`txmerge.core.permute.apply_permutations` applies after the permutations. FF and residual groups
are matched by the correlation matcher's ``match_group``, unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

from txmerge.base.errors import TxmergeError
from txmerge.core.features import PairCovariance, PairMoments
from txmerge.core.spec import PermutationSpec, check_residual_map, feature_nodes, sizes_of
from txmerge.methods.matchers.correlation import HeadMatch, _scores, match_group, match_qk, match_units
from txmerge.methods.method import Alignment, MergeMethod, required_nodes

Stats = PairMoments | PairCovariance
MAPS = ("orthogonal", "gl")
SNAP = 1e-4  # max |entry − identity| below which a head's map is the identity
MAX_CONDITION = 1e8  # B's value-feature covariance of a head worse conditioned than this is refused (GL)


@dataclass
class WithinHeadAlignment(Alignment):
    """An :class:`Alignment` whose ``perms`` also hold within-head float maps (``map.qk.{l}``,
    ``map.vo.{l}``: [heads, d_h, d_h]). ``fit[map]`` [heads]: the share of A's (centred) feature
    variance that the mapped B explains, 1 − ‖X_B M − X_A‖² / ‖X_A‖²; ``condition[map]`` [heads]: the
    maps' condition numbers (1 when orthogonal); ``snapped``: maps left out as the identity in every head."""

    fit: dict[str, list[float]] = field(default_factory=dict)
    condition: dict[str, list[float]] = field(default_factory=dict)
    snapped: tuple[str, ...] = ()
    variant: str = "orthogonal"  # "orthogonal" or "gl" (the VO maps by least squares)


def _cov(stats: Stats) -> PairCovariance:
    return stats.covariance() if isinstance(stats, PairMoments) else stats


def procrustes_scores(cov: PairCovariance, n_heads: int) -> np.ndarray:
    """ρ [h, h]: ρ_jk = ‖C_jk‖_* / √(tr Σ_A,j tr Σ_B,k) ∈ [0, 1], invariant to rotations inside heads."""
    d = cov.cross.shape[0]
    if cov.cross.shape != (d, d) or d % n_heads:
        raise TxmergeError(f"a cross-covariance of shape {cov.cross.shape} cannot be split into {n_heads} heads; pass a square [d, d] one.")
    hd = d // n_heads
    blocks = cov.cross.reshape(n_heads, hd, n_heads, hd).transpose(0, 2, 1, 3)
    nuclear = np.linalg.svd(blocks, compute_uv=False).sum(-1)
    var = np.clip(np.nan_to_num(cov.var, nan=0.0), 0.0, None)
    tr_a, tr_b = var[:d].reshape(n_heads, hd).sum(1), var[d:].reshape(n_heads, hd).sum(1)
    denom = np.sqrt(np.outer(tr_a, tr_b))
    return np.divide(nuclear, denom, out=np.zeros_like(nuclear), where=denom > 0)


def orthogonal_procrustes(m: np.ndarray) -> np.ndarray:
    """R = U Vᵀ for m = U Σ Vᵀ ([n, n] = X_Bᵀ X_A): the orthogonal R minimising ‖X_B R − X_A‖."""
    u, _, vt = np.linalg.svd(np.asarray(m, dtype=np.float64))
    return u @ vt


def head_maps(cov: PairCovariance, perm: torch.Tensor, n_heads: int, gl: bool = False,
              where: str = "") -> tuple[np.ndarray, list[float], list[float]]:
    """(maps [h, d_h, d_h], fit [h], condition [h]) of B's heads, permuted by ``perm`` [d], onto A's.

    ``gl=False``: orthogonal Procrustes; ``gl=True``: least squares Σ_BB⁻¹ M (needs ``cov.full``)."""
    d = cov.cross.shape[0]
    hd = d // n_heads
    if gl and cov.full is None:
        raise TxmergeError(f"the GL within-head maps need B's own covariance of {where or 'the node'}; collect the statistics with full=True.")
    p = perm.numpy()
    out, fit, cond = np.zeros((n_heads, hd, hd)), [], []
    for j in range(n_heads):
        rows, cols = np.arange(j * hd, (j + 1) * hd), p[j * hd:(j + 1) * hd]
        m = cov.cross[np.ix_(rows, cols)].T
        tr_a, tr_b = float(cov.var[rows].sum()), float(cov.var[d + cols].sum())
        if gl:
            sbb = cov.full[np.ix_(d + cols, d + cols)]
            if not np.linalg.cond(sbb) < MAX_CONDITION:
                raise TxmergeError(f"B's features of head {j} of {where or 'the node'} are degenerate (singular covariance), "
                                   "so no least-squares map exists; use maps='orthogonal'.")
            r = np.linalg.solve(sbb, m)
            residual = float(np.trace(r.T @ sbb @ r)) - 2 * float(np.trace(r.T @ m)) + tr_a
        else:
            r = orthogonal_procrustes(m)
            residual = tr_a + tr_b - 2 * float(np.trace(r.T @ m))
        if np.abs(r - np.eye(hd)).max() < SNAP:
            r = np.eye(hd)
        out[j] = r
        fit.append(1.0 - residual / tr_a if tr_a > 0 else 0.0)
        cond.append(float(np.linalg.cond(r)))
    return out, fit, cond


def _map_of(spec: PermutationSpec, kind: str, layer: int) -> str:
    for name, hm in spec.maps.items():
        if hm.kind == kind and hm.layer == layer:
            return name
    raise TxmergeError(f"the {spec.info.get('family')} spec has no within-head {kind} map for layer {layer}; "
                       "add a within_head table to its family module.")


def _node(moments: Mapping[str, Stats], node: str) -> PairCovariance:
    if node not in moments:
        raise TxmergeError(f"the within-head matcher needs moments for {node!r}; collect with nodes=matcher.nodes(method, model).")
    return _cov(moments[node])


def within_head_alignment(moments: Mapping[str, Stats], config: Any, method: MergeMethod, *,
                          maps: str = "orthogonal") -> WithinHeadAlignment:
    """Permutations and within-head maps of B for ``method`` from ``{node: PairMoments}`` (the nodes of
    :meth:`WithinHeadMatcher.nodes`). ``config``: model B itself (a spec with its exact keys) or its config."""
    if maps not in MAPS:
        raise TxmergeError(f"within-head maps={maps!r} is not known; use one of {', '.join(map(repr, MAPS))}.")
    if method.attn and method.heads == "ignore":
        raise TxmergeError("the within-head matcher maps inside heads, so it needs head structure; use heads='permute' or 'monotonic', not 'ignore'.")
    spec = method.spec(config)
    perms: dict[str, torch.Tensor] = {}
    matched: dict[str, float] = {}
    ident: dict[str, float] = {}
    attention = {n: g for n, g in spec.groups.items() if g.kind in ("heads", "qk")}
    for name, group in spec.groups.items():  # FF and residual groups: the correlation matcher's
        if name not in attention:
            perm, signed, _ = match_group(group, moments, method.absolute)
            perms[name] = perm
            matched[name], ident[name] = _scores(signed, perm)
    fit: dict[str, list[float]] = {}
    condition: dict[str, list[float]] = {}
    snapped: list[str] = []
    head_matches: dict[int, HeadMatch] = {}
    for name, group in attention.items():
        if group.kind != "heads":
            continue
        partner = next((g for g in attention.values() if g.partner == name), None)
        layer, h = int(group.layer), int(group.heads)
        ctx, qk = _node(moments, group.nodes[0]), _node(moments, f"qk.{layer}")
        scores = procrustes_scores(ctx, h) + procrustes_scores(qk, h)
        assignment = match_units(scores) if method.heads == "permute" else torch.arange(h)
        perm = qk_perm = _within(ctx, assignment, h, method.absolute, name, perms, matched, ident)
        if partner is not None:  # separate_qk: its own within-head LSA under the same head mapping
            qk_perm = _within(qk, assignment, h, method.absolute, partner.name, perms, matched, ident)
        hd = int(group.head_dim)
        head_matches[layer] = HeadMatch(perm, assignment, scores, [perm[j * hd:(j + 1) * hd] - int(assignment[j]) * hd
                                                                   for j in range(h)], method.heads)
        for kind, cov, p, gl in (("qk", qk, qk_perm, False), ("vo", ctx, perm, maps == "gl")):
            map_name = _map_of(spec, kind, layer)
            value, fit[map_name], condition[map_name] = head_maps(cov, p, h, gl, where=f"layer {layer}")
            if np.array_equal(value, np.broadcast_to(np.eye(value.shape[-1]), value.shape)):
                snapped.append(map_name)
            else:
                perms[map_name] = torch.from_numpy(value)
    return WithinHeadAlignment(perms, spec, matched, ident, head_matches, spec.function_preserving, method,
                               fit, condition, tuple(snapped), maps)


def _within(cov: PairCovariance, assignment: torch.Tensor, h: int, absolute: bool, name: str,
            perms: dict[str, torch.Tensor], matched: dict[str, float], ident: dict[str, float]) -> torch.Tensor:
    """The within-head LSA of group ``name`` on the assigned blocks; records it and its correlations."""
    signed = cov.correlation(False)
    perm = match_qk(np.abs(signed) if absolute else signed, assignment, h)
    perms[name] = perm
    matched[name], ident[name] = _scores(signed, perm)
    return perm


class WithinHeadMatcher:
    """Activation matching with exact within-head maps: heads by a rotation-invariant Procrustes
    correlation, then per head an orthogonal QK map R and VO map S (``maps='gl'``: S by least
    squares). ``residual_map``: ``permutation`` (the residual strategies of the method) or
    ``orthogonal``, which is refused with the family's reason (see :func:`check_residual_map`)."""

    name = "within-head"
    needs_statistics = True
    description = "activation statistics: heads by a rotation-invariant Procrustes cost, exact orthogonal QK and VO maps inside heads"

    def __init__(self, maps: str = "orthogonal", residual_map: str = "permutation") -> None:
        if maps not in MAPS:
            raise TxmergeError(f"within-head maps={maps!r} is not known; use one of {', '.join(map(repr, MAPS))}.")
        self.maps, self.residual_map = maps, residual_map

    def nodes(self, method: MergeMethod, model: Any) -> list[str]:
        """The method's nodes plus the pooled query/key node ``qk.{l}`` of every attention layer."""
        layers = sorted({g.layer for g in method.spec(model).groups.values() if g.kind == "heads" and g.heads})
        wanted = set(required_nodes(method, model)) | {f"qk.{layer}" for layer in layers}
        return [n for n in feature_nodes(sizes_of(model)[1], qk=True) if n in wanted]

    def match(self, method: MergeMethod, model_a: Any, model_b: Any, statistics: Mapping[str, Stats] | None) -> Alignment:
        check_residual_map(model_b, self.residual_map)
        if statistics is None:
            raise TxmergeError("the within-head matcher needs the feature statistics of the pair; pass statistics or batches.")
        return within_head_alignment(statistics, model_b, method, maps=self.maps)


MATCHER = WithinHeadMatcher()

__all__ = ["MATCHER", "WithinHeadAlignment", "WithinHeadMatcher", "head_maps", "orthogonal_procrustes",
           "procrustes_scores", "within_head_alignment"]
