"""Apply a :class:`~txmerge.core.spec.PermutationSpec` to a state dict or a model, and verify the result.

Convention (CONTRIBUTING.md): ``perms[group]`` is a LongTensor ``perm`` of length ``size``; after
permuting, unit ``i`` is the old unit ``perm[i]`` (``W_new = W.index_select(axis, perm)``).

Besides the groups, ``perms`` may hold the spec's within-head float maps (``spec.maps``:
``map.qk.{l}`` / ``map.vo.{l}``, tensors [heads, d_h, d_h], one invertible matrix per head at A's head
positions). They act after the permutations: an axis of a role's features is contracted with a
per-head matrix N on its first index (``new[.., j, ..] = Σ_i old[.., i, ..] N[i, j]``), N = R for
queries, R⁻ᵀ for keys, S for values and S⁻ᵀ for the output projection's head inputs. The rule does not
depend on the layout (``nn.Linear`` [out, in] or ``Conv1D`` [in, out]), so q·k and the heads' output
sums are unchanged.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from txmerge.base.errors import TxmergeError
from txmerge.core.headmaps import HeadMap
from txmerge.core.models import model_inputs
from txmerge.core.spec import Fused, PermutationSpec, _entry_groups

Perms = dict[str, torch.Tensor]
MAX_CONDITION = 1e8  # a within-head map worse conditioned than this is refused as not invertible


def _check_map(name: str, value: torch.Tensor, hm: HeadMap) -> torch.Tensor:
    """Validate one within-head map [heads, d_h, d_h]: float, finite and invertible."""
    value = torch.as_tensor(value)
    shape = (hm.heads, hm.head_dim, hm.head_dim)
    if not value.is_floating_point() or tuple(value.shape) != shape:
        raise TxmergeError(f"within-head map {name!r} must be a float tensor of shape {shape} (one d_h×d_h matrix per head), "
                           f"got {value.dtype} of shape {tuple(value.shape)}; build it for this model's heads.")
    if not bool(torch.isfinite(value).all()):
        raise TxmergeError(f"within-head map {name!r} holds NaN or inf; pass finite invertible matrices.")
    cond = torch.linalg.cond(value.detach().double().cpu())
    worst = int(torch.nan_to_num(cond, nan=float("inf")).argmax())
    if not float(cond[worst]) < MAX_CONDITION:
        raise TxmergeError(f"within-head map {name!r} is not invertible (condition number {float(cond[worst]):.1e} in head {worst}); "
                           "pass invertible maps, for example orthogonal ones.")
    return value


def check_permutations(perms: Mapping[str, torch.Tensor], spec: PermutationSpec) -> Perms:
    """Validate ``perms`` against ``spec`` (known group, right length, a true permutation); return LongTensors."""
    out: Perms = {}
    for name, perm in perms.items():
        if name in spec.maps:
            out[name] = _check_map(name, perm, spec.maps[name])
            continue
        if name not in spec.groups:
            raise TxmergeError(
                f"permutation group {name!r} is not in the spec (groups: {', '.join(sorted(spec.groups)) or 'none'}; "
                f"maps: {', '.join(spec.maps) or 'none'}); build the spec with the same method/include as the permutations."
            )
        perm = torch.as_tensor(perm).long().reshape(-1)
        size = spec.groups[name].size
        if perm.numel() != size:
            raise TxmergeError(f"permutation {name!r} has length {perm.numel()} but the group has {size} units; pass one of length {size}.")
        if not torch.equal(torch.sort(perm.cpu()).values, torch.arange(size)):
            raise TxmergeError(f"permutation {name!r} is not a permutation of 0..{size - 1}; pass each index exactly once.")
        out[name] = perm
    return out


def permute_state_dict(
    state_dict: Mapping[str, torch.Tensor], perms: Mapping[str, torch.Tensor], spec: PermutationSpec
) -> dict[str, torch.Tensor]:
    """A new state dict with every spec'd axis index-selected by its group (missing groups = identity),
    then every within-head map in ``perms`` applied (see the module docstring).

    Keys of ``state_dict`` absent from ``spec`` raise TxmergeError; untouched tensors are shared, not copied.
    """
    perms = check_permutations(perms, spec)
    factors = _map_factors(perms, spec)
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key not in spec.axes:
            raise TxmergeError(f"state-dict key {key!r} is not in the permutation spec; build the spec from this model (model_spec(model)).")
        entries = spec.axes[key]
        if len(entries) != value.dim():
            raise TxmergeError(f"spec lists {len(entries)} axes for {key!r} but the tensor has shape {tuple(value.shape)}; rebuild the spec from this model's config.")
        for axis, entry in enumerate(entries):
            for perm in _axis_perms(entry, perms, value.shape[axis], key, axis):
                value = value.index_select(axis, perm.to(value.device))
        if key in spec.map_axes and value.is_floating_point():
            value = _apply_maps(value, spec.map_axes[key], factors, spec, key)
        out[key] = value
    return out


def _map_factors(perms: Perms, spec: PermutationSpec) -> dict[tuple[str, str], torch.Tensor]:
    """(map, role) -> the per-head matrix N [heads, d_h, d_h] (float64) an axis of that role is contracted with."""
    out = {}
    for name in (n for n in perms if n in spec.maps):
        m = perms[name].detach().double().cpu()
        inv_t = torch.linalg.inv(m).transpose(-1, -2)
        for role in ("q", "v"):
            out[(name, role)] = m
        for role in ("k", "o"):
            out[(name, role)] = inv_t
    return out


def _apply_maps(value: torch.Tensor, entries: tuple, factors: Mapping[tuple[str, str], torch.Tensor],
                spec: PermutationSpec, key: str) -> torch.Tensor:
    """``value`` with each mapped axis (or segment of a fused axis) contracted per head with its N."""
    for axis, entry in enumerate(entries):
        if entry is None or not any(s in factors for s in entry if s):
            continue
        parts = list(value.split(value.shape[axis] // len(entry), dim=axis))
        for i, slot in enumerate(entry):
            if slot is None or slot not in factors:
                continue
            n = factors[slot]
            if parts[i].shape[axis] != n.shape[0] * n.shape[1]:
                raise TxmergeError(f"axis {axis} of {key!r} has {parts[i].shape[axis]} units per segment but map {slot[0]!r} "
                                   f"covers {n.shape[0]}×{n.shape[1]}; rebuild the spec from this model's config.")
            moved = parts[i].movedim(axis, 0)
            blocks = moved.reshape(n.shape[0], n.shape[1], -1).double()
            mapped = torch.einsum("hir,hij->hjr", blocks, n.to(blocks.device))
            parts[i] = mapped.reshape(moved.shape).to(value.dtype).movedim(0, axis)
        value = torch.cat(parts, dim=axis)
    return value


def _axis_perms(entry, perms: Perms, size: int, key: str, axis: int) -> list[torch.Tensor]:
    """The permutations to apply to one axis, in order (a fused axis gives one, built from its segments)."""
    if isinstance(entry, Fused):
        if not any(g in perms for g in entry.segments if g):
            return []
        seg = size // len(entry.segments)
        return [torch.cat([i * seg + (perms[g] if g in perms else torch.arange(seg)) for i, g in enumerate(entry.segments)])]
    out = []
    for group in _entry_groups(entry):
        if group in perms:
            if size != perms[group].numel():
                raise TxmergeError(f"axis {axis} of {key!r} has {size} units but group {group!r} has {perms[group].numel()}; "
                                   "rebuild the spec from this model's config.")
            out.append(perms[group])
    return out


def _tie_groups(model: nn.Module) -> list[list[str]]:
    """Names that share one Parameter object (e.g. MLM decoder weight and word embeddings)."""
    by_id: dict[int, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        by_id.setdefault(id(param), []).append(name)
    return [names for names in by_id.values() if len(names) > 1]


def _set_parameter(model: nn.Module, name: str, param: nn.Parameter) -> None:
    module_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(module_name), attr, param)


def apply_permutations(model: nn.Module, perms: Mapping[str, torch.Tensor], spec: PermutationSpec) -> nn.Module:
    """A permuted deep copy of ``model`` (the original is untouched).

    Tied parameters stay tied when the spec permutes every tied name alike (the correct tied decoder);
    otherwise (``tied_decoder="official"``) each name gets its own Parameter and
    ``config.tie_word_embeddings`` is set to False so the untied decoder survives save/load.
    """
    new_sd = permute_state_dict(model.state_dict(), perms, spec)
    permuted = copy.deepcopy(model)
    ties = _tie_groups(permuted)
    perms = check_permutations(perms, spec)
    if any(len({tuple(spec.axes.get(n, ())) for n in names}) > 1 and any(spec.groups_of(n) & set(perms) for n in names) for names in ties):
        # Untie everything the config ties (weight and bias), so save_pretrained/from_pretrained keep both.
        for names in ties:
            for name in names[1:]:
                old = permuted.get_parameter(name)
                _set_parameter(permuted, name, nn.Parameter(old.detach().clone(), requires_grad=old.requires_grad))
        if hasattr(permuted, "config"):
            permuted.config.tie_word_embeddings = False
        if isinstance(getattr(permuted, "all_tied_weights_keys", None), dict):
            permuted.all_tied_weights_keys = {}
    with torch.no_grad():
        permuted.load_state_dict(new_sd, strict=True)
    return permuted


def _index_only(perms: Mapping[str, torch.Tensor], what: str) -> None:
    for g, p in perms.items():
        if torch.as_tensor(p).is_floating_point():
            raise TxmergeError(f"{what} takes index permutations only, but {g!r} is a within-head float map; "
                               "invert or compose the maps of an alignment by mapping the models instead.")


def invert_permutations(perms: Mapping[str, torch.Tensor]) -> Perms:
    """``inv[g] = argsort(perms[g])``, so permuting by ``perms`` then by ``inv`` is the identity."""
    _index_only(perms, "invert_permutations")
    return {g: torch.argsort(torch.as_tensor(p).long()) for g, p in perms.items()}


def compose_permutations(first: Mapping[str, torch.Tensor], then: Mapping[str, torch.Tensor]) -> Perms:
    """The single permutation equal to applying ``first`` then ``then`` (``first[then]`` per group)."""
    _index_only({**first, **then}, "compose_permutations")
    out = {g: torch.as_tensor(p).long() for g, p in first.items()}
    for g, p in then.items():
        p = torch.as_tensor(p).long()
        out[g] = out[g][p] if g in out else p
    return out


def random_permutations(
    spec: PermutationSpec,
    generator: torch.Generator,
    groups: Iterable[str] | None = None,
    preserve_heads: bool = True,
    permute_heads: bool = True,
) -> Perms:
    """Random planted permutations for tests.

    Head-structured groups (``heads`` set): with ``preserve_heads`` heads move as blocks (order random
    if ``permute_heads``, else identity = monotonic) and units are shuffled within each head;
    a ``qk`` group reuses the head order of its partner (required for function preservation).
    ``preserve_heads=False`` shuffles all units freely (moves units across heads).
    """
    names = list(spec.groups) if groups is None else list(groups)
    unknown = [g for g in names if g not in spec.groups]
    if unknown:
        raise TxmergeError(f"group {unknown[0]!r} is not in the spec; choose from {', '.join(sorted(spec.groups))}.")
    names.sort(key=lambda g: spec.groups[g].partner is not None)  # partners first
    head_orders: dict[str, torch.Tensor] = {}
    out: Perms = {}
    for name in names:
        g = spec.groups[name]
        if g.heads and preserve_heads:
            owner = g.partner or name
            order = head_orders.get(owner)
            if order is None:
                order = torch.randperm(g.heads, generator=generator) if permute_heads else torch.arange(g.heads)
                head_orders[owner] = order
            hd = int(g.head_dim)
            out[name] = torch.cat([int(k) * hd + torch.randperm(hd, generator=generator) for k in order])
        else:
            out[name] = torch.randperm(g.size, generator=generator)
    return out


def random_head_maps(spec: PermutationSpec, generator: torch.Generator, kinds: Iterable[str] = ("qk", "vo"),
                     orthogonal: bool = True) -> Perms:
    """Random within-head maps for tests, every map of ``spec`` of the given ``kinds`` ([heads, d_h, d_h]
    float64): Haar-orthogonal (QR of a Gaussian, signs fixed), or with ``orthogonal=False`` the
    well-conditioned invertible I + 0.3·G/√d_h."""
    kinds = tuple(kinds)
    out: Perms = {}
    for name, hm in spec.maps.items():
        if hm.kind not in kinds:
            continue
        g = torch.randn(hm.heads, hm.head_dim, hm.head_dim, generator=generator, dtype=torch.float64)
        if orthogonal:
            q, r = torch.linalg.qr(g)
            out[name] = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)
        else:
            out[name] = torch.eye(hm.head_dim, dtype=torch.float64) + 0.3 * g / hm.head_dim ** 0.5
    return out


@dataclass(frozen=True)
class VerificationResult:
    """Largest absolute output difference between a model and its permuted copy."""

    max_abs_diff: float
    ok: bool
    atol: float
    output: str  # which outputs were compared, e.g. "logits" or "last_hidden_state+pooler_output"
    tolerance: float = float("nan")  # atol + rtol · the largest |output| of the model: what max_abs_diff was held to


def verify_function_preserved(
    model: nn.Module,
    permuted: nn.Module,
    inputs: Mapping[str, Any],
    atol: float = 1e-4,
    perms: Mapping[str, torch.Tensor] | None = None,
    spec: PermutationSpec | None = None,
    rtol: float = 1e-5,
) -> VerificationResult:
    """Compare outputs of ``model`` and ``permuted`` in eval mode under ``torch.inference_mode``: they
    agree when the largest difference is at most ``atol + rtol · max|output|`` (float32 rounding grows
    with the outputs' size; a wrong permutation changes them by their own order of magnitude).

    Head models: ``logits`` [batch, seq, V] or [batch, labels]. Base models: ``last_hidden_state``
    [batch, seq, hidden] plus ``pooler_output`` where there is one. A permuted base model's last hidden
    state lives in the permuted residual basis, so it is un-permuted with the perm of
    ``spec.output_group`` before comparing; pass ``perms`` and ``spec`` for that.
    Padding positions are included (their outputs must match too).
    """
    feed_a, feed_b = model_inputs(model, inputs), model_inputs(permuted, inputs)
    modes = (model.training, permuted.training)
    model.eval(), permuted.eval()
    try:
        with torch.inference_mode():
            out_a, out_b = model(**feed_a), permuted(**feed_b)
    finally:
        model.train(modes[0]), permuted.train(modes[1])
    diffs: list[float] = []
    scales: list[float] = []
    if getattr(out_a, "logits", None) is not None:
        names = "logits"
        diffs.append(float((out_a.logits - out_b.logits.to(out_a.logits.device)).abs().max()))
        scales.append(float(out_a.logits.abs().max()))
    else:
        names = "last_hidden_state"
        hidden_b = out_b.last_hidden_state.to(out_a.last_hidden_state.device)
        perm = None if not (perms and spec and spec.output_group in perms) else torch.as_tensor(perms[spec.output_group])
        if perm is not None:
            hidden_b = hidden_b.index_select(-1, torch.argsort(perm.long()).to(hidden_b.device))
        diffs.append(float((out_a.last_hidden_state - hidden_b).abs().max()))
        scales.append(float(out_a.last_hidden_state.abs().max()))
        if getattr(out_a, "pooler_output", None) is not None:
            names += "+pooler_output"
            diffs.append(float((out_a.pooler_output - out_b.pooler_output.to(out_a.pooler_output.device)).abs().max()))
            scales.append(float(out_a.pooler_output.abs().max()))
    worst, tolerance = max(diffs), atol + rtol * max(scales)
    return VerificationResult(max_abs_diff=worst, ok=bool(worst <= tolerance), atol=atol, output=names, tolerance=tolerance)
