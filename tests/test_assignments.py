"""Classroom assignments: generation from the chapter, the autograder, and the chapter's markup."""

from __future__ import annotations

import copy
import re
import subprocess
import sys

import nbformat
import pytest

from txmerge import assignments as A

FULL = {e.number: e.points for e in A.EXERCISES}
ZERO = {e.number: 0 for e in A.EXERCISES}


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    paths = A.write_assignments(out)
    return out, paths


def _code(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def _markdown(nb) -> str:
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _with_solution(student, solutions, functions: set[str]):
    """The student copy with the reference cell of every function in ``functions`` swapped in."""
    nb = copy.deepcopy(student)
    reference = {fn: c.source for c in solutions.cells if c.cell_type == "code"
                 for fn in re.findall(r"^def (\w+)\(", c.source, re.M)}
    for cell in nb.cells:
        names = re.findall(r"^def (\w+)\(", cell.source, re.M) if cell.cell_type == "code" else []
        if names and set(names) <= functions:
            cell.source = reference[names[0]]
    return nb


# ------------------------------------------------------------------------------- the chapter
def test_chapter_markup_is_well_formed():
    assert A.check_chapter() == []


def test_every_begin_has_an_end_and_every_exercise_a_dropdown():
    nb = A.read_chapter()
    for cell in nb.cells:
        if cell.cell_type == "code":
            lines = [line.strip() for line in cell.source.split("\n")]
            marks = [line for line in lines if line in (A.BEGIN_MARK, A.END_MARK)]
            assert marks == [A.BEGIN_MARK, A.END_MARK] * (len(marks) // 2), cell.source[:80]
    info = A.inspect_chapter(nb)
    labels = [lab for lab, _ in info.exercises]
    assert len(labels) >= 6
    for lab in labels:
        cls = info.gated_class.get(lab, info.written.get(lab))
        assert cls is not None and "dropdown" in cls.split(), lab
    assert [lab for lab in labels if lab in info.gated] == [e.label for e in A.EXERCISES]
    assert len([lab for lab in labels if lab in info.written]) >= 2


def test_broken_markup_is_reported():
    nb = A.read_chapter()
    cell = next(c for c in nb.cells if c.cell_type == "code" and A.END_MARK in c.source)
    cell.source = cell.source.replace(A.END_MARK, "", 1)
    start = next(c for c in nb.cells if c.cell_type == "markdown" and "{solution-start} ex-heads" in c.source)
    start.source = start.source.replace(":class: dropdown", "")
    problems = A.check_chapter(nb)
    assert any("never closed" in p for p in problems)
    assert any("'ex-heads' is not collapsed" in p for p in problems)


def test_stub_keeps_signature_and_docstring():
    src = 'def f(x):\n    """Doc."""\n    # BEGIN SOLUTION\n    return x\n    # END SOLUTION\n'
    out = A.stub_source(src, 7)
    assert out.startswith('def f(x):\n    """Doc."""\n')
    assert 'raise NotImplementedError("Exercise 7: implement f")' in out and "return x" not in out
    with pytest.raises(Exception, match="malformed"):
        A.stub_source(src.replace("# END SOLUTION", ""), 7)


# ------------------------------------------------------------------------------- generation
def test_generate_student_solutions_autograder(generated):
    out, paths = generated
    student = nbformat.read(out / "student" / "07_exercises.ipynb", 4)
    solutions = nbformat.read(out / "solutions" / "07_exercises.ipynb", 4)
    nbformat.validate(student), nbformat.validate(solutions)
    code, md = _code(student), _markdown(student)
    assert A.BEGIN_MARK not in code and A.END_MARK not in code
    assert "linear_sum_assignment(np.asarray(corr" not in code  # a reference body
    for ex in A.EXERCISES:
        for fn in ex.functions:
            assert re.search(rf"^def {fn}\(", code, re.M), fn
            assert f'raise NotImplementedError("Exercise {ex.number}: implement {fn}")' in code
    assert "solution-start" not in md and "solution-end" not in md and "Model answer" not in md
    assert "The shift cancels" not in md  # explanation inside a solution region
    assert md.count("*Write it here.*") == len(A.WRITTEN)
    assert "```{" not in md and ":::{" not in md  # plain Jupyter Markdown
    assert "**Check.**" in md  # text after solution-end stays
    assert not any(c.get("outputs") for c in student.cells if c.cell_type == "code")
    assert any("parameters" in c.metadata.get("tags", []) for c in student.cells)
    sol_code, sol_md = _code(solutions), _markdown(solutions)
    assert A.BEGIN_MARK not in sol_code and "NotImplementedError" not in sol_code
    assert "linear_sum_assignment(np.asarray(corr" in sol_code
    assert sol_md.count("Model answer") == len(A.WRITTEN) and "The shift cancels" in sol_md
    test_module = (out / "autograder" / "test_07_exercises.py").read_text()
    assert re.findall(r"^def (test_\w+)", test_module, re.M) == [f"test_exercise_{e.number}" for e in A.EXERCISES]
    for name in ("grade.py", "conftest.py", "pytest.ini"):
        assert (out / "autograder" / name).is_file()


def test_cli(tmp_path, capsys):
    assert A.main(["--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "student" / "07_exercises.ipynb").is_file()
    assert A.main(["--check"]) == 0
    assert "0 problem" in capsys.readouterr().out


# ------------------------------------------------------------------------------- grading
@pytest.mark.slow
def test_reference_full_marks_stubs_zero_isolated(generated):
    """The real path: grade.py runs the generated pytest autograder in a subprocess per notebook."""
    out, _ = generated
    proc = subprocess.run(
        [sys.executable, str(out / "autograder" / "grade.py"),
         str(out / "solutions" / "07_exercises.ipynb"), str(out / "student" / "07_exercises.ipynb")],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    reports = proc.stdout.split("Grading ")[1:]
    total = sum(e.points for e in A.EXERCISES)
    assert f"Total {total}/{total}" in reports[0], proc.stdout
    assert f"Total 0/{total}" in reports[1] and reports[1].count("not implemented yet") == len(A.EXERCISES)


def test_grade_api_in_process(generated):
    out, _ = generated
    assert A.grade(out / "solutions" / "07_exercises.ipynb", isolate=False) == FULL
    assert A.grade(out / "student" / "07_exercises.ipynb", isolate=False, seed=3) == ZERO


@pytest.mark.parametrize("number", [1, 2, 4])
def test_one_exercise_solved_scores_exactly_its_points(generated, number):
    out, _ = generated
    student = nbformat.read(out / "student" / "07_exercises.ipynb", 4)
    solutions = nbformat.read(out / "solutions" / "07_exercises.ipynb", 4)
    ex = A.EXERCISES[number - 1]
    path = out / f"partial_{number}.ipynb"
    nbformat.write(_with_solution(student, solutions, set(ex.functions)), path)
    assert A.grade(path, isolate=False) == {**ZERO, number: ex.points}


def test_exercise_three_needs_its_own_matcher(generated):
    """Exercise 3's reference reuses match_ff_units; solved with exercise 2 it scores 2 and 3."""
    out, _ = generated
    student = nbformat.read(out / "student" / "07_exercises.ipynb", 4)
    solutions = nbformat.read(out / "solutions" / "07_exercises.ipynb", 4)
    path = out / "partial_2_3.ipynb"
    nbformat.write(_with_solution(student, solutions, {"match_ff_units", "permute_ff", "match_heads_two_stage"}), path)
    assert A.grade(path, isolate=False) == {**ZERO, 2: 3, 3: 3}


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
    (3, "def match_heads_two_stage(corr, n_heads):\n    from txmerge.matching import match_heads\n"
        "    return match_heads(corr, n_heads).perm\n", "uses the library"),
    (4, "def loss_barrier(losses):\n    return float(np.max(losses) - np.min(losses))\n", "expected"),
]


@pytest.mark.parametrize("number,source,message", MISTAKES)
def test_common_mistakes_lose_the_points(generated, number, source, message):
    out, _ = generated
    nb = nbformat.read(out / "solutions" / "07_exercises.ipynb", 4)
    nb.cells.append(nbformat.v4.new_code_cell(source))  # a later definition replaces the reference
    sub = A.extract_definitions(nb)
    with pytest.raises(Exception) as info:
        A.run_check(number, sub, seed=0)
    assert message in A._failure_message(info.value)


def test_only_definitions_are_executed():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%matplotlib inline\nimport numpy as np\nEPS = 1e-7\nraise RuntimeError('not run')"),
        nbformat.v4.new_code_cell("def loss_barrier(losses):\n    l = np.asarray(losses)\n    return float(l.max() - (l[0] + l[-1]) / 2 + 0 * EPS)\n1 / 0"),
        nbformat.v4.new_code_cell("def broken(:\n    pass"),
        nbformat.v4.new_code_cell("import a_module_that_does_not_exist"),
    ]
    sub = A.extract_definitions(nb)
    assert sub.namespace["loss_barrier"]([1.0, 3.0, 2.0]) == 1.5
    assert any("does not parse" in n for n in sub.notes) and any("ModuleNotFoundError" in n for n in sub.notes)
    assert A.run_check(4, sub)


def test_missing_submission_scores_zero(tmp_path):
    results = A.grade_details(tmp_path / "missing.ipynb", isolate=False)
    assert [r.points for r in results] == [0] * len(A.EXERCISES)
    assert "does not exist" in results[0].message
    assert "Total 0/" in A.format_report(results)
