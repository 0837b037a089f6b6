"""What to align (:class:`MergeMethod`), what an alignment is (:class:`Alignment`), and the one table of
named methods that the chapters, tables and plots use (:data:`NAMED_METHODS`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from txmerge.base.errors import TxmergeError
from txmerge.core.spec import RESIDUAL_MODES, TIED_DECODER_MODES, PermutationSpec, model_spec

RESIDUAL_STRATEGIES = ("identity",) + RESIDUAL_MODES
HEAD_MODES = ("permute", "monotonic", "ignore")
TIED_DECODER = TIED_DECODER_MODES


@dataclass(frozen=True)
class MergeMethod:
    """What to align: ``ff`` (FF units), ``attn`` (attention, head handling ``heads``), ``residual``
    strategy, ``separate_qk`` (own Q/K perm sharing the head mapping), ``absolute`` (match on |corr|;
    the paper's runs use signed), ``tied_decoder`` (MLM decoder handling, see txmerge.core.spec), and
    ``matcher``: the registered matcher that finds the maps (:mod:`txmerge.methods.registry`)."""

    ff: bool = False
    attn: bool = False
    residual: str = "identity"
    heads: str = "permute"
    separate_qk: bool = False
    absolute: bool = False
    tied_decoder: str = "correct"
    matcher: str = "correlation"

    def __post_init__(self) -> None:
        for name, value, allowed in (("residual", self.residual, RESIDUAL_STRATEGIES), ("heads", self.heads, HEAD_MODES), ("tied_decoder", self.tied_decoder, TIED_DECODER)):
            if value not in allowed:
                raise TxmergeError(f"MergeMethod {name}={value!r} is not known; use one of {', '.join(map(repr, allowed))}.")
        for name in ("ff", "attn", "separate_qk", "absolute"):
            if not isinstance(getattr(self, name), bool):
                raise TxmergeError(f"MergeMethod {name} must be True or False, got {getattr(self, name)!r}.")
        if self.separate_qk and (not self.attn or self.heads == "ignore"):
            raise TxmergeError("separate_qk=True needs attn=True and heads 'permute' or 'monotonic' (it reuses the head mapping).")

    def spec(self, config_or_model: Any, prefix: str | None = None) -> PermutationSpec:
        """The permutation spec of this method for a model (or config) of any supported family; whether
        it preserves the function is ``spec.function_preserving``."""
        include = tuple(c for c, on in (("ff", self.ff), ("attn", self.attn), ("residual", self.residual != "identity")) if on)
        return model_spec(
            config_or_model, prefix=prefix, heads_per_group=self.heads != "ignore", separate_qk=self.separate_qk,
            residual=self.residual if self.residual != "identity" else "first", tied_decoder=self.tied_decoder, include=include,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (for cache keys and tables)."""
        return asdict(self)


def required_nodes(method: MergeMethod, model: Any) -> list[str]:
    """Feature nodes ``method`` needs for ``model`` (or its config): pass to collect_pair_moments."""
    return method.spec(model).nodes()



def is_plain_average(method: MergeMethod) -> bool:
    """True when ``method`` aligns nothing (plain weight averaging)."""
    return not (method.ff or method.attn or method.residual != "identity")


@dataclass
class Alignment:
    """Permutations for model B and how well they match.

    ``matched_corr[group]`` = mean matched correlation (1/d)Σ C[i, perm[i]] on the SIGNED correlation;
    the official code's "cost" is half of it (it divides by 2d). ``identity_corr[group]`` = mean
    diagonal correlation before alignment. For ``residual='all'`` the correlation is the one of the
    averaged covariances.
    """

    perms: dict[str, torch.Tensor]
    spec: PermutationSpec
    matched_corr: dict[str, float] = field(default_factory=dict)
    identity_corr: dict[str, float] = field(default_factory=dict)
    head_matches: dict[int, Any] = field(default_factory=dict)  # layer -> HeadMatch of the matcher
    function_preserving: bool = True
    method: MergeMethod | None = None

    def official_cost(self) -> dict[str, float]:
        """The official code's per-node cost Σ C[i, perm[i]] / (2d) = matched_corr / 2."""
        return {g: v / 2 for g, v in self.matched_corr.items()}



#: Every named merge method (names are what tables and plots show). ``full`` is the paper's method
#: (FF + Head-Perm + residual ``first``); ``all`` is the residual strategy of Table 2 (all residual nodes).
NAMED_METHODS: dict[str, MergeMethod] = {
    "vanilla": MergeMethod(),
    "ff": MergeMethod(ff=True),  # Table 1 "Vanilla Attention Avg." (FF permuted, attention averaged)
    "attn": MergeMethod(attn=True),
    "ff+attn": MergeMethod(ff=True, attn=True),
    "monotonic": MergeMethod(ff=True, attn=True, heads="monotonic"),
    "ignore": MergeMethod(ff=True, attn=True, heads="ignore"),
    "permute": MergeMethod(ff=True, attn=True, heads="permute"),
    "permute+qk": MergeMethod(ff=True, attn=True, heads="permute", separate_qk=True),
    "identity": MergeMethod(residual="identity"),
    "first": MergeMethod(residual="first"),
    "last": MergeMethod(residual="last"),
    "all": MergeMethod(residual="all"),
    "separate": MergeMethod(residual="separate"),
    "first (official)": MergeMethod(residual="first", tied_decoder="official"),
    "last (official)": MergeMethod(residual="last", tied_decoder="official"),
    "all (official)": MergeMethod(residual="all", tied_decoder="official"),
    "first (untied)": MergeMethod(residual="first", tied_decoder="untied"),
    "last (untied)": MergeMethod(residual="last", tied_decoder="untied"),
    "all (untied)": MergeMethod(residual="all", tied_decoder="untied"),
    "full": MergeMethod(ff=True, attn=True, residual="first"),
}


def method_named(name: str) -> MergeMethod:
    """A method of :data:`NAMED_METHODS` by name, with a clear error listing the names."""
    if name not in NAMED_METHODS:
        raise TxmergeError(f"Unknown merge method {name!r}; choose one of {', '.join(NAMED_METHODS)}.")
    return NAMED_METHODS[name]
