"""Weight matching (Ainsworth et al., "Git Re-Basin", ICLR 2023): permutations of B from the weights
alone, by coordinate descent over the groups of the method's spec; no data, no family-specific code.

The objective is Σ_k ⟨W_A[k], P(W_B[k])⟩ over every parameter ``k`` that some group permutes. With
all other groups fixed it is linear in one group's permutation: the cost matrix [n, n] of group ``g``
is Σ over every (parameter, axis, segment) that ``g`` permutes of  A_rows · B'_rowsᵀ, where the rows
are the units along that axis (everything else flattened) and B' is B with every OTHER axis
permuted by the current maps. Each step solves it exactly, so the objective never decreases:

- ``units`` / ``residual`` / ``separate``-residual groups: one linear assignment (maximise);
- ``heads`` groups with head structure: Head-Perm ``permute`` = the best within-head assignment for
  every (A-head, B-head) block, then an assignment of heads on those h×h block scores (the exact
  optimum under the block constraint); ``monotonic`` = heads stay, within-head assignments only. A
  ``qk`` group (``separate_qk``) is solved jointly with its partner: the head scores are summed, so
  both share one head mapping. Without head structure (Ignore-Heads) attention is plain units.
- An axis permuted by several maps in turn (the ``official`` decoder ablation permutes it twice) is
  left out of the cost (it is not linear in one map); it is still permuted when B is mapped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch
from tqdm.auto import tqdm

from txmerge.base.errors import TxmergeError
from txmerge.core.spec import Fused, PermGroup, PermutationSpec, _entry_groups
from txmerge.methods.matchers.correlation import HeadMatch, match_units
from txmerge.methods.method import Alignment, MergeMethod

Slot = tuple[str, int, int, int]  # (state-dict key, axis, start, stop) of the units one group permutes


@dataclass
class WeightAlignment(Alignment):
    """An :class:`Alignment` with the coordinate descent's record: ``objective[s]`` = Σ⟨W_A, P(W_B)⟩
    after ``s`` sweeps (``objective[0]``: the identity), ``improved[s-1]`` = groups changed in sweep
    ``s``, ``converged``: the last sweep changed nothing. ``matched_corr`` / ``identity_corr`` hold the
    mean cosine of matched / same-index unit weight vectors (every axis the group permutes)."""

    objective: list[float] = field(default_factory=list)
    improved: list[tuple[str, ...]] = field(default_factory=list)
    converged: bool = False


def _slots(spec: PermutationSpec, sd: Mapping[str, torch.Tensor]) -> dict[str, list[Slot]]:
    """Every (key, axis, start, stop) that each group permutes, read from the resolved spec."""
    out: dict[str, list[Slot]] = {g: [] for g in spec.groups}
    for key, entries in spec.axes.items():
        if key not in sd or not sd[key].is_floating_point():
            continue
        for axis, entry in enumerate(entries):
            if isinstance(entry, Fused):
                seg = sd[key].shape[axis] // len(entry.segments)
                for i, g in enumerate(entry.segments):
                    if g in out:
                        out[g].append((key, axis, i * seg, (i + 1) * seg))
            elif entry is not None:
                groups = _entry_groups(entry)
                if len((entry,) if isinstance(entry, str) else entry) == 1 and groups[0] in out:  # one map, once
                    out[groups[0]].append((key, axis, 0, sd[key].shape[axis]))
    return out


def _axis_index(entry: Any, perms: Mapping[str, torch.Tensor], size: int) -> torch.Tensor | None:
    """The one index vector [size] that permuting by ``perms`` applies to an axis (None: untouched)."""
    if isinstance(entry, Fused):
        if not any(g in perms for g in entry.segments if g):
            return None
        seg = size // len(entry.segments)
        return torch.cat([i * seg + (perms[g] if g in perms else torch.arange(seg)) for i, g in enumerate(entry.segments)])
    index = None
    for g in (() if entry is None else (entry,) if isinstance(entry, str) else entry):
        if g in perms:
            index = perms[g] if index is None else index[perms[g]]  # select by p1 then p2 = by p1[p2]
    return index


def _permuted(value: torch.Tensor, entries: tuple[Any, ...], perms: Mapping[str, torch.Tensor], skip: int | None = None) -> torch.Tensor:
    """``value`` with every axis but ``skip`` index-selected by the current ``perms``."""
    for axis, entry in enumerate(entries):
        index = None if axis == skip else _axis_index(entry, perms, value.shape[axis])
        if index is not None:
            value = value.index_select(axis, index.to(value.device))
    return value


def _rows(value: torch.Tensor, axis: int, start: int, stop: int) -> torch.Tensor:
    """The units [n, rest] of ``value`` along ``axis`` (segment start:stop), in float64."""
    return value.movedim(axis, 0)[start:stop].reshape(stop - start, -1).double()


def _cost(slots: list[Slot], size: int, sd_a: Mapping[str, torch.Tensor], sd_b: Mapping[str, torch.Tensor],
          spec: PermutationSpec, perms: Mapping[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cost [n, n] = Σ A_rows·B'_rowsᵀ, |A rows| [n], |B' rows| [n]) of one group given the other maps."""
    cost = torch.zeros(size, size, dtype=torch.float64)
    norm_a, norm_b = torch.zeros(size, dtype=torch.float64), torch.zeros(size, dtype=torch.float64)
    for key, axis, start, stop in slots:
        a = _rows(sd_a[key], axis, start, stop)
        b = _rows(_permuted(sd_b[key], spec.axes[key], perms, skip=axis), axis, start, stop)
        cost += (a @ b.T).cpu()
        norm_a += (a * a).sum(1).cpu()
        norm_b += (b * b).sum(1).cpu()
    return cost.numpy(), norm_a.sqrt().numpy(), norm_b.sqrt().numpy()


