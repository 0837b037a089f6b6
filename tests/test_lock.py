"""uv.lock: agrees with pyproject.toml, pins every package with hashes for Linux, macOS and Windows,
and drives `make venv` (with torch's CPU build on Linux)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tools import install_locked as IL

REPO = Path(__file__).resolve().parents[1]
LOCK = tomllib.loads((REPO / "uv.lock").read_text())
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PACKAGES = {p["name"]: p for p in LOCK["package"]}


def _declared() -> set[tuple[str, str, str]]:
    """(name, specifier, extra) of every requirement in pyproject.toml."""
    out = set()
    for extra, reqs in [("", PYPROJECT["project"]["dependencies"]), *PYPROJECT["project"]["optional-dependencies"].items()]:
        for text in reqs:
            r = Requirement(text)
            out.add((canonicalize_name(r.name), str(r.specifier), extra))
    return out


def _locked() -> set[tuple[str, str, str]]:
    out = set()
    for r in PACKAGES["txmerge"]["metadata"]["requires-dist"]:
        extra = re.search(r"extra == '([^']+)'", r.get("marker", ""))
        out.add((canonicalize_name(r["name"]), str(Requirement(r["name"] + r.get("specifier", "")).specifier), extra.group(1) if extra else ""))
    return out


def test_lock_agrees_with_pyproject():
    assert _locked() == _declared(), "uv.lock is stale: run `make lock` and commit uv.lock"
    assert LOCK["requires-python"] == PYPROJECT["project"]["requires-python"].split("#")[0].strip()
    assert PACKAGES["torch"]["version"] == "2.13.0"


def test_uv_agrees_too():
    uv = Path(sys.executable).with_name("uv")
    proc = subprocess.run([str(uv), "lock", "--check", "--offline"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_every_package_pinned_with_hashes_for_three_platforms():
    for name, pkg in PACKAGES.items():
        if pkg["source"].get("editable") == ".":
            continue
        files = pkg.get("wheels", []) + ([pkg["sdist"]] if "sdist" in pkg else [])
        assert files and all(f.get("hash", "").startswith("sha256:") for f in files), name
    for name in ("numpy", "torch", "scipy", "pyarrow"):
        urls = " ".join(w["url"] for w in PACKAGES[name]["wheels"])
        for tag in ("manylinux", "macosx", "win_amd64"):
            assert tag in urls, f"{name}: no {tag} wheel in the lock"


def test_linux_gets_torch_cpu_build():
    export = [
        "numpy==2.4.6 \\\n", "    --hash=sha256:aa\n",
        "nvidia-cublas==13.0 ; sys_platform == 'linux' \\\n", "    --hash=sha256:bb\n",
        "torch==2.13.0 \\\n", "    --hash=sha256:cc\n", "    --hash=sha256:dd\n",
        "triton==3.6.0 ; sys_platform == 'linux' \\\n", "    --hash=sha256:ee\n",
        "tqdm==4.70.1 \\\n", "    --hash=sha256:ff\n",
    ]
    kept, version = IL.cpu_torch(export)
    assert version == "2.13.0"
    assert "".join(kept) == "numpy==2.4.6 \\\n    --hash=sha256:aa\ntqdm==4.70.1 \\\n    --hash=sha256:ff\n"
    req = IL.torch_requirement(PACKAGES["torch"]["version"])
    assert req.startswith("torch==2.13.0+cpu \\\n") and req.count("--hash=sha256:") == len(IL.CPU_WHEELS["2.13.0"])
    with pytest.raises(SystemExit, match="records no CPU wheel hashes for torch 9.9"):
        IL.torch_requirement("9.9")


def test_makefile_installs_from_the_lock():
    make = (REPO / "Makefile").read_text()
    recipe = make[make.index("$(VENV)/.installed: pyproject.toml uv.lock"):]
    recipe = recipe[: recipe.index("@touch $@")]
    assert "tools/install_locked.py" in recipe and "pip install -e" not in recipe
    assert re.search(r"^lock:.*\n(\t.*\n)*\t\$\(VENV\)/bin/uv lock", make, re.M)
    uv_pin = re.search(r"^UV\s*\?=\s*([0-9.]+)", make, re.M).group(1)
    assert any(Requirement(r).name == "uv" for r in PYPROJECT["project"]["optional-dependencies"]["test"])
    assert PACKAGES["uv"]["version"] == uv_pin, "Makefile's UV and the locked uv differ"


def test_lock_hash_is_recorded(tmp_path):
    lock = tmp_path / "uv.lock"
    lock.write_text("version = 1\n")
    assert IL.lock_hash(lock) == "sha256:" + __import__("hashlib").sha256(b"version = 1\n").hexdigest()


def test_provenance_shows_the_lock_hash(tmp_path, monkeypatch):
    from txmerge.chapters import provenance

    monkeypatch.setattr(provenance.sys, "prefix", str(tmp_path))
    assert provenance.environment_lock() == "not installed from uv.lock"
    (tmp_path / "txmerge-lock.txt").write_text("uv.lock sha256:" + "ab" * 32 + "\n")
    assert provenance.environment_lock() == "uv.lock sha256:" + "ab" * 6
    assert provenance.provenance_dict({"preset": "smoke", "seed": 0})["environment"] == "uv.lock sha256:" + "ab" * 6


def test_no_widgets_in_the_environment():
    """ipywidgets (declared, never imported, by nbgrader) would turn the chapters' progress bars into
    widgets loading JavaScript from a CDN; the lock overrides it away."""
    import importlib.util

    assert PYPROJECT["tool"]["uv"]["override-dependencies"] == ["ipywidgets; sys_platform == 'never'"]
    assert importlib.util.find_spec("ipywidgets") is None
