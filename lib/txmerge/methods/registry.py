"""The registry of matchers: every module of :mod:`txmerge.methods.matchers` holding ``MATCHER``.

A matcher has ``name``, ``needs_statistics`` (whether it reads the pair's feature statistics),
``description``, ``nodes(method, model)`` (the feature nodes it needs) and one method,
``match(method, model_a, model_b, statistics) -> Alignment``. A new matcher is one new file in
``methods/matchers/``; it is discovered like the model families, and the command line, ``align_pair``
and the test matrix (planted recovery, function preservation) take it from here.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache
from typing import Any, Mapping, Protocol

from txmerge.base.errors import TxmergeError
from txmerge.methods.method import Alignment, MergeMethod


class Matcher(Protocol):
    name: str
    needs_statistics: bool
    description: str

    def nodes(self, method: MergeMethod, model: Any) -> list[str]: ...

    def match(self, method: MergeMethod, model_a: Any, model_b: Any, statistics: Mapping[str, Any] | None) -> Alignment: ...


@lru_cache(maxsize=1)
def matchers() -> dict[str, Matcher]:
    """Every registered matcher by name (one module of ``txmerge.methods.matchers`` each)."""
    from txmerge.methods import matchers as package

    out: dict[str, Matcher] = {}
    for info in pkgutil.iter_modules(package.__path__):
        matcher = importlib.import_module(f"{package.__name__}.{info.name}").MATCHER
        out[matcher.name] = matcher
    return dict(sorted(out.items()))


def matcher_named(name: str) -> Matcher:
    """The registered matcher ``name``; an unknown name is refused listing the registered ones."""
    known = matchers()
    if name not in known:
        raise TxmergeError(f"Unknown matcher {name!r}; the registered matchers are {', '.join(known)}.")
    return known[name]
