"""One pair, one method: statistics → alignment → permuted B → verification.

The command line (``txmerge align`` / ``merge``) and the chapters' experiments (``pipeline``) both
call :func:`align_pair`, so a fix here lands in both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

import torch

from txmerge.base.errors import TxmergeError
from txmerge.core.features import PairCovariance, PairMoments, collect_pair_moments
from txmerge.core.permute import VerificationResult, apply_permutations, verify_function_preserved
from txmerge.methods.method import Alignment, MergeMethod, is_plain_average
from txmerge.methods.registry import matcher_named


@dataclass
class AlignedPair:
    """B permuted into A's basis, the alignment behind it and the check that B's function is kept.

    ``statistics``: the ``{node: PairMoments}`` used (``None`` when none were needed or they were given);
    ``tokens``: the number of tokens they hold; ``seconds``: time of the statistics and of the whole."""

    method: MergeMethod
    alignment: Alignment | None
    permuted: torch.nn.Module
    verification: VerificationResult
    tokens: int
    seconds: dict[str, float]
    statistics: dict[str, PairMoments] | None = None

    @property
    def function_preserving(self) -> bool:
        return True if self.alignment is None else self.alignment.function_preserving

    def report(self) -> dict[str, Any]:
        """A JSON-ready summary (method, verification, matched correlations, tokens, seconds)."""
        al = self.alignment
        return {"method": self.method.to_dict(), "matcher": self.method.matcher, "tokens": self.tokens, "function_preserving": self.function_preserving,
                "breaks": list(al.spec.breaks) if al else [],
                "verification": {"max_abs_diff": self.verification.max_abs_diff, "ok": self.verification.ok,
                                 "atol": self.verification.atol, "tolerance": self.verification.tolerance,
                                 "output": self.verification.output},
                "matched_corr": al.matched_corr if al else {}, "identity_corr": al.identity_corr if al else {},
                "seconds": {k: round(v, 2) for k, v in self.seconds.items()}}


def align_pair(
    model_a: torch.nn.Module,
    model_b: torch.nn.Module,
    method: MergeMethod,
    verify_inputs: Mapping[str, Any] | None,
    *,
    batches: Iterable[Mapping[str, Any]] | None = None,
    statistics: Mapping[str, PairMoments | PairCovariance] | None = None,
    atol: float = 1e-4,
    drop_special_tokens: bool = False,
    progress: bool = True,
) -> AlignedPair:
    """Align ``model_b`` to ``model_a`` with ``method``.

    The maps come from the registered matcher ``method.matcher``. A matcher that reads statistics gets
    ``statistics`` (any superset of the nodes it needs) or collects them over ``batches`` (only the
    needed nodes); one that reads only the weights needs neither. Plain averaging (no component)
    returns B itself. Whatever the matcher, an alignment that claims to keep B's function but whose
    mapped B computes anything else than B (beyond the tolerance on ``verify_inputs``) raises, and no
    merge is reported.
    """
    t0 = time.time()
    matcher = matcher_named(method.matcher)
    if is_plain_average(method):  # nothing to align or verify: weight averaging
        check = VerificationResult(0.0, True, atol, "none (B is not permuted)", atol)
        return AlignedPair(method, None, model_b, check, 0, {"statistics": 0.0, "total": time.time() - t0})
    collected = None
    if matcher.needs_statistics and statistics is None:
        if batches is None:
            raise TxmergeError(f"the {matcher.name} matcher needs the feature statistics or the batches to compute them from.")
        collected = collect_pair_moments(model_a, model_b, batches, nodes=matcher.nodes(method, model_b),
                                         drop_special_tokens=drop_special_tokens, progress=progress)
        statistics = collected
    t_stats = time.time() - t0
    alignment = matcher.match(method, model_a, model_b, statistics if matcher.needs_statistics else None)
    permuted = apply_permutations(model_b, alignment.perms, alignment.spec)
    check = verify_function_preserved(model_b, permuted, verify_inputs, atol=atol, perms=alignment.perms, spec=alignment.spec)
    if alignment.function_preserving and not check.ok:
        raise TxmergeError(f"Mapping model B by the {matcher.name} matcher changed its outputs by {check.max_abs_diff:.2e} "
                           f"(> {check.tolerance:.1e}); the alignment does not keep B's function, so no merge is reported.")
    tokens = int(next(iter(statistics.values())).n) if collected else 0
    return AlignedPair(method, alignment, permuted, check, tokens, {"statistics": t_stats, "total": time.time() - t0}, collected)
