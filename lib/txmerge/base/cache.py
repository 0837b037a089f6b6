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
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

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


def code_version(modules: Iterable[str]) -> str:
    """sha256 (16 hex) of the source of the named library modules (``"features"``, or a package such as
    ``"families"``: every file in it): a cache key part that changes exactly when that code changes."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for name in sorted(set(modules)):
        target = root / name.replace(".", "/")
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
        if not files or not all(f.exists() for f in files):
            raise ValueError(f"code_version: no library module named {name!r}")
        for f in files:
            h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def cached(name: str, key: dict[str, Any], compute: Callable[[], T], *, enabled: bool = True,
           code: Iterable[str] = ()) -> T:
    """Return ``compute()``, cached on disk under ``results_dir()/name/<hash of key>.pkl``.

    ``key`` must describe every input that changes the result (checkpoint hashes, parameters);
    ``code`` names the library modules the result depends on (their source is hashed into the key,
    so a fix there recomputes it, and a change elsewhere does not). The value must be picklable.
    """
    from txmerge import __version__

    if not enabled:
        return compute()
    full_key = {"name": name, "txmerge": __version__, "code": code_version(code) if code else None, **key}
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
