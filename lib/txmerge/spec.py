"""The declarative BERT permutation spec: which permutation group acts on which parameter axis.

A :class:`PermutationSpec` is pure data. ``axes[key]`` has one entry per axis of the state-dict
tensor ``key``: ``None`` (axis not permuted), a group name (``W.index_select(axis, perms[group])``),
or a tuple of group names applied one after the other (only the official tied-decoder handling
needs that: its decoder is ``E·Pᵀ·Pᵀ``). Applying, inverting, verifying and testing all read this
one table (see :mod:`txmerge.permute`).

Group names follow CONTRIBUTING.md: ``residual``, ``ff.{l}``, ``attn.{l}``, ``qk.{l}`` and, for the
non-function-preserving ``separate`` residual, ``res.emb`` / ``res.{l}.attn`` / ``res.{l}.ff``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

from txmerge.errors import TxmergeError

AxisEntry = str | tuple[str, ...] | None
COMPONENTS = ("ff", "attn", "residual")
RESIDUAL_MODES = ("shared", "separate")
TIED_DECODER_MODES = ("correct", "official")


@dataclass(frozen=True)
class PermGroup:
    """One permutation group: ``size`` units; attention groups carry ``heads`` blocks of ``head_dim``."""

    name: str
    size: int
    heads: int | None = None
    head_dim: int | None = None


@dataclass(frozen=True)
class PermutationSpec:
    """``groups``: name -> PermGroup; ``axes``: state-dict key -> one AxisEntry per tensor axis."""

    groups: dict[str, PermGroup]
    axes: dict[str, tuple[AxisEntry, ...]]
    info: dict[str, Any] = field(default_factory=dict)  # how it was built (residual, tied_decoder, ...)

    def groups_of(self, key: str) -> set[str]:
        """All group names acting on any axis of ``key``."""
        out: set[str] = set()
        for entry in self.axes.get(key, ()):
            out.update(_entry_groups(entry))
        return out

    def keys_of(self, group: str) -> list[str]:
        """State-dict keys that ``group`` acts on (in spec order)."""
        return [k for k in self.axes if group in self.groups_of(k)]

    def restricted_to(self, keys: Iterable[str]) -> "PermutationSpec":
        """The same spec listing only ``keys`` (those present in a given model)."""
        keep = set(keys)
        return PermutationSpec(self.groups, {k: v for k, v in self.axes.items() if k in keep}, dict(self.info))


def _entry_groups(entry: AxisEntry) -> tuple[str, ...]:
    if entry is None:
        return ()
    return (entry,) if isinstance(entry, str) else tuple(entry)


def _config_of(config_or_model: Any) -> Any:
    return getattr(config_or_model, "config", config_or_model)


def detect_prefix(model: Any) -> str:
    """``"bert."`` for task models wrapping a BertModel (``model.bert``), ``""`` for a bare BertModel."""
    base = getattr(model, "base_model_prefix", "bert")
    return f"{base}." if hasattr(model, base) and getattr(model, base) is not model else ""


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise TxmergeError(f"{name}={value!r} is not known; use one of {', '.join(map(repr, allowed))}.")


def bert_spec(
    config_or_model: Any,
    *,
    prefix: str | None = None,
    heads_per_group: bool = True,
    separate_qk: bool = False,
    residual: Literal["shared", "separate"] = "shared",
    tied_decoder: Literal["correct", "official"] = "correct",
    include: Iterable[str] = COMPONENTS,
) -> PermutationSpec:
    """The permutation spec of a Hugging Face BERT (BertModel, BertForMaskedLM, ...ForSequenceClassification).

    - ``prefix``: ``None`` = ``"bert."`` for a config, detected from a model (``""`` for BertModel).
      Given a model, the spec lists exactly its state-dict keys, and a key the spec does not know
      raises TxmergeError (so nothing is silently left unpermuted).
    - ``heads_per_group``: attention groups carry head structure (False = the Ignore-Heads ablation).
    - ``separate_qk``: Q/K rows use ``qk.{l}`` (same head mapping as ``attn.{l}`` required), V/O use ``attn.{l}``.
    - ``residual``: ``shared`` (one ``residual`` group, function-preserving) or ``separate``
      (``res.emb``/``res.{l}.attn``/``res.{l}.ff``: each writer's rows and LayerNorm by its node, each
      consumer's input columns by the node feeding it; NOT function-preserving, an ablation).
    - ``tied_decoder``: ``correct`` (MLM ``transform.dense`` rows and columns and ``transform.LayerNorm`` by
      the residual, decoder = permuted word embeddings: logits unchanged) or ``official`` (the released
      code: ``transform.dense`` input columns only, decoder ``E·Pᵀ·Pᵀ``; needs an untied decoder,
      which :func:`txmerge.permute.apply_permutations` creates; NOT function-preserving).
    - ``include``: subset of ``("ff", "attn", "residual")``; groups left out are absent (identity).
    """
    config = _config_of(config_or_model)
    _choice("residual", residual, RESIDUAL_MODES)
    _choice("tied_decoder", tied_decoder, TIED_DECODER_MODES)
    include = tuple(include)
    for comp in include:
        _choice("include item", comp, COMPONENTS)
    if prefix is None:
        prefix = "bert." if config_or_model is config else detect_prefix(config_or_model)

    d, n_layers = int(config.hidden_size), int(config.num_hidden_layers)
    h, ffw = int(config.num_attention_heads), int(config.intermediate_size)
    if d % h:
        raise TxmergeError(f"hidden_size {d} is not a multiple of num_attention_heads {h}; use a valid BERT config.")
    hd = d // h
    groups: dict[str, PermGroup] = {}
    use_ff, use_attn, use_res = "ff" in include, "attn" in include, "residual" in include

    def group(name: str, size: int, heads: int | None = None) -> str:
        groups[name] = PermGroup(name, size, heads, hd if heads else None)
        return name

    # Residual nodes: which group writes the stream at each point (None = not permuted).
    def res(node: str) -> str | None:
        if not use_res:
            return None
        return group("residual", d) if residual == "shared" else group(node, d)

    axes: dict[str, tuple[AxisEntry, ...]] = {}
    e = f"{prefix}embeddings."
    r_emb = res("res.emb")
    for table in ("word", "position", "token_type"):
        axes[f"{e}{table}_embeddings.weight"] = (None, r_emb)
    axes[f"{e}LayerNorm.weight"] = axes[f"{e}LayerNorm.bias"] = (r_emb,)

    r_in = r_emb
    for layer in range(n_layers):
        p = f"{prefix}encoder.layer.{layer}."
        heads = h if heads_per_group else None
        a = group(f"attn.{layer}", d, heads) if use_attn else None
        qk = group(f"qk.{layer}", d, heads) if (use_attn and separate_qk) else a
        f = group(f"ff.{layer}", ffw) if use_ff else None
        r_attn, r_ff = res(f"res.{layer}.attn"), res(f"res.{layer}.ff")
        for name, rows in (("query", qk), ("key", qk), ("value", a)):
            axes[f"{p}attention.self.{name}.weight"] = (rows, r_in)
            axes[f"{p}attention.self.{name}.bias"] = (rows,)
        axes[f"{p}attention.output.dense.weight"] = (r_attn, a)
        axes[f"{p}attention.output.dense.bias"] = (r_attn,)
        axes[f"{p}attention.output.LayerNorm.weight"] = axes[f"{p}attention.output.LayerNorm.bias"] = (r_attn,)
        axes[f"{p}intermediate.dense.weight"] = (f, r_attn)
        axes[f"{p}intermediate.dense.bias"] = (f,)
        axes[f"{p}output.dense.weight"] = (r_ff, f)
        axes[f"{p}output.dense.bias"] = (r_ff,)
        axes[f"{p}output.LayerNorm.weight"] = axes[f"{p}output.LayerNorm.bias"] = (r_ff,)
        r_in = r_ff
    r_last = r_in

    # Heads: pooler (output not permuted), classifier, NSP, MLM head.
    axes[f"{prefix}pooler.dense.weight"] = (None, r_last)
    axes[f"{prefix}pooler.dense.bias"] = (None,)
    axes["classifier.weight"], axes["classifier.bias"] = (None, None), (None,)
    axes["cls.seq_relationship.weight"], axes["cls.seq_relationship.bias"] = (None, None), (None,)
    t = "cls.predictions."
    if tied_decoder == "correct":
        # transform output lives in the embedding basis so the tied decoder E·Pᵀ undoes it.
        axes[f"{t}transform.dense.weight"] = (r_emb, r_last)
        axes[f"{t}transform.dense.bias"] = (r_emb,)
        axes[f"{t}transform.LayerNorm.weight"] = axes[f"{t}transform.LayerNorm.bias"] = (r_emb,)
        axes[f"{t}decoder.weight"] = (None, r_emb)
    else:
        axes[f"{t}transform.dense.weight"] = (None, r_last)
        axes[f"{t}transform.dense.bias"] = (None,)
        axes[f"{t}transform.LayerNorm.weight"] = axes[f"{t}transform.LayerNorm.bias"] = (None,)
        axes[f"{t}decoder.weight"] = (None, (r_emb, r_emb) if r_emb else None)
    axes[f"{t}decoder.bias"] = axes[f"{t}bias"] = (None,)

    info = dict(prefix=prefix, heads_per_group=heads_per_group, separate_qk=separate_qk,
                residual=residual, tied_decoder=tied_decoder, include=include, n_layers=n_layers)
    spec = PermutationSpec(groups, axes, info)
    if config_or_model is not config:
        keys = list(config_or_model.state_dict().keys())
        unknown = [k for k in keys if k not in axes]
        if unknown:
            raise TxmergeError(
                f"the BERT spec does not cover parameter {unknown[0]!r} (and {len(unknown) - 1} more); "
                "use a BertModel / BertForMaskedLM / BertForSequenceClassification or extend txmerge.spec."
            )
        spec = spec.restricted_to(keys)
    return spec


def is_function_preserving(spec: PermutationSpec) -> bool:
    """False for the ablations: separate residual, Ignore-Heads (no head structure), official tied decoder."""
    info = spec.info
    has_res = any(g == "residual" or g.startswith("res.") for g in spec.groups)
    has_attn = any(g.startswith("attn.") for g in spec.groups)
    decoder = any(k.endswith("cls.predictions.decoder.weight") for k in spec.axes)
    return not (
        info.get("residual") == "separate" and has_res
        or (has_attn and not info.get("heads_per_group", True))
        or (info.get("tied_decoder") == "official" and has_res and decoder)
    )