def _value(costs: list[np.ndarray], perms: list[torch.Tensor]) -> float:
    return float(sum(c[np.arange(len(p)), p.numpy()].sum() for c, p in zip(costs, perms)))


def _solve_heads(costs: list[np.ndarray], group: PermGroup, mode: str) -> tuple[list[torch.Tensor], HeadMatch]:
    """Block-constrained assignment of a head group and its Q/K partners, jointly (one head mapping)."""
    h, hd = int(group.heads), int(group.head_dim)
    scores = np.zeros((h, h))
    inner: list[list[list[torch.Tensor]]] = []  # [group][A-head][B-head] within-head perm
    for cost in costs:
        table = []
        for j in range(h):
            row = []
            for k in range(h):
                block = cost[j * hd:(j + 1) * hd, k * hd:(k + 1) * hd]
                p = match_units(block)
                scores[j, k] += block[np.arange(hd), p.numpy()].sum()
                row.append(p)
            table.append(row)
        inner.append(table)
    assignment = match_units(scores) if mode == "permute" else torch.arange(h)
    perms = [torch.cat([int(assignment[j]) * hd + table[j][int(assignment[j])] for j in range(h)]) for table in inner]
    within = [inner[0][j][int(assignment[j])] for j in range(h)]
    return perms, HeadMatch(perms[0], assignment, scores, within, mode)


def _objective(sd_a: Mapping[str, torch.Tensor], sd_b: Mapping[str, torch.Tensor], spec: PermutationSpec,
               keys: list[str], perms: Mapping[str, torch.Tensor]) -> float:
    return float(sum((sd_a[k].double() * _permuted(sd_b[k], spec.axes[k], perms).double()).sum() for k in keys))


def _cosines(cost: np.ndarray, norm_a: np.ndarray, norm_b: np.ndarray, perm: torch.Tensor) -> float:
    p = perm.numpy()
    denom = norm_a * norm_b[p]
    cos = np.divide(cost[np.arange(len(p)), p], denom, out=np.zeros(len(p)), where=denom > 0)
    return float(cos.mean()) if len(p) else 0.0


