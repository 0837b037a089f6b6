"""Apply a :class:`~txmerge.core.spec.PermutationSpec` to a state dict or a model, and verify the result.

Convention (CONTRIBUTING.md): ``perms[group]`` is a LongTensor ``perm`` of length ``size``; after
permuting, unit ``i`` is the old unit ``perm[i]`` (``W_new = W.index_select(axis, perm)``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from txmerge.base.errors import TxmergeError
from txmerge.core.models import model_inputs
from txmerge.core.spec import Fused, PermutationSpec, _entry_groups

Perms = dict[str, torch.Tensor]


def check_permutations(perms: Mapping[str, torch.Tensor], spec: PermutationSpec) -> Perms:
    """Validate ``perms`` against ``spec`` (known group, right length, a true permutation); return LongTensors."""
    out: Perms = {}
    for name, perm in perms.items():
        if name not in spec.groups:
            raise TxmergeError(
                f"permutation group {name!r} is not in the spec (groups: {', '.join(sorted(spec.groups)) or 'none'}); "
                "build the spec with the same method/include as the permutations."
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
    """A new state dict with every spec'd axis index-selected by its group (missing groups = identity).

    Keys of ``state_dict`` absent from ``spec`` raise TxmergeError; untouched tensors are shared, not copied.
    """
    perms = check_permutations(perms, spec)
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
        out[key] = value
    return out


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


def invert_permutations(perms: Mapping[str, torch.Tensor]) -> Perms:
    """``inv[g] = argsort(perms[g])``, so permuting by ``perms`` then by ``inv`` is the identity."""
    return {g: torch.argsort(torch.as_tensor(p).long()) for g, p in perms.items()}


def compose_permutations(first: Mapping[str, torch.Tensor], then: Mapping[str, torch.Tensor]) -> Perms:
    """The single permutation equal to applying ``first`` then ``then`` (``first[then]`` per group)."""
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
