"""Permutation specs built from one declarative table per model family (``txmerge.families``).

A :class:`Family` names, in roles, which permutation acts on each axis of each parameter, and which
module's input or output is each feature node. :func:`model_spec` resolves the roles for one model
and one set of options into a :class:`PermutationSpec`: pure data that feature collection,
matching, applying, inverting, random permutations and verification all read. None of those name a
group or a module path.

Roles of a table (``axes`` entries, one per tensor axis):

| role | group (shared residual) | meaning |
|---|---|---|
| ``emb`` / ``in`` / ``mid`` / ``out`` / ``last`` | ``residual`` | the residual stream written by the embeddings / entering layer l / after its attention / after layer l / after the last layer |
| ``attn`` | ``attn.{l}`` | attention values and the output projection's input (heads of ``head_dim`` units) |
| ``qk`` | ``qk.{l}`` (``attn.{l}`` unless ``separate_qk``) | query and key outputs |
| ``ff`` | ``ff.{l}`` | feed-forward units |
| ``qkv`` | ``[qk, qk, attn]`` | a fused query/key/value axis (GPT-2's ``c_attn``), three equal segments |
| ``("emb", "emb")`` | applied twice | the official code's decoder handling |

Node kinds (``nodes``): ``emb`` (res.emb), ``mid`` (res.{l}.attn), ``out`` (res.{l}.ff), ``attn``,
``ff`` and ``qk``; each maps to ``(module path relative to the base model, "pre" | "post", segment)``
where ``segment = (i, k)`` takes the i-th of k equal slices of the last axis (fused Q/K/V).

Within-head float maps (``within_head``, one entry per axis like ``layer_params``): ``q`` / ``k`` /
``v`` mark the query / key / value output axes, ``o`` the output projection's input axis and ``qkv``
a fused axis; they resolve to :class:`HeadMap` s ``map.qk.{l}`` (R: queries by R, keys by R⁻ᵀ) and
``map.vo.{l}`` (S: values by S, the output projection's head inputs by S⁻ᵀ), applied by
:mod:`txmerge.core.permute` after the permutations.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping

from txmerge.base.errors import TxmergeError
from txmerge.core.headmaps import HeadMap, head_maps

AxisEntry = str | tuple[str, ...] | None
Roles = tuple[Any, ...]
Hook = tuple[str, str, tuple[int, int] | None]
COMPONENTS = ("ff", "attn", "residual")
RESIDUAL_MODES = ("first", "last", "all", "separate")
TIED_DECODER_MODES = ("correct", "untied", "official")


@dataclass(frozen=True)
class Family:
    """One model family, as data. Parameter names are relative to the base model (``embeddings``,
    ``layer`` + ``layer_params``, ``final``) or absolute (``heads``, ``lm_head[mode]``)."""

    name: str
    model_types: tuple[str, ...]  # config.model_type values
    base: str  # the base model's attribute in head models (``base_model_prefix``)
    sizes: Callable[[Any], tuple[int, int, int, int]]  # config -> (width d, layers, heads, FF width)
    embeddings: Mapping[str, Roles]
    layer: str  # e.g. "encoder.layer.{l}."
    layer_params: Mapping[str, Roles]
    nodes: Mapping[str, tuple[Hook, ...]]  # node kind -> hook points ("{layer}" = the layer prefix)
    final: Mapping[str, Roles] = field(default_factory=dict)
    heads: Mapping[str, Roles] = field(default_factory=dict)  # pooler, classifiers (any head but the LM head)
    lm_head: Mapping[str, Mapping[str, Roles]] = field(default_factory=dict)  # tied-decoder mode -> params
    lm_loss: str = "mlm"  # "mlm" (masked) or "clm" (next token)
    lm_head_module: str | None = None  # the LM head applied to final hidden states (None: use the full forward)
    position_offset: int = 0  # position ids start here (RoBERTa: after the padding index), so fewer tokens fit
    within_head: Mapping[str, Roles] = field(default_factory=dict)  # layer param -> q | k | v | o | qkv per axis
    layer_norm: str = "post"  # "post" (LayerNorm on the residual stream itself) or "pre" (LayerNorm before each block)

    def max_tokens(self, config: Any) -> int:
        """The longest sequence a model of this family and ``config`` accepts."""
        return int(config.max_position_embeddings) - self.position_offset

    def classes(self) -> str:
        return ", ".join(self.model_types)


@lru_cache(maxsize=1)
def families() -> dict[str, Family]:
    """Every family table in ``txmerge.families`` (one module each, ``FAMILY``), by model_type."""
    from txmerge import families as package

    out: dict[str, Family] = {}
    for info in pkgutil.iter_modules(package.__path__):
        family = importlib.import_module(f"{package.__name__}.{info.name}").FAMILY
        out.update({t: family for t in family.model_types})
    return out


def family_of(config_or_model: Any) -> Family:
    """The family of a Hugging Face config or model; an unknown one is refused listing the supported ones."""
    config = getattr(config_or_model, "config", config_or_model)
    kind = getattr(config, "model_type", None)
    known = families()
    if kind not in known:
        raise TxmergeError(f"txmerge does not know model type {kind!r}; supported families: "
                           f"{', '.join(sorted({f.name for f in known.values()}))}.")
    return known[kind]


@dataclass(frozen=True)
class PermGroup:
    """One permutation group of ``size`` units. ``kind``: ``units`` (FF), ``heads`` (attention; ``heads``
    blocks of ``head_dim``, or none for the Ignore-Heads ablation), ``qk`` (shares the head mapping of
    ``partner``) or ``residual``. ``nodes``: the feature nodes it is matched on (several = averaged)."""

    name: str
    size: int
    kind: str = "units"
    nodes: tuple[str, ...] = ()
    heads: int | None = None
    head_dim: int | None = None
    partner: str | None = None
    layer: int | None = None


@dataclass(frozen=True)
class PermutationSpec:
    """``groups``: name -> PermGroup; ``axes``: state-dict key -> one AxisEntry per tensor axis
    (a ``Fused`` entry for an axis holding several groups' segments)."""

    groups: dict[str, PermGroup]
    axes: dict[str, tuple[Any, ...]]
    info: dict[str, Any] = field(default_factory=dict)
    output_group: str | None = None  # the group of the base model's output (last hidden state)
    breaks: tuple[str, ...] = ()  # why the spec is not function-preserving (empty = it is)
    maps: dict[str, HeadMap] = field(default_factory=dict)  # within-head float maps by name
    map_axes: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # key -> per axis None | ((map, role) | None per segment)

    @property
    def function_preserving(self) -> bool:
        """The one rule: no separate residual, head structure kept, and no official decoder on an LM head."""
        return not self.breaks

    def groups_of(self, key: str) -> set[str]:
        """All group names acting on any axis of ``key``."""
        out: set[str] = set()
        for entry in self.axes.get(key, ()):
            out.update(_entry_groups(entry))
        return out

    def nodes(self) -> list[str]:
        """Every feature node some group is matched on, in spec order."""
        return list(dict.fromkeys(n for g in self.groups.values() for n in g.nodes))

    def restricted_to(self, keys: Iterable[str]) -> "PermutationSpec":
        """The same spec listing only ``keys`` (those present in a given model); the rule is re-read."""
        keep = set(keys)
        axes = {k: v for k, v in self.axes.items() if k in keep}
        breaks = tuple(b for b in self.breaks if b != OFFICIAL_DECODER or any(k in keep for k in self.info["lm_keys"]))
        map_axes = {k: v for k, v in self.map_axes.items() if k in keep}
        return PermutationSpec(self.groups, axes, dict(self.info), self.output_group, breaks, self.maps, map_axes)


@dataclass(frozen=True)
class Fused:
    """An axis made of equal segments, each permuted by its own group (None = not permuted)."""

    segments: tuple[str | None, ...]


RESIDUAL_MAPS = ("permutation", "orthogonal")


def check_residual_map(config_or_model: Any, kind: str) -> None:
    """Refuse a residual map that cannot keep the family's function: only permutations commute with
    LayerNorm's mean, variance and per-unit affine (an orthogonal map would need LayerNorm rewritten)."""
    _choice("residual map", kind, RESIDUAL_MAPS)
    if kind == "permutation":
        return
    family = family_of(config_or_model)
    if family.layer_norm == "post":
        raise TxmergeError(f"an orthogonal residual map cannot keep the function of post-LayerNorm {family.name}, whose "
                           "LayerNorms put a per-unit gain and bias on the residual stream itself; align the residual "
                           "with a permutation (residual 'first', 'last' or 'all').")
    raise TxmergeError(f"an orthogonal residual map for pre-LayerNorm {family.name} needs its LayerNorms rewritten as "
                       "RMSNorm with the gains folded into the next layers, which txmerge does not do; align the "
                       "residual with a permutation (residual 'first', 'last' or 'all').")


OFFICIAL_DECODER = "the official tied-decoder handling permutes the decoder twice"


def _entry_groups(entry: Any) -> tuple[str, ...]:
    if entry is None:
        return ()
    if isinstance(entry, Fused):
        return tuple(dict.fromkeys(g for g in entry.segments if g))
    return (entry,) if isinstance(entry, str) else tuple(entry)


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TxmergeError(f"{name}={value!r} is not known; use one of {', '.join(map(repr, allowed))}.")


def detect_prefix(model: Any) -> str:
    """``"<base>."`` for head models wrapping a base model (``model.bert``), ``""`` for a bare base model."""
    base = getattr(model, "base_model_prefix", "")
    return f"{base}." if base and hasattr(model, base) and getattr(model, base) is not model else ""


def sizes_of(config_or_model: Any) -> tuple[int, int, int, int]:
    """(width, layers, heads, FF width) of a model or config, read by its family's table."""
    config = getattr(config_or_model, "config", config_or_model)
    d, n_layers, h, ffw = (int(v) for v in family_of(config).sizes(config))
    if d % h:
        raise TxmergeError(f"hidden size {d} is not a multiple of the {h} attention heads; use a valid config.")
    return d, n_layers, h, ffw


def feature_nodes(n_layers: int, qk: bool = False) -> list[str]:
    """Every feature node in forward order: res.emb, then per layer (qk.l), attn.l, res.l.attn, ff.l, res.l.ff."""
    out = ["res.emb"]
    for layer in range(n_layers):
        out += ([f"qk.{layer}"] if qk else []) + [f"attn.{layer}", f"res.{layer}.attn", f"ff.{layer}", f"res.{layer}.ff"]
    return out


def residual_nodes(n_layers: int) -> list[str]:
    """The 2L+1 residual nodes in forward order: ``res.emb, res.0.attn, res.0.ff, ...``."""
    return [n for n in feature_nodes(n_layers) if n.startswith("res.")]


def node_kind(node: str) -> tuple[str, int | None]:
    """(kind, layer) of a node name, kind in emb | mid | out | attn | ff | qk."""
    parts = node.split(".")
    if node == "res.emb":
        return "emb", None
    try:
        if parts[0] == "res" and len(parts) == 3 and parts[2] in ("attn", "ff"):
            return ("mid" if parts[2] == "attn" else "out"), int(parts[1])
        if parts[0] in ("attn", "ff", "qk") and len(parts) == 2:
            return parts[0], int(parts[1])
    except ValueError:
        pass
    raise TxmergeError(f"unknown feature node {node!r}; use res.emb, res.{{l}}.attn, res.{{l}}.ff, ff.{{l}}, attn.{{l}} or qk.{{l}}.")


def hook_points(family: Family, node: str) -> tuple[Hook, ...]:
    """(module path inside the base model, "pre"|"post", segment) of a node, from the family's table."""
    kind, layer = node_kind(node)
    prefix = family.layer.format(l=layer) if layer is not None else ""
    return tuple((path.format(layer=prefix), when, segment) for path, when, segment in family.nodes[kind])


def residual_strategy_nodes(strategy: str, n_layers: int) -> tuple[str, ...]:
    """The residual nodes one shared residual permutation is matched on (paper-spec §2.10)."""
    return {"first": ("res.emb",), "last": (f"res.{n_layers - 1}.ff",)}.get(strategy, tuple(residual_nodes(n_layers)))


def model_spec(
    config_or_model: Any,
    *,
    prefix: str | None = None,
    heads_per_group: bool = True,
    separate_qk: bool = False,
    residual: str = "first",
    tied_decoder: str = "correct",
    include: Iterable[str] = COMPONENTS,
) -> PermutationSpec:
    """The permutation spec of a supported model (see :func:`families`) or its config.

    - ``prefix``: ``None`` = the family's base prefix for a config, detected from a model.
      Given a model, the spec lists exactly its state-dict keys; a key the table does not know
      raises TxmergeError (so nothing is silently left unpermuted).
    - ``heads_per_group``: attention groups carry head structure (False = the Ignore-Heads ablation).
    - ``separate_qk``: Q/K use ``qk.{l}`` (same head mapping as ``attn.{l}``), V/O use ``attn.{l}``.
    - ``residual``: one shared ``residual`` group matched on the ``first`` / ``last`` / ``all`` residual
      nodes, or ``separate`` (one group per residual node; NOT function-preserving, an ablation).
    - ``tied_decoder`` (masked LMs with a transform before the decoder): ``correct`` (the transform
      moves into the permuted basis, the decoder stays tied: the LM head is aligned too), ``untied``
      (the minimal fix of the official code: the transform's input is permuted, the decoder is untied
      and keeps B's own embedding matrix) or ``official`` (the released code; NOT function-preserving).
    - ``include``: subset of ``("ff", "attn", "residual")``; groups left out are absent (identity).
    """
    config = getattr(config_or_model, "config", config_or_model)
    family = family_of(config)
    _choice("residual", residual, RESIDUAL_MODES + ("shared",))
    residual = "first" if residual == "shared" else residual
    _choice("tied_decoder", tied_decoder, TIED_DECODER_MODES)
    include = tuple(include)
    for comp in include:
        _choice("include item", comp, COMPONENTS)
    if prefix is None:
        prefix = f"{family.base}." if config_or_model is config else detect_prefix(config_or_model)
    d, n_layers, h, ffw = sizes_of(config)
    hd = d // h
    groups: dict[str, PermGroup] = {}

    def group(name: str, size: int, kind: str, nodes: tuple[str, ...], layer: int | None = None, **kw: Any) -> str:
        groups.setdefault(name, PermGroup(name, size, kind, nodes, layer=layer, **kw))
        return name

    def res(node: str) -> str | None:
        if "residual" not in include:
            return None
        if residual == "separate":
            return group(node, d, "residual", (node,))
        return group("residual", d, "residual", residual_strategy_nodes(residual, n_layers))

    def resolve(roles: Roles, layer: int | None) -> tuple[Any, ...]:
        return tuple(role_group(r, layer) for r in roles)

    def role_group(role: Any, layer: int | None) -> Any:
        if role is None:
            return None
        if isinstance(role, tuple):
            got = tuple(g for g in (role_group(r, layer) for r in role) if g)
            return got or None
        if role == "qkv":
            qk, a = role_group("qk", layer), role_group("attn", layer)
            return Fused((qk, qk, a)) if (qk or a) else None
        if role == "emb":
            return res("res.emb")
        if role == "last":
            return res(f"res.{n_layers - 1}.ff")
        if role == "in":
            return res("res.emb" if layer == 0 else f"res.{layer - 1}.ff")
        if role in ("mid", "out"):
            return res(f"res.{layer}.{'attn' if role == 'mid' else 'ff'}")
        if role == "ff":
            return group(f"ff.{layer}", ffw, "units", (f"ff.{layer}",), layer) if "ff" in include else None
        if role in ("attn", "qk"):
            if "attn" not in include:
                return None
            heads = dict(heads=h, head_dim=hd) if heads_per_group else {}
            a = group(f"attn.{layer}", d, "heads", (f"attn.{layer}",), layer, **heads)
            if role == "qk" and separate_qk:
                return group(f"qk.{layer}", d, "qk", (f"qk.{layer}",), layer, partner=a, **heads)
            return a
        raise TxmergeError(f"family {family.name}: unknown role {role!r} in its table.")

    axes: dict[str, tuple[Any, ...]] = {}
    for name, roles in family.embeddings.items():
        axes[prefix + name] = resolve(roles, None)
    for layer in range(n_layers):
        for name, roles in family.layer_params.items():
            axes[prefix + family.layer.format(l=layer) + name] = resolve(roles, layer)
    for name, roles in family.final.items():
        axes[prefix + name] = resolve(roles, None)
    for name, roles in family.heads.items():
        axes[name.format(base=prefix)] = resolve(roles, None)
    lm = family.lm_head.get(tied_decoder)
    if family.lm_head and lm is None:
        raise TxmergeError(f"tied_decoder={tied_decoder!r} does not apply to {family.name}; use one of "
                           f"{', '.join(map(repr, family.lm_head))}.")
    for name, roles in (lm or {}).items():
        axes[name] = resolve(roles, None)

    breaks = []
    if "residual" in include and residual == "separate":
        breaks.append("separate residual permutations do not commute with the residual additions")
    if "attn" in include and not heads_per_group:
        breaks.append("attention units move across heads")
    if "residual" in include and tied_decoder == "official" and lm:
        breaks.append(OFFICIAL_DECODER)
    info = dict(family=family.name, prefix=prefix, heads_per_group=heads_per_group, separate_qk=separate_qk,
                residual=residual, tied_decoder=tied_decoder, include=include, n_layers=n_layers, lm_keys=tuple(lm or ()))
    maps, map_axes = head_maps(family, prefix, n_layers, h, hd)
    spec = PermutationSpec(groups, axes, info, res(f"res.{n_layers - 1}.ff"), tuple(breaks), maps, map_axes)
    if config_or_model is not config:
        keys = list(config_or_model.state_dict().keys())
        unknown = [k for k in keys if k not in axes]
        if unknown:
            raise TxmergeError(
                f"the {family.name} spec does not cover parameter {unknown[0]!r} (and {len(unknown) - 1} more); "
                f"this model class is not supported: add its parameters to txmerge/families/{family.name}.py."
            )
        spec = spec.restricted_to(keys)
    return spec


#: The historical name (the BERT family is one table among others now).
bert_spec = model_spec


def is_function_preserving(spec: PermutationSpec) -> bool:
    """``spec.function_preserving`` (kept for callers of the old function)."""
    return spec.function_preserving