def weight_matching(model_a: torch.nn.Module, model_b: torch.nn.Module, method: MergeMethod, *, seed: int = 0,
                    max_iter: int = 100, progress: bool = True) -> WeightAlignment:
    """Permutations of B for ``method`` maximising Σ⟨W_A, P(W_B)⟩, by coordinate descent over the spec's
    groups in a random order per sweep (``seed``), from the identity, until a sweep changes nothing or
    ``max_iter`` sweeps."""
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise TxmergeError(f"weight matching needs max_iter to be a positive whole number of sweeps, got {max_iter!r}.")
    spec = method.spec(model_b)
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    for key, value in sd_b.items():
        other = sd_a.get(key)
        if other is None or other.shape != value.shape:
            got = "no such parameter" if other is None else f"shape {tuple(other.shape)}"
            raise TxmergeError(f"model A has {got} where model B's {key!r} has shape {tuple(value.shape)}; "
                               "align two models of the same architecture and size.")
    slots = _slots(spec, sd_b)
    keys = [k for k in spec.axes if sd_b[k].is_floating_point() and spec.groups_of(k)]
    partners: dict[str, list[str]] = {}
    for name, g in spec.groups.items():
        if g.partner:
            partners.setdefault(g.partner, []).append(name)
    coords = [n for n, g in spec.groups.items() if not g.partner]  # a qk group moves with its partner
    perms: dict[str, torch.Tensor] = {n: torch.arange(g.size) for n, g in spec.groups.items()}
    heads: dict[str, HeadMatch] = {}
    rng = np.random.default_rng(seed)
    objective, improved, converged = [_objective(sd_a, sd_b, spec, keys, perms)], [], False
    bar = tqdm(range(max_iter), desc="weight matching", disable=None if progress else True)
    for _ in bar:
        changed = []
        for i in rng.permutation(len(coords)):
            name = coords[int(i)]
            group, members = spec.groups[name], [name] + partners.get(name, [])
            costs = [_cost(slots[m], spec.groups[m].size, sd_a, sd_b, spec, perms)[0] for m in members]
            if group.kind == "heads" and group.heads:
                new, heads[name] = _solve_heads(costs, group, method.heads)
            else:
                new = [match_units(costs[0])]
            old = [perms[m] for m in members]
            gain = _value(costs, new) - _value(costs, old)
            if gain > 1e-12 * max(1.0, abs(_value(costs, old))):
                perms.update(zip(members, new))
                changed.append(name)
        objective.append(_objective(sd_a, sd_b, spec, keys, perms))
        improved.append(tuple(changed))
        bar.set_postfix(objective=f"{objective[-1]:.6g}", changed=len(changed))
        if not changed:
            converged = True
            break
    bar.close()
    identity = {n: torch.arange(g.size) for n, g in spec.groups.items()}
    matched, ident = {}, {}
    for name, g in spec.groups.items():
        matched[name] = _cosines(*_cost(slots[name], g.size, sd_a, sd_b, spec, perms), perms[name])
        ident[name] = _cosines(*_cost(slots[name], g.size, sd_a, sd_b, spec, {}), identity[name])
    head_matches = {spec.groups[g].layer: hm for g, hm in heads.items()}
    return WeightAlignment(perms, spec, matched, ident, head_matches, spec.function_preserving, method,
                           objective, improved, converged)


class WeightMatcher:
    """Git Re-Basin weight matching: reads only the two models' weights (``seed``, ``max_iter`` sweeps)."""

    name = "weight"
    needs_statistics = False
    description = "weights alone, coordinate descent of linear assignments over the spec's groups (Git Re-Basin)"

    def __init__(self, seed: int = 0, max_iter: int = 100, progress: bool = True) -> None:
        self.seed, self.max_iter, self.progress = seed, max_iter, progress

    def nodes(self, method: MergeMethod, model: Any) -> list[str]:
        return []

    def match(self, method: MergeMethod, model_a: Any, model_b: Any, statistics: Mapping[str, Any] | None) -> Alignment:
        return weight_matching(model_a, model_b, method, seed=self.seed, max_iter=self.max_iter, progress=self.progress)


MATCHER = WeightMatcher()
