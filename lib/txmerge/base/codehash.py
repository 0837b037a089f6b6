"""The library code a computation depends on, found from the imports themselves (``ast``), and its hash.

:func:`module_closure` follows every import of a txmerge module (module-level or inside functions,
absolute or relative), transitively, with the ``__init__`` of every package on the way (Python runs
those too). :func:`code_version` hashes the source of that closure: a cache key part that changes
whenever any code the result could depend on changes, with no hand-kept list of modules.
"""

from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Iterable

PACKAGE = "txmerge"
PACKAGE_DIR = Path(__file__).resolve().parents[1]


def _modules(package_dir: Path) -> dict[str, Path]:
    """{dotted module name: file} of every ``.py`` in the package (``txmerge.data`` for data/__init__.py)."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = (PACKAGE, *path.relative_to(package_dir).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (each import statement, wherever it is)."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            stem, named = None, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            stem = node.module or ""
            if node.level:
                base = here[: len(here) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            named = [f"{stem}.{a.name}" for a in node.names]
        else:
            continue
        for target in ([stem] if stem else []) + named:
            exact = target in modules and target in named
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target.startswith(PACKAGE):
                found.add(target)
                if exact and modules[target].name == "__init__.py":  # a package imported by name: its modules
                    found.update(m for m in modules if m.startswith(target + "."))  # may be discovered (pkgutil)
    return found


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def module_closure(roots: Iterable[str], package_dir: Path | None = None) -> list[str]:
    """Every txmerge module that importing ``roots`` (dotted names, e.g. ``txmerge.core.features``) runs, sorted."""
    modules = _modules(package_dir or PACKAGE_DIR)
    todo = [r if r.startswith(PACKAGE) else f"{PACKAGE}.{r}" for r in roots]
    unknown = [r for r in todo if r not in modules]
    if unknown:
        raise ValueError(f"code_version: no library module named {unknown[0]!r}")
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        for m in _with_parents(name):
            if m in modules and m not in seen:
                seen.add(m)
                todo.extend(_imports(m, modules[m], modules))
    return sorted(seen)


def code_version(roots: Iterable[str], package_dir: Path | None = None) -> str:
    """sha256 (16 hex) of the source of :func:`module_closure` of ``roots``."""
    package_dir = package_dir or PACKAGE_DIR
    modules = _modules(package_dir)
    h = hashlib.sha256()
    for name in module_closure(roots, package_dir):
        h.update(name.encode() + b"\0" + modules[name].read_bytes() + b"\0")
    return h.hexdigest()[:16]


@lru_cache(maxsize=None)
def _cached_version(roots: tuple[str, ...], stamp: tuple) -> str:
    return code_version(roots)


def current_code_version(roots: Iterable[str]) -> str:
    """:func:`code_version` of the installed package, recomputed only when a file of it changed (size, mtime)."""
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in sorted(PACKAGE_DIR.rglob("*.py")))
    return _cached_version(tuple(sorted(roots)), stamp)
