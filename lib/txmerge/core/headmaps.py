"""Within-head float maps of a family: where they act, resolved from the family's ``within_head`` table
(see :mod:`txmerge.core.spec`); applied by :mod:`txmerge.core.permute` after the permutations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from txmerge.base.errors import TxmergeError


@dataclass(frozen=True)
class HeadMap:
    """Per-head float maps of layer ``layer``, a tensor [heads, head_dim, head_dim] in the perms: ``kind``
    ``qk`` (R: q → q R, k → k R⁻ᵀ) or ``vo`` (S: v → v S, the output projection's head inputs by S⁻ᵀ),
    row-vector features, at A's head positions (after the head permutation)."""

    name: str
    kind: str
    layer: int
    heads: int
    head_dim: int


MAP_KINDS = {"q": "qk", "k": "qk", "v": "vo", "o": "vo"}
_TABLE_ROLE = {"q": "qk", "k": "qk", "v": "attn", "o": "attn", "qkv": "qkv"}


def head_maps(family: Any, prefix: str, n_layers: int, heads: int, head_dim: int) -> tuple[dict[str, HeadMap], dict[str, tuple[Any, ...]]]:
    """The within-head maps of every layer and the axes they act on, from the family's ``within_head``."""
    maps: dict[str, HeadMap] = {}
    map_axes: dict[str, tuple[Any, ...]] = {}
    for name, roles in family.within_head.items():
        table = family.layer_params.get(name)
        if table is None or len(table) != len(roles) or any(r is not None and _TABLE_ROLE.get(r) != t for r, t in zip(roles, table)):
            raise TxmergeError(f"family {family.name}: within_head entry {name!r} {roles} does not match the attention "
                               f"roles of its layer_params ({table}); fix the table.")
        for layer in range(n_layers):
            slots = {r: (f"map.{MAP_KINDS[r]}.{layer}", r) for r in MAP_KINDS}
            for map_name, role in slots.values():
                maps.setdefault(map_name, HeadMap(map_name, MAP_KINDS[role], layer, heads, head_dim))
            map_axes[prefix + family.layer.format(l=layer) + name] = tuple(
                None if r is None else tuple(slots[x] for x in (("q", "k", "v") if r == "qkv" else (r,))) for r in roles)
    return dict(sorted(maps.items(), key=lambda kv: (kv[1].layer, kv[1].kind))), map_axes
