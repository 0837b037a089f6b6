"""The result cache: keyed by inputs and by the library code a result depends on; atomic writes."""

from __future__ import annotations

import pytest

from txmerge.base import cache


def test_code_version_changes_with_the_named_modules_only(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    (lib / "pkg").mkdir(parents=True)
    (lib / "a.py").write_text("x = 1\n")
    (lib / "b.py").write_text("y = 1\n")
    (lib / "pkg" / "c.py").write_text("z = 1\n")
    monkeypatch.setattr(cache, "__file__", str(lib / "base" / "cache.py"))
    before = cache.code_version(["a", "pkg"])
    (lib / "b.py").write_text("y = 2\n")
    assert cache.code_version(["a", "pkg"]) == before  # another module changed: same key
    (lib / "pkg" / "c.py").write_text("z = 2\n")
    assert cache.code_version(["a", "pkg"]) != before  # a file of the package changed
    with pytest.raises(ValueError, match="no library module"):
        cache.code_version(["missing"])


def test_cached_recomputes_when_its_code_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("TXMERGE_CACHE", str(tmp_path / "results"))
    versions = iter(["v1", "v1", "v2"])
    monkeypatch.setattr(cache, "code_version", lambda modules: next(versions))
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    assert cache.cached("demo", {"k": 1}, compute, code=["features"]) == 1
    assert cache.cached("demo", {"k": 1}, compute, code=["features"]) == 1  # same code: cached
    assert cache.cached("demo", {"k": 1}, compute, code=["features"]) == 2  # the code changed: recomputed


def test_real_library_modules_have_a_code_version():
    assert len(cache.code_version(["core.features", "families"])) == 16


def test_atomic_write_leaves_nothing_behind_on_failure(tmp_path):
    target = tmp_path / "out.txt"

    def broken(tmp):
        (tmp / "part" if tmp.is_dir() else tmp).write_text("half")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.atomic_write(target, broken)
    assert list(tmp_path.iterdir()) == []
    cache.atomic_write(target, lambda tmp: tmp.write_text("whole"))
    assert target.read_text() == "whole" and list(tmp_path.iterdir()) == [target]
    folder = tmp_path / "folder"
    with pytest.raises(RuntimeError):
        cache.atomic_write(folder, broken, directory=True)
    assert not folder.exists() and list(tmp_path.iterdir()) == [target]
