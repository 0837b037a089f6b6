"""Classroom assignment on nbgrader: the chapter -> nbgrader notebook, the checks, grading.

The fast tests build the course folder once (``python -m classroom make``: nbgrader
generate_assignment) and run the exercise checks in-process; the slow test autogrades real
submissions with ``nbgrader autograde`` (solutions, stubs, a mistake, a crash, an endless loop, a
deleted test cell, a homework variant).
"""

from __future__ import annotations

import copy
import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from classroom import ClassroomError, checks
from classroom import course as C
from classroom.chapter import BEGIN, END, STEM, marker_problems, read_chapter, source_notebook

REPO = Path(__file__).resolve().parents[1]
CHAPTER = REPO / "notebooks" / f"{STEM}.md"
PRELUDE = "import copy\nimport numpy as np\nimport torch\nfrom scipy.optimize import linear_sum_assignment\n"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("course")
    paths = C.make(out, CHAPTER)
    return out, paths


def _nbg(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _namespace(nb) -> dict:
    """The functions of a notebook's answer cells, defined as the kernel would (markers are comments)."""
    ns: dict = {"__name__": "__main__"}
    exec(PRELUDE, ns)  # noqa: S102
    for cell in nb.cells:
        if cell.cell_type == "code" and _nbg(cell).get("solution"):
            exec(cell.source, ns)  # noqa: S102
    return ns


# ------------------------------------------------------------------------------- the chapter
def test_chapter_becomes_an_nbgrader_notebook():
    nb = source_notebook(read_chapter(CHAPTER))
    cells = {_nbg(c)["grade_id"]: c for c in nb.cells if _nbg(c)}
    for ex in checks.EXERCISES:
        test = cells[f"ex{ex.number}_tests"]
        assert _nbg(test) == {"grade": True, "grade_id": f"ex{ex.number}_tests", "locked": True,
                              "points": ex.points, "schema_version": 3, "solution": False}
        assert f"exercise_checks.check({ex.number}, globals()" in test.source
        answers = "\n".join(c.source for gid, c in cells.items() if gid.startswith(f"ex{ex.number}_solution"))
        for fn in ex.functions:
            assert re.search(rf"^def {fn}\(", answers, re.M), fn
        assert answers.count(BEGIN) == answers.count(END) >= len(ex.functions)
    written = [c for gid, c in cells.items() if gid.endswith("_answer")]
    assert [_nbg(c)["points"] for c in written] == list(checks.WRITTEN.values())
    assert all(c.cell_type == "markdown" and "Model answer" in c.source for c in written)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "```{" not in md and ":::{" not in md and "solution-start" not in md
    assert "**Check.**" in md and "The shift cancels" not in md  # explanations moved into the solution
    assert "# Why: The shift cancels" in cells["ex1_solution_0"].source
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


def test_unbalanced_markers_are_one_error_naming_the_cell():
    nb = read_chapter(CHAPTER)
    idx, cell = next((i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and "def loss_barrier" in c.source)
    cell.source = cell.source.replace(END, "", 1)
    with pytest.raises(ClassroomError) as info:
        source_notebook(nb)
    msg = str(info.value)
    assert f"code cell {idx}" in msg and "def loss_barrier(losses):" in msg and "never closed" in msg
    assert msg.count("\n") == 0
    assert marker_problems(f"{END}\nx = 1") == [f"line 1: {END} without a {BEGIN}"]
    assert "malformed" in marker_problems("# begin solution here")[0]


def test_unclosed_solution_region_is_an_error():
    nb = read_chapter(CHAPTER)
    cell = next(c for c in nb.cells if c.cell_type == "markdown" and "{solution-end}" in c.source)
    cell.source = cell.source.replace("```{solution-end}\n```", "")
    with pytest.raises(ClassroomError, match="solution-start"):
        source_notebook(nb)


def test_cli_bad_chapter_writes_nothing(tmp_path):
    text = CHAPTER.read_text().replace("    # END SOLUTION\n", "", 1)
    (tmp_path / "bad.md").write_text(text)
    proc = subprocess.run([sys.executable, "-m", "classroom", "make", "--chapter", str(tmp_path / "bad.md"),
                           "--course", str(tmp_path / "course")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: unbalanced solution markers in code cell ") and "correlation_from_sums" in proc.stderr
    assert not (tmp_path / "course").exists()


# ------------------------------------------------------------------------------- generation
def test_make_writes_course_and_student_copy(made):
    out, paths = made
    source = nbformat.read(paths["source"], 4)
    student = nbformat.read(paths["student"], 4)
    code = "\n".join(c.source for c in student.cells if c.cell_type == "code")
    assert BEGIN not in code and END not in code and "# Why:" not in code
    assert "np.asarray(corr, dtype=np.float64), maximize=True" not in code  # a reference body
    assert code.count("raise NotImplementedError()") == sum(len(e.functions) for e in checks.EXERCISES)
    assert sum(c.source.strip() == "YOUR ANSWER HERE" for c in student.cells if c.cell_type == "markdown") == len(checks.WRITTEN)
    assert "Model answer" not in "\n".join(c.source for c in student.cells)
    assert "np.asarray(corr, dtype=np.float64), maximize=True" in "\n".join(c.source for c in source.cells)
    assert (out / "release" / STEM / "exercise_checks.py").read_text() == (REPO / "classroom" / "checks.py").read_text()
    assert "c.Execute.timeout = 120" in (out / "nbgrader_config.py").read_text()
    assert (out / "gradebook.db").is_file()


# ------------------------------------------------------------------------------- the checks
def test_reference_passes_every_check_and_stubs_fail(made):
    _, paths = made
    ref = _namespace(nbformat.read(paths["source"], 4))
    stub = _namespace(nbformat.read(paths["student"], 4))
    for ex in checks.EXERCISES:
        assert checks.run_check(ex.number, ref, seed=3)
        with pytest.raises(NotImplementedError):
            checks.run_check(ex.number, stub, seed=3)


MISTAKES = [
    (1, "def correlation_from_sums(n, sum_z, sum_zz, d):\n    cov = sum_zz / n\n"
        "    std = np.sqrt(np.clip(np.diag(cov), 0, None))\n"
        "    return cov[:d, d:] / np.maximum(np.outer(std[:d], std[d:]), 1e-7)\n", "differs"),
    (1, "def correlation_from_sums(n, sum_z, sum_zz, d):\n    m = sum_z / n\n    cov = sum_zz / n - np.outer(m, m)\n"
        "    s = np.sqrt(np.diag(cov))\n    with np.errstate(all='ignore'):\n"
        "        return cov[:d, d:] / np.outer(s[:d], s[d:])\n", "NaN"),
    (2, "def match_ff_units(corr):\n    return torch.as_tensor(linear_sum_assignment(corr)[1])\n", "optimum"),
    (2, "def permute_ff(model, layer, perm):\n    new = copy.deepcopy(model)\n"
        "    b = new.base_model.encoder.layer[layer]\n    with torch.no_grad():\n"
        "        b.intermediate.dense.weight.copy_(b.intermediate.dense.weight[perm])\n"
        "        b.output.dense.weight.copy_(b.output.dense.weight[:, perm])\n    return new\n", "bias differs"),
    (2, "def permute_ff(model, layer, perm):\n    b = model.base_model.encoder.layer[layer]\n    with torch.no_grad():\n"
        "        for w in (b.intermediate.dense.weight, b.intermediate.dense.bias):\n            w.copy_(w[perm])\n"
        "        b.output.dense.weight.copy_(b.output.dense.weight[:, perm])\n    return model\n", "copy"),
    (3, "def match_heads_two_stage(corr, n_heads):\n    return match_ff_units(corr)\n", "splits heads"),
    (3, "def match_heads_two_stage(corr, n_heads):\n    from txmerge.methods.matchers.correlation import match_heads\n"
        "    return match_heads(corr, n_heads).perm\n", "uses the library"),
    (3, "from txmerge.methods.matchers.correlation import match_heads\n\ndef _helper(corr, h):\n    return match_heads(corr, h).perm\n\n"
        "def match_heads_two_stage(corr, n_heads):\n    return _helper(corr, n_heads)\n", "uses the library"),
    (4, "def loss_barrier(losses):\n    return float(np.max(losses) - np.min(losses))\n", "expected"),
]


@pytest.mark.parametrize("number,source,message", MISTAKES)
def test_common_mistakes_lose_the_points(made, number, source, message):
    _, paths = made
    ns = _namespace(nbformat.read(paths["source"], 4))
    exec(source, ns)  # noqa: S102  (a later definition replaces the reference, as in the kernel)
    with pytest.raises(checks.CheckFailed, match=message):
        checks.run_check(number, ns, seed=0)


def test_an_endless_loop_fails_its_check_only(made, monkeypatch):
    _, paths = made
    ns = _namespace(nbformat.read(paths["source"], 4))
    exec("def loss_barrier(losses):\n    while True:\n        pass\n", ns)  # noqa: S102
    monkeypatch.setattr(checks, "TIME_LIMIT", 1.0)
    with pytest.raises(checks.CheckFailed, match="longer than 1 s"):
        checks.run_check(4, ns)
    assert checks.run_check(1, ns)


# ------------------------------------------------------------------------------- bad input
def test_grading_an_empty_folder_is_an_error(made, tmp_path):
    out, _ = made
    with pytest.raises(ClassroomError, match=r"no notebooks \(\*\.ipynb\) in"):
        C.grade(out, tmp_path)
    assert not list(out.glob("grades_*.csv")) and not (out / "submitted").exists()


def test_grading_another_assignment_is_an_error(made, tmp_path):
    out, paths = made
    nbformat.write(nbformat.read(paths["student"], 4), tmp_path / "alice.ipynb")
    other = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    other.cells[0].metadata["nbgrader"] = {"grade_id": "q1", "solution": True, "grade": False, "locked": False, "schema_version": 3}
    nbformat.write(other, tmp_path / "bob.ipynb")
    with pytest.raises(ClassroomError, match=r"bob\.ipynb is not a submission of 07_exercises"):
        C.grade(out, tmp_path)
    assert not list(out.glob("grades_*.csv")) and not (out / "submitted").exists()


# ------------------------------------------------------------------------------- grading
@pytest.mark.slow
def test_autograde_submissions(made, tmp_path):
    """nbgrader autograde on real submissions: full marks, zero, lost points only where wrong."""
    out, paths = made
    source = nbformat.read(paths["source"], 4)
    subs = tmp_path / "subs"
    subs.mkdir()

    def save(name, nb):
        nbformat.write(nb, subs / f"{name}.ipynb")

    def edited(fn, new_source=None, insert=None, drop=None):
        nb = copy.deepcopy(source)
        for cell in nb.cells:
            if fn and cell.source.startswith(f"def {fn}("):
                cell.source = new_source
        if insert:
            nb.cells.insert(3, nbformat.v4.new_code_cell(insert))
        if drop:
            nb.cells = [c for c in nb.cells if _nbg(c).get("grade_id") != drop]
        return nb

    # the reference as a homework variant: papermill injects seed 7 (the checks draw from it)
    subprocess.run([sys.executable, "-m", "papermill", str(paths["source"]), str(subs / "variant.ipynb"),
                    "--prepare-only", "-p", "seed", "7", "-p", "n_tokens", "256"], check=True, capture_output=True)
    save("stub", nbformat.read(paths["student"], 4))
    save("mistake", edited("loss_barrier", "def loss_barrier(losses):\n    return float(np.max(losses) - np.min(losses))\n"))
    save("crash", edited(None, insert="raise RuntimeError('a cell that fails')"))
    save("endless", edited("loss_barrier", "def loss_barrier(losses):\n    while True:\n        pass\n"))
    save("deleted", edited(None, drop="ex1_tests"))
    env_before = os.environ.get("EXERCISE_TIME_LIMIT")
    os.environ["EXERCISE_TIME_LIMIT"] = "20"
    try:
        csv_path = C.grade(out, subs, timeout=60)
    finally:
        if env_before is None:
            del os.environ["EXERCISE_TIME_LIMIT"]
        else:
            os.environ["EXERCISE_TIME_LIMIT"] = env_before
    got = {s: [g.get(f"ex{e.number}_tests") for e in checks.EXERCISES] for s, g in C.scores(out).items()}
    full = [e.points for e in checks.EXERCISES]
    assert got["variant"] == full
    assert got["stub"] == [0, 0, 0, 0]
    assert got["mistake"] == full[:3] + [0]
    assert got["crash"] == full
    assert got["endless"] == full[:3] + [0]
    assert got["deleted"] == full
    rows = {r["student_id"]: r for r in csv.DictReader(csv_path.open())}
    assert sorted(rows) == sorted(got) and float(rows["stub"]["score"]) == 0 and float(rows["variant"]["score"]) == sum(full)
    assert (out / "feedback" / "endless" / STEM / f"{STEM}.html").is_file()
