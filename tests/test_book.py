"""The whole book builds with the smoke preset; a failing chapter or a bad parameter fails the build
and leaves no executed notebook behind."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

pytest_plugins = ["book_fixtures"]

pytestmark = pytest.mark.slow

OFFSITE = re.compile(r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)=["'](?:https?:)?//""", re.I)


def test_smoke_book_builds(smoke_book, book_tools):
    assert smoke_book.returncode == 0, f"make book PRESET=smoke failed:\n{smoke_book.tail()}"
    for page in book_tools.toc_files(smoke_book.root):
        assert (smoke_book.html / f"{page}.html").is_file(), f"{page} is in _toc.yml but was not rendered"
    assert (smoke_book.html / "index.html").is_file()


def test_executed_notebooks_record_the_preset(smoke_book):
    assert smoke_book.returncode == 0, smoke_book.tail()
    stems = sorted(p.stem for p in (smoke_book.root / "notebooks").glob("*.md"))
    assert stems, "no chapters"
    for stem in stems:
        nb = json.loads((smoke_book.root / "executed" / f"{stem}.ipynb").read_text())
        assert nb["metadata"]["papermill"]["parameters"]["preset"] == "smoke", stem
        last_code = [c for c in nb["cells"] if c["cell_type"] == "code"][-1]
        assert "provenance(" in "".join(last_code["source"]), f"{stem} does not end with provenance"
        assert last_code["outputs"], f"{stem}: the provenance cell shows nothing"
        source = (smoke_book.root / "notebooks" / f"{stem}.md").read_text()
        if "plt." in source or "plots." in source:
            images = [o for c in nb["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
            assert images, f"{stem} draws figures but its executed notebook shows none"
    assert not list((smoke_book.root / "executed").glob(".tmp.*")), "temporary notebooks left behind"


def test_html_is_self_contained(smoke_book):
    """No script, stylesheet or image is loaded from another host; math uses the local MathJax."""
    assert smoke_book.returncode == 0, smoke_book.tail()
    pages = list(smoke_book.html.rglob("*.html"))
    for page in pages:
        text = page.read_text(errors="replace")
        hits = OFFSITE.findall(text)
        assert not hits, f"{page.relative_to(smoke_book.html)} loads from another host: {hits[:3]}"
        if 'class="math' in text:
            assert "_static/mathjax/tex-chtml.js" in text, f"{page.name} has math but no local MathJax"
            assert "cdn.jsdelivr" not in text
    assert list(smoke_book.html.rglob("_static/mathjax/tex-chtml.js")), "MathJax was not copied"


def test_chapter_pages_link_their_sources(smoke_book):
    assert smoke_book.returncode == 0, smoke_book.tail()
    for stem in sorted(p.stem for p in (smoke_book.root / "notebooks").glob("*.md")):
        html = (smoke_book.html / "executed" / f"{stem}.html").read_text()
        assert f"{stem}.md" in html and "_downloads/" in html, f"{stem}: no download link to its .md source"
        assert f"_sources/executed/{stem}.ipynb" in html, f"{stem}: no download button for the executed notebook"


def _break_first_chapter(root: Path) -> str:
    """Insert a failing cell right after the parameters cell of the first chapter; return its stem."""
    src = sorted((root / "notebooks").glob("*.md"))[0]
    text = src.read_text()
    m = re.search(r"```\{code-cell\}[^\n]*\n:tags: \[parameters[^\]]*\]\n.*?\n```\n", text, re.S)
    assert m, f"{src.name} has no parameters cell"
    broken = "\n```{code-cell} ipython3\nraise RuntimeError('deliberately broken chapter')\n```\n"
    src.write_text(text[: m.end()] + broken + text[m.end() :])
    return src.stem


def test_failing_chapter_fails_the_build_and_leaves_nothing(tmp_path, book_tools):
    run_make = book_tools.run_make
    root = book_tools.copy_repo(tmp_path / "repo")
    stem = _break_first_chapter(root)
    stale = root / "executed" / f"{stem}.ipynb"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")  # an old result that must not survive a failed run
    os.utime(stale, (0, 0))
    rc, _ = run_make(root, "book", "PRESET=smoke", cache=tmp_path / "cache", log=tmp_path / "log")
    log = (tmp_path / "log").read_text(errors="replace")
    assert rc != 0, "a failing chapter did not fail make book"
    assert "deliberately broken chapter" in log
    assert f"chapter {stem} failed" in log
    assert not stale.exists(), "the failed chapter left an executed notebook behind"
    assert not list((root / "executed").glob(".tmp.*")), "a temporary notebook was left behind"
    assert not (root / "_build" / "html").exists(), "the book was rendered despite a failed chapter"


def test_bad_preset_and_bad_value_stop_before_any_work(tmp_path, book_tools):
    run_make = book_tools.run_make
    root = book_tools.copy_repo(tmp_path / "repo")
    rc, _ = run_make(root, "book", "PRESET=bogus", cache=tmp_path / "cache", log=tmp_path / "log1")
    log = (tmp_path / "log1").read_text()
    assert rc != 0 and "Unknown preset 'bogus'" in log and "tiny, smoke, paper" in log
    assert "executing chapter" not in log
    preset = root / "params" / "smoke.yaml"
    preset.write_text(preset.read_text().replace("  seed: 0", "  seed: zero", 1))
    rc, _ = run_make(root, "book", "PRESET=smoke", cache=tmp_path / "cache", log=tmp_path / "log2")
    log = (tmp_path / "log2").read_text()
    assert rc != 0 and "Parameter 'seed'" in log and "an integer" in log, log[-2000:]
    assert "executing chapter" not in log
    assert not list((root / "executed").glob("*.ipynb"))


def test_make_chapter_rejects_unknown_chapter(tmp_path, book_tools):
    root = book_tools.copy_repo(tmp_path / "repo")
    rc, _ = book_tools.run_make(root, "chapter", "NAME=no_such_chapter", cache=tmp_path / "cache", log=tmp_path / "log")
    assert rc != 0 and "unknown chapter NAME='no_such_chapter'" in (tmp_path / "log").read_text()
