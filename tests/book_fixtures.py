"""Session fixture: one smoke-preset build of the whole book, shared by test_book and test_browser.

Registered as a pytest plugin by ``pytest_plugins = ["book_fixtures"]`` in those modules (tests/ is
on sys.path in pytest's default import mode). The build runs in a temporary copy of the working
tree (``tools/copy_worktree.py``) with its own result cache, so the developer's ``executed/``,
``_build/`` and ``.cache/results`` are never touched; downloads are shared (read mostly).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("copy_worktree", REPO / "tools" / "copy_worktree.py")
copy_worktree_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(copy_worktree_mod)

#: what the book build does not need
SKIP_DIRS = ("tests", "bench", ".ci")


@dataclass
class BookBuild:
    root: Path  # the temporary copy
    returncode: int
    seconds: float
    log: Path

    @property
    def html(self) -> Path:
        return self.root / "_build" / "html"

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def copy_repo(dest: Path) -> Path:
    """A copy of the working tree without tests/bench, for building."""
    return copy_worktree_mod.copy_worktree(dest, REPO, skip=SKIP_DIRS)


def make_env(root: Path, cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(root / "lib") + os.pathsep + env.get("PYTHONPATH", ""),
        TXMERGE_CACHE=str(cache),
        TXMERGE_DOWNLOADS=os.environ.get("TXMERGE_DOWNLOADS", str(REPO / ".cache" / "downloads")),
    )
    env.pop("MPLBACKEND", None)  # the kernel must pick the inline backend, or figures vanish
    env.pop("MAKEFLAGS", None)
    env.pop("MAKELEVEL", None)
    env.pop("MFLAGS", None)
    return env


def run_make(root: Path, *args: str, cache: Path, log: Path, timeout: float = 1800) -> tuple[int, float]:
    """``make ARGS`` in ``root`` with this interpreter's environment (no venv install); output to ``log``."""
    cmd = ["make", "--no-print-directory", *args, "INSTALL=0", f"PY={sys.executable}"]
    start = time.monotonic()
    with open(log, "w") as fh:
        proc = subprocess.run(cmd, cwd=root, env=make_env(root, cache), stdout=fh, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=timeout)
    return proc.returncode, time.monotonic() - start


def toc_files(root: Path) -> list[str]:
    """Every file of _toc.yml (root, chapters, sections, parts), without suffix, in order."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return files


@pytest.fixture(scope="session")
def book_tools():
    """This module, for test modules (they must not import it at import time: it is a plugin)."""
    return sys.modules[__name__]


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory) -> BookBuild:
    """The whole book built with PRESET=smoke in a temporary copy (built once per session)."""
    base = tmp_path_factory.mktemp("smoke-book")
    root = copy_repo(base / "repo")
    log = base / "make-book.log"
    rc, seconds = run_make(root, "book", "PRESET=smoke", cache=base / "cache", log=log)
    return BookBuild(root=root, returncode=rc, seconds=seconds, log=log)
