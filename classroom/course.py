"""The nbgrader course folder: generate the assignment, autograde a folder of submissions, export.

Layout (nbgrader's standard one) under ``--course`` (default ``assignments/``)::

    nbgrader_config.py                      course id, time limit per cell, restore deleted cells
    source/07_exercises/07_exercises.ipynb  the teacher's notebook: solutions, model answers, tests
    source/07_exercises/exercise_checks.py  the checks the test cells run (classroom/checks.py)
    release/07_exercises/                   the student copy (nbgrader generate_assignment)
    submitted/<student>/07_exercises/       submissions (copied in by ``grade``, or nbgrader collect)
    autograded/, feedback/, gradebook.db    nbgrader autograde / generate_feedback
    grades_07_exercises.csv                 nbgrader export, one row per student
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from classroom import ClassroomError
from classroom.chapter import STEM, read_chapter, source_notebook

CHECKS_FILE = Path(__file__).resolve().with_name("checks.py")

CONFIG = '''\
# nbgrader configuration of the txmerge exercises (written by `python -m classroom make`).
c = get_config()
c.CourseDirectory.course_id = "txmerge"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
# a cell that runs longer than this is interrupted; grading goes on with the next cell
c.Execute.timeout = {timeout}
# a deleted test cell is put back (from the source) and graded
c.OverwriteCells.add_missing_cells = True
'''


def nbgrader(course: Path, *args: str) -> subprocess.CompletedProcess:
    """Run ``nbgrader ARGS`` in the course folder with this Python; raise ClassroomError on failure."""
    # nbgrader runs `alembic` (its database migrations) from PATH: put this Python's scripts first
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, capture_output=True, text=True, env=env)
    errors = [line for line in (proc.stdout + proc.stderr).splitlines() if "ERROR" in line or "Error" in line]
    if proc.returncode != 0:
        tail = " | ".join((errors or (proc.stdout + proc.stderr).strip().splitlines())[-3:])
        raise ClassroomError(f"nbgrader {args[0]} failed (exit {proc.returncode}): {tail}")
    return proc


def make(course: str | Path, chapter: str | Path, timeout: int = 120) -> dict[str, Path]:
    """Write the course folder from the chapter and generate the student copy with nbgrader."""
    import nbformat

    nb = source_notebook(read_chapter(chapter))  # raises before anything is written
    course = Path(course)
    src = course / "source" / STEM
    src.mkdir(parents=True, exist_ok=True)
    (course / "nbgrader_config.py").write_text(CONFIG.format(timeout=int(timeout)))
    nbformat.write(nb, src / f"{STEM}.ipynb")
    shutil.copyfile(CHECKS_FILE, src / "exercise_checks.py")
    nbgrader(course, "generate_assignment", STEM, "--force", "--log-level=WARN")
    student = course / "release" / STEM / f"{STEM}.ipynb"
    if not student.is_file():
        raise ClassroomError(f"nbgrader generate_assignment wrote no {student}; see its output above.")
    return {"source": src / f"{STEM}.ipynb", "student": student, "checks": src / "exercise_checks.py"}


def _grade_ids(path: Path) -> set[str]:
    try:
        nb = json.loads(path.read_text())
        return {c.get("metadata", {}).get("nbgrader", {}).get("grade_id") for c in nb.get("cells", [])} - {None}
    except (OSError, ValueError, AttributeError) as exc:
        raise ClassroomError(f"{path} is not a readable notebook ({type(exc).__name__}); ask for the .ipynb saved by Jupyter.") from None


def grade(course: str | Path, folder: str | Path, timeout: int | None = None) -> Path:
    """Autograde every ``FOLDER/<student>.ipynb`` and export ``grades_07_exercises.csv``; returns the CSV.

    Checks the submissions before grading anything: a folder without notebooks, or a notebook that
    carries none of this assignment's cells, is an error and no report is written.
    """
    course, folder = Path(course), Path(folder)
    source = course / "source" / STEM / f"{STEM}.ipynb"
    if not (course / "gradebook.db").is_file() or not source.is_file():
        raise ClassroomError(f"{course} holds no generated assignment; run `make assignments` (python -m classroom make) first.")
    if not folder.is_dir():
        raise ClassroomError(f"{folder} is not a folder; pass the folder that holds the submitted <student>.ipynb files.")
    subs = sorted(folder.glob("*.ipynb"))
    if not subs:
        raise ClassroomError(f"no notebooks (*.ipynb) in {folder}; put one <student>.ipynb per student there.")
    ours = _grade_ids(source)
    for path in subs:
        if not _grade_ids(path) & ours:
            raise ClassroomError(f"{path} is not a submission of {STEM}: none of its cells is a cell of this assignment (from another assignment?); remove it and grade again.")
    for path in subs:
        dest = course / "submitted" / path.stem / STEM
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        shutil.copyfile(path, dest / f"{STEM}.ipynb")
    extra = [f"--Execute.timeout={int(timeout)}"] if timeout else []
    students = [f"--student={p.stem}" for p in subs] if len(subs) == 1 else []
    nbgrader(course, "autograde", STEM, "--force", "--log-level=WARN", *students, *extra)
    nbgrader(course, "generate_feedback", STEM, "--force", "--log-level=WARN", *students)
    csv = course / f"grades_{STEM}.csv"
    nbgrader(course, "export", f"--to={csv.name}", f"--assignment={STEM}", "--log-level=WARN")
    return csv


def scores(course: str | Path) -> dict[str, dict[str, float]]:
    """``{student: {grade_id: points}}`` of the autograded cells, read from the gradebook."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{Path(course).resolve() / 'gradebook.db'}") as gb:
        out: dict[str, dict[str, float]] = {}
        for sub in gb.assignment_submissions(STEM):
            for nb in sub.notebooks:
                out.setdefault(sub.student.id, {}).update({g.name: g.score for g in nb.grades})
        return out


def report(course: str | Path) -> str:
    """A per-student table of the autograded exercises (points / max) for printing."""
    from classroom.checks import EXERCISES

    lines = []
    for student, grades in sorted(scores(course).items()):
        parts = [f"Exercise {e.number}: {grades.get(f'ex{e.number}_tests', 0):g}/{e.points}" for e in EXERCISES]
        total = sum(grades.get(f"ex{e.number}_tests", 0) for e in EXERCISES)
        lines.append(f"{student}: " + ", ".join(parts) + f"; autograded total {total:g}/{sum(e.points for e in EXERCISES)}")
    return "\n".join(lines)
