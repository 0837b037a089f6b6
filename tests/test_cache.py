"""The result cache: keyed by inputs and by the library code a result depends on; atomic writes."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from txmerge.base import cache, codehash

LIB = Path(cache.__file__).resolve().parents[1]


@pytest.fixture()
def lib_copy(tmp_path):
    """A copy of the txmerge package to edit."""
    copy = tmp_path / "txmerge"
    shutil.copytree(LIB, copy, ignore=shutil.ignore_patterns("__pycache__", "resources"))
    return copy


def _touch(path: Path) -> None:
    path.write_text(path.read_text() + "\n# one more byte\n")


@pytest.mark.parametrize("module", ["base/precision.py", "data/tasks.py", "core/spec.py", "families/gpt2.py"])
def test_code_key_changes_with_any_module_the_computation_imports(lib_copy, module):
    """The pipeline's key covers modules it reaches only indirectly (precision via features, tasks via
    data, the families discovered by pkgutil): the hand-kept list of old missed the first two."""
    roots = ["txmerge.experiments.pipeline"]
    before = codehash.code_version(roots, lib_copy)
    _touch(lib_copy / module)
    assert codehash.code_version(roots, lib_copy) != before


def test_code_key_ignores_modules_the_computation_never_imports(lib_copy):
    roots = ["txmerge.experiments.pipeline"]
    before = codehash.code_version(roots, lib_copy)
    _touch(lib_copy / "chapters" / "plots.py")  # figures: above the pipeline
    _touch(lib_copy / "cli.py")
    assert codehash.code_version(roots, lib_copy) == before
    closure = codehash.module_closure(roots, lib_copy)
    assert "txmerge.data.tasks" in closure and "txmerge.base.precision" in closure and "txmerge.cli" not in closure
    with pytest.raises(ValueError, match="no library module"):
        codehash.code_version(["txmerge.missing"], lib_copy)


def test_cached_recomputes_when_its_code_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("TXMERGE_CACHE", str(tmp_path / "results"))
    versions = iter(["v1", "v1", "v2"])
    monkeypatch.setattr(cache, "current_code_version", lambda roots: next(versions))
    compute_module = "txmerge.experiments.pipeline"
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    compute.__module__ = compute_module  # as if the pipeline computed it
    assert cache.cached("demo", {"k": 1}, compute) == 1
    assert cache.cached("demo", {"k": 1}, compute) == 1  # same code: cached
    assert cache.cached("demo", {"k": 1}, compute) == 2  # the code changed: recomputed


def test_cached_derives_the_code_from_the_computing_module(tmp_path, monkeypatch):
    monkeypatch.setenv("TXMERGE_CACHE", str(tmp_path / "results"))
    seen = []
    monkeypatch.setattr(cache, "current_code_version", lambda roots: seen.append(roots) or "v")
    cache.cached("demo", {"k": 2}, lambda: 1)  # defined outside txmerge: no library code in the key
    cache.cached("demo", {"k": 3}, lambda: 1, code=["txmerge.core.features"])
    assert seen == [("txmerge.core.features",)]
    from txmerge.experiments import pipeline

    assert pipeline.Experiment.statistics.__module__ == "txmerge.experiments.pipeline"  # what its computations key on


WORKER = """
import sys, time
from pathlib import Path
from txmerge.base import cache
log = Path(sys.argv[1])
def compute():
    with open(log, "a") as fh:
        fh.write("computed\\n")
    time.sleep(2)
    return {"value": 42}
print(cache.cached("concurrent", {"k": 1}, compute, code=["txmerge.base.errors"])["value"])
"""


def test_two_processes_on_one_entry_compute_it_once(tmp_path):
    env = {**os.environ, "TXMERGE_CACHE": str(tmp_path / "results")}
    log = tmp_path / "log.txt"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(log)], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and outs == ["42", "42"]
    assert log.read_text().count("computed") == 1  # the second waited for the first and read its entry
    entries = list((tmp_path / "results" / "concurrent").glob("*.pkl"))
    assert len(entries) == 1 and pickle.loads(entries[0].read_bytes()) == {"value": 42}


def test_an_interrupted_computation_leaves_no_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("TXMERGE_CACHE", str(tmp_path / "results"))

    def killed():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.cached("demo", {"k": 4}, killed)
    assert not list((tmp_path / "results" / "demo").glob("*.pkl"))
    assert cache.cached("demo", {"k": 4}, lambda: 7) == 7


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


def test_every_entry_records_what_it_cost_and_the_tool_sums_it(tmp_path, monkeypatch, capsys):
    import time

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import cache_times

    monkeypatch.setenv("TXMERGE_CACHE", str(tmp_path / "results"))
    for i in range(2):
        cache.cached("slow-step", {"i": i}, lambda: time.sleep(0.05) or i, code=())
    cache.cached("fast-step", {"i": 0}, lambda: 1, code=())
    rows = cache_times.step_times(tmp_path / "results")
    assert [r[:2] for r in rows] == [("slow-step", 2), ("fast-step", 1)]
    assert rows[0][2] >= 0.1
    assert cache_times.main([str(tmp_path / "results")]) == 0 and "| slow-step | 2 |" in capsys.readouterr().out
    assert cache_times.main([str(tmp_path / "missing")]) == 2
