"""Repository invariants: environment.yml agrees with pyproject, the toc matches the chapters, no
executed outputs are committed, README's commands are what CI runs, chapters follow the template."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
from book_fixtures import toc_files  # noqa: E402  (tests/ is on sys.path)

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.md"))
TORCH_PIN = "torch==2.13.0"


def _toc_files() -> list[str]:
    return toc_files(REPO)


# ---------------------------------------------------------------- environment
def test_pyproject_pins_torch_exactly():
    deps = [Requirement(d) for d in PYPROJECT["project"]["dependencies"]]
    torch = [d for d in deps if d.name == "torch"]
    assert len(torch) == 1 and str(torch[0].specifier) == "==2.13.0", "pyproject must pin torch==2.13.0"


def test_environment_yml_agrees_with_pyproject():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert env["name"] == "txmerge" and env["channels"] == ["conda-forge"]
    deps = env["dependencies"]
    conda = [d for d in deps if isinstance(d, str)]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert any(d.split(">")[0].split("=")[0] == "pip" for d in conda), "a pip section needs pip"
    py = next(d for d in conda if d.startswith("python"))
    version = Version(py.split("=", 1)[1].lstrip("="))
    assert version in SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert TORCH_PIN in pip
    editable = next(line for line in pip if line.startswith("-e "))
    extras = re.search(r"\[(.*)\]", editable).group(1).split(",")
    assert set(extras) <= set(PYPROJECT["project"]["optional-dependencies"]), extras
    assert {"book", "test"} <= set(extras)
    assert pip.index(TORCH_PIN) < pip.index(editable), "torch must come before the package"
    assert any(line.startswith("--extra-index-url") and "whl/cpu" in line for line in pip)


# ---------------------------------------------------------------- book structure
def test_every_chapter_is_in_the_toc_and_back():
    toc = _toc_files()
    executed = {f.split("/", 1)[1] for f in toc if f.startswith("executed/")}
    stems = {p.stem for p in NOTEBOOKS}
    assert stems - executed == set(), f"chapters missing from _toc.yml: {sorted(stems - executed)}"
    assert executed - stems == set(), f"toc entries without notebooks/<stem>.md: {sorted(executed - stems)}"
    for f in toc:
        if not f.startswith("executed/"):
            assert (REPO / f"{f}.md").is_file() or (REPO / f"{f}.ipynb").is_file(), f"{f} does not exist"


def test_book_config_is_offline_and_strict_ready():
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    ext = cfg["sphinx"]["extra_extensions"]
    assert "sphinx-mathjax-offline" in ext and "sphinx_exercise" in ext
    for pat in (".venv", "notebooks", "lib", "tests", "bench", "tools", "params", "zoo", "README.md", "**/.*"):
        assert pat in cfg["exclude_patterns"], pat
    assert cfg["launch_buttons"]["thebe"] is False
    assert not cfg["html"]["use_repository_button"]
    make = (REPO / "Makefile").read_text()
    assert "jupyter-book build . $(JB_FLAGS)" in make and "JB_FLAGS  ?= -W --keep-going" in make


def test_no_static_folder_in_the_book_tree():
    skip = {".venv", "_build", ".git", ".cache", "node_modules"}
    found = [p for p in REPO.rglob("_static") if not skip & set(p.relative_to(REPO).parts)]
    assert not found, f"Jupyter Book injects every .js/.css under _static into each page: {found}"


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
def test_no_executed_outputs_are_committed():
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    bad = [f for f in files if f.endswith(".ipynb") or f.startswith(("executed/", "_build/"))]
    assert not bad, f"generated files are tracked by git: {bad[:10]}"


# ---------------------------------------------------------------- README and CI
def _readme_first_block() -> list[str]:
    text = (REPO / "README.md").read_text()
    m = re.search(r"```(?:bash|sh|console)?\n(.*?)```", text, re.S)
    assert m, "README.md has no code block"
    assert text.index(m.group(0)) < text.index("\n## "), "the commands must come before any section"
    return [line.strip() for line in m.group(1).splitlines() if line.strip()]


def test_readme_begins_with_the_two_commands():
    assert _readme_first_block() == ["make book", "make test"]


def test_ci_runs_exactly_the_readme_test_command():
    test_cmd = _readme_first_block()[1]
    lines = [
        line.strip()
        for line in (REPO / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert "set -euo pipefail" in lines
    assert lines[-1] == test_cmd, f".ci/run must end with the README's test command {test_cmd!r}"
    assert not any("pytest" in line for line in lines), "CI must run the README command, not its own"
    assert not any(w in line for line in lines for w in ("apt-get", "chromium", "playwright")), \
        "make test provisions the browser itself; CI needs no browser step"


# ---------------------------------------------------------------- chapter template (reader experience)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_follows_the_template(path):
    import jupytext

    text = path.read_text()
    nb = jupytext.read(path)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3", "kernelspec python3 in the header"
    assert "Expected run time" in text, "state the expected run time at the top"
    assert f"<../notebooks/{path.name}>" in text, "link the source with {download}`...<../notebooks/NAME.md>`"
    code = [c for c in nb.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in code]
    assert "parameters" in tags[0], "the first code cell is the parameters cell"
    assert f'start("{path.stem}", globals())' in code[1].source, "start (validate, check, plan) right after parameters"
    assert "provenance(" in code[-1].source, "end with the provenance cell"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_code_is_formatted_to_the_page_width(path):
    """Code cells are `ruff format --line-length 88` (what the theme's code column shows at 1280 px):
    reformat with `jupytext --pipe 'ruff format --line-length 88 -' notebooks/NAME.md`."""
    import jupytext

    ruff = Path(sys.executable).with_name("ruff")
    for cell in jupytext.read(path).cells:
        if cell.cell_type != "code" or cell.source.lstrip().startswith(("%", "!")):
            continue
        out = subprocess.run([str(ruff), "format", "--line-length", "88", "-"], input=cell.source, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.rstrip("\n") == cell.source.rstrip("\n"), f"{path.name}: a code cell is not formatted:\n{cell.source[:200]}"
