"""Where things live on disk, and a small on-disk cache keyed by the inputs of a computation.

Three locations, each overridable by an environment variable:

- ``results_dir()``  (``TXMERGE_CACHE``): cached results of expensive steps; ``make clean`` empties it.
- ``download_dir()`` (``TXMERGE_DOWNLOADS``): pinned source archives (PyPI wheels/sdists); kept by ``make clean``.
- ``zoo_dir()``      (``TXMERGE_ZOO``): the committed model zoo (``<repo>/zoo``).

Entries are written atomically (temporary file, then rename), so a run that fails or is killed
never leaves a half-written entry that a later build would trust.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from txmerge.base.codehash import code_version, current_code_version  # noqa: F401  (code_version: part of this API)

T = TypeVar("T")

#: The repository this package is installed from (editable install): the default home of the zoo and the presets.
REPO_ROOT = Path(__file__).resolve().parents[3]


def _env_dir(var: str, default: Path) -> Path:
    path = Path(os.environ.get(var, default)).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def results_dir() -> Path:
    """Directory of cached results (``$TXMERGE_CACHE``, default ``~/.cache/txmerge/results``)."""
    return _env_dir("TXMERGE_CACHE", Path.home() / ".cache" / "txmerge" / "results")


def download_dir() -> Path:
    """Directory of downloaded source archives (``$TXMERGE_DOWNLOADS``, default ``~/.cache/txmerge/downloads``)."""
    return _env_dir("TXMERGE_DOWNLOADS", Path.home() / ".cache" / "txmerge" / "downloads")


def zoo_dir() -> Path:
    """Directory of the committed model zoo (``$TXMERGE_ZOO``, default ``<repo>/zoo``)."""
    return Path(os.environ.get("TXMERGE_ZOO", REPO_ROOT / "zoo")).expanduser()


def stable_hash(obj: Any) -> str:
    """sha256 (hex, 16 chars) of a JSON-serialisable description of inputs; key order does not matter."""
    blob = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Full hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any], *, directory: bool = False) -> Path:
    """Call ``write(tmp)`` on a temporary file (or, with ``directory``, an empty folder) beside ``path``,
    then move it into place: a reader never sees a half-written result, and a failure leaves nothing
    behind. The one atomic-write helper of the package."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    else:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
    try:
        write(tmp)
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if directory else tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def cached(name: str, key: dict[str, Any], compute: Callable[[], T], *, enabled: bool = True,
           code: Iterable[str] | None = None) -> T:
    """Return ``compute()``, cached on disk under ``results_dir()/name/<hash of key>.pkl``.

    ``key`` must describe every input that changes the result (checkpoint hashes, parameters). The
    code is part of the key too: the source of every txmerge module that ``code`` (dotted module names;
    default: the module defining ``compute``, when it is one of txmerge's) imports, transitively, found from the imports themselves
    (:mod:`txmerge.base.codehash`). The value must be picklable.

    Concurrent processes asking for one entry compute it once: the first holds a file lock while it
    computes, the others wait and then read its entry. An interrupted computation leaves no entry.
    """
    from filelock import FileLock

    from txmerge import __version__

    if not enabled:
        return compute()
    roots = tuple(r for r in (code if code is not None else (compute.__module__,)) if r.split(".")[0] == "txmerge")
    full_key = {"name": name, "txmerge": __version__, "code": current_code_version(roots) if roots else None, **key}
    path = results_dir() / name / f"{stable_hash(full_key)}.pkl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock"))):
        if path.exists():
            try:
                with open(path, "rb") as fh:
                    return pickle.load(fh)
            except Exception:  # a corrupt entry is recomputed, never trusted
                path.unlink(missing_ok=True)
        started = time.perf_counter()
        value = compute()
        record = {**full_key, "_seconds": round(time.perf_counter() - started, 3)}  # what the entry cost (tools/cache_times.py)
        atomic_write_bytes(path.with_suffix(".json"), json.dumps(record, sort_keys=True, default=str, indent=1).encode())
        atomic_write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    return value
