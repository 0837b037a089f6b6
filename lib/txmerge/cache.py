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
import tempfile
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached(name: str, key: dict[str, Any], compute: Callable[[], T], *, enabled: bool = True) -> T:
    """Return ``compute()``, cached on disk under ``results_dir()/name/<hash of key>.pkl``.

    ``key`` must describe every input that changes the result (checkpoint hashes, parameters);
    the library version is added automatically. The value must be picklable.
    """
    from . import __version__

    if not enabled:
        return compute()
    full_key = {"name": name, "txmerge": __version__, **key}
    path = results_dir() / name / f"{stable_hash(full_key)}.pkl"
    if path.exists():
        try:
            with open(path, "rb") as fh:
                return pickle.load(fh)
        except Exception:  # a corrupt entry is recomputed, never trusted
            path.unlink(missing_ok=True)
    value = compute()
    atomic_write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    (path.with_suffix(".json")).write_text(json.dumps(full_key, sort_keys=True, default=str, indent=1))
    return value
