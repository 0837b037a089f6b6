"""Copy the repository's working tree (tracked + untracked, not ignored files) into a new folder.

Used by the smoke-book tests and the build benchmark so they never touch the developer's
``executed/``, ``_build/`` or caches. Without git, copies everything except generated folders.

    python tools/copy_worktree.py DEST [--skip tests bench]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GENERATED = {".git", ".venv", ".cache", "executed", "_build", "assignments", "__pycache__", ".pytest_cache"}


def worktree_files(repo: Path = REPO) -> list[Path]:
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=repo, check=True, capture_output=True,
        ).stdout
        return [Path(p) for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        return [
            p.relative_to(repo)
            for p in repo.rglob("*")
            if p.is_file() and not GENERATED & set(p.relative_to(repo).parts)
        ]


def copy_worktree(dest: Path, repo: Path = REPO, skip: tuple[str, ...] = ()) -> Path:
    """Copy the working tree of ``repo`` into ``dest`` (created); top-level folders in ``skip`` are left out."""
    dest.mkdir(parents=True, exist_ok=True)
    for rel in worktree_files(repo):
        if rel.parts[0] in skip or not (repo / rel).is_file():  # deleted but still tracked
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, target)
    return dest


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--skip", nargs="*", default=[])
    a = ap.parse_args()
    print(copy_worktree(a.dest, skip=tuple(a.skip)))
