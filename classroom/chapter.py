"""Read the exercises chapter and build the nbgrader source notebook from it.

In a solution code cell the signature and docstring are written out and the body sits between
``# BEGIN SOLUTION`` and ``# END SOLUTION`` (nbgrader's own markers); the cell sits between
sphinx-exercise's ``{solution-start} <label>`` and ``{solution-end}``. Written questions have a
``{solution} <label>`` dropdown with the model answer. :func:`source_notebook` maps these onto
nbgrader cells: solution cells become "autograded answer" cells, each graded exercise gets a
locked "autograder tests" cell after the chapter's own check, and each model answer becomes a
"manually graded answer" cell. Explanations inside a solution region go into the solution cell as
comments inside the solution markers, so nbgrader removes them from the student copy.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from classroom import ClassroomError
from classroom.checks import EXERCISES, WRITTEN

STEM = "07_exercises"
BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*?)\s*$")
_ROLE = re.compile(r"\{[\w:-]+\}`([^`]*)`")


@dataclass
class Directive:
    """A top-level fenced MyST directive inside one Markdown cell (lines [start, end])."""

    name: str
    arg: str
    options: dict[str, str]
    body: str
    start: int
    end: int


def parse_directives(text: str) -> list[Directive]:
    """Top-level fenced directives of a Markdown text; an unclosed one runs to the end (as in MyST)."""
    lines, out, i = text.split("\n"), [], 0
    while i < len(lines):
        m = _OPEN.match(lines[i])
        if not m:
            i += 1
            continue
        fence = m.group("fence")
        close = re.compile(rf"^{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        inner, options, k = lines[i + 1:j], {}, 0
        while k < len(inner) and re.match(r"^:[\w-]+:", inner[k]):
            key, _, value = inner[k][1:].partition(":")
            options[key] = value.strip()
            k += 1
        out.append(Directive(m.group("name"), m.group("arg"), options, "\n".join(inner[k:]).strip("\n"), i, min(j, len(lines) - 1)))
        i = j + 1
    return out


def read_chapter(path: str | Path):
    """The chapter as an nbformat notebook (read with jupytext)."""
    import jupytext

    path = Path(path)
    if not path.is_file():
        raise ClassroomError(f"the exercises chapter {path} is missing; restore notebooks/{STEM}.md from git.")
    return jupytext.read(path)


def marker_problems(source: str) -> list[str]:
    """Unbalanced or malformed solution markers in one code cell (empty when well-formed)."""
    problems, begin = [], None
    for n, line in enumerate(source.split("\n"), start=1):
        s = line.strip()
        if s == BEGIN:
            if begin is not None:
                problems.append(f"line {n}: {BEGIN} inside an open solution block (missing {END})")
            begin = n
        elif s == END:
            if begin is None:
                problems.append(f"line {n}: {END} without a {BEGIN}")
            begin = None
        elif "begin solution" in s.lower() or "end solution" in s.lower():
            problems.append(f"line {n}: malformed marker {s!r}; write exactly {BEGIN!r} / {END!r} on its own line")
    if begin is not None:
        problems.append(f"line {begin}: {BEGIN} is never closed by {END}")
    return problems


def _where(idx: int, source: str) -> str:
    first = next((line for line in source.split("\n") if line.strip()), "")
    return f"code cell {idx} (the one starting {first[:60]!r})"


def _split(nb) -> list[tuple[object, str | None]]:
    """Cells with the label of the solution region they sit in (None outside); Markdown cells that
    straddle a ``{solution-start}``/``{solution-end}`` fence are cut there."""
    import nbformat

    out, label = [], None
    for idx, cell in enumerate(nb.cells):
        cell.metadata["chapter_index"] = idx
        if cell.cell_type != "markdown":
            out.append((cell, label))
            continue
        lines, pos = cell.source.split("\n"), 0
        for d in parse_directives(cell.source):
            if d.name == "solution-start":
                if label is not None:
                    raise ClassroomError(f"markdown cell {idx}: solution-start {d.arg!r} inside the open solution of {label!r}; close it with solution-end first.")
                out.append((nbformat.v4.new_markdown_cell("\n".join(lines[pos:d.start])), label))
                pos, label = d.end + 1, d.arg
            elif d.name == "solution-end":
                if label is None:
                    raise ClassroomError(f"markdown cell {idx}: solution-end without a solution-start; fix notebooks/{STEM}.md.")
                out.append((nbformat.v4.new_markdown_cell("\n".join(lines[pos:d.start])), label))
                pos, label = d.end + 1, None
        out.append((nbformat.v4.new_markdown_cell("\n".join(lines[pos:])), label))
    if label is not None:
        raise ClassroomError(f"solution-start {label!r} is never closed by solution-end; fix notebooks/{STEM}.md.")
    return [(c, lab) for c, lab in out if c.cell_type != "markdown" or c.source.strip()]


def _plain(text: str) -> str:
    """MyST roles -> their text; ``(label)=`` targets dropped."""
    text = "\n".join(line for line in text.split("\n") if not re.match(r"^\(.+\)=\s*$", line))
    return _ROLE.sub(lambda m: re.sub(r"\s*<[^>]*>$", "", m.group(1)), text).strip("\n")


def _nbgrader(cell, grade_id: str, *, solution: bool, grade: bool, points: int = 0, locked: bool = False):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution}
    if grade:
        meta["points"] = points
    cell.metadata["nbgrader"] = meta
    return cell


def test_cell_source(number: int) -> str:
    """The locked autograder test cell of exercise ``number``."""
    ex = EXERCISES[number - 1]
    return (
        f"# Autograder test of Exercise {number} ({ex.points} points): random cases against txmerge,\n"
        f"# drawn from the notebook's seed (a homework variant's seed). Do not edit or delete this cell.\n"
        "import exercise_checks\n\n"
        f"exercise_checks.check({number}, globals(), seed=globals().get('seed', 0))"
    )


def source_notebook(nb):
    """The nbgrader source notebook (solutions in, nbgrader metadata set) built from the chapter.

    Raises ClassroomError naming the first cell whose markup is wrong.
    """
    import nbformat

    for idx, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            problems = marker_problems(cell.source)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise ClassroomError(f"unbalanced solution markers in {_where(idx, cell.source)} of notebooks/{STEM}.md: {problems[0]}{more}.")
    numbers = {ex.label: ex.number for ex in EXERCISES}
    labels = [d.options.get("label") for c in nb.cells if c.cell_type == "markdown" for d in parse_directives(c.source) if d.name == "exercise"]
    written = [lab for lab in labels if lab not in numbers]
    if labels[: len(EXERCISES)] != [ex.label for ex in EXERCISES] or sorted(written) != sorted(WRITTEN):
        raise ClassroomError(f"the chapter's exercises {labels} do not match classroom.checks (graded {[e.label for e in EXERCISES]}, written {list(WRITTEN)}); update classroom/checks.py.")
    number_of = {lab: k for k, lab in enumerate(labels, start=1)}
    cells, defined, pending = [], {}, None
    for cell, label in _split(nb):
        if cell.cell_type == "code" and label is not None:
            if label not in numbers:
                raise ClassroomError(f"{_where(cell.metadata['chapter_index'], cell.source)} sits in the solution of {label!r}, which is not a graded exercise.")
            if BEGIN not in cell.source:
                raise ClassroomError(f"{_where(cell.metadata['chapter_index'], cell.source)} is a solution without {BEGIN} / {END} markers.")
            n = numbers[label]
            new = nbformat.v4.new_code_cell(cell.source)
            cells.append(_nbgrader(new, f"ex{n}_solution_{sum(1 for c in cells if c.metadata.get('nbgrader', {}).get('grade_id', '').startswith(f'ex{n}_solution'))}", solution=True, grade=False))
            defined.setdefault(label, set()).update(re.findall(r"^def (\w+)\(", cell.source, re.M))
            pending = n
        elif cell.cell_type == "markdown" and label is not None:  # an explanation: into the solution, as comments
            last = next((c for c in reversed(cells) if c.metadata.get("nbgrader", {}).get("solution")), None)
            if last is None:
                raise ClassroomError(f"markdown cell {cell.metadata.get('chapter_index', '?')}: text before the solution code of {label!r}; move it after the code cell.")
            lines = last.source.split("\n")
            at = max(i for i, line in enumerate(lines) if line.strip() == BEGIN)
            indent = re.match(r"^\s*", lines[at]).group(0)
            comment = [f"{indent}# {w}" for w in textwrap.wrap("Why: " + " ".join(_plain(cell.source).split()), 92)]
            last.source = "\n".join(lines[: at + 1] + comment + lines[at + 1:])
        elif cell.cell_type == "markdown":
            cells += _markdown_cells(cell.source, number_of)
        else:
            new = nbformat.v4.new_code_cell(cell.source)
            if cell.metadata.get("tags"):
                new.metadata["tags"] = list(cell.metadata["tags"])
            cells.append(new)
            if pending is not None and label is None and not any(c.metadata.get("nbgrader", {}).get("grade_id") == f"ex{pending}_tests" for c in cells):
                cells.append(_nbgrader(nbformat.v4.new_code_cell(test_cell_source(pending)), f"ex{pending}_tests", solution=False, grade=True, points=EXERCISES[pending - 1].points, locked=True))
                pending = None
    for ex in EXERCISES:
        missing = set(ex.functions) - defined.get(ex.label, set())
        if missing:
            raise ClassroomError(f"Exercise {ex.number}: no marked solution defines {', '.join(sorted(missing))} between solution-start {ex.label} and solution-end.")
    out = nbformat.v4.new_notebook()
    out.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    out.metadata["language_info"] = {"name": "python"}
    out.cells = [nbformat.v4.new_markdown_cell(INTRO)] + cells
    return out


INTRO = """\
**Exercises: implement the method yourself** (student copy). Write each function where it says
`# YOUR CODE HERE` (keep the names and signatures: the autograder calls them) and run the cells
below it: the chapter's check prints one line, and the autograder test cell runs random cases.
Write your answers to the written questions in the cells that say *YOUR ANSWER HERE*."""


def _markdown_cells(text: str, number_of: dict[str, int]) -> list:
    """Plain Jupyter Markdown for one chapter cell; a written question's model answer becomes a
    manually graded answer cell (nbgrader replaces it with YOUR ANSWER HERE in the student copy)."""
    import nbformat

    lines, pos, buf, out = text.split("\n"), 0, [], []

    def flush():
        md = _plain("\n".join(buf))
        if md.strip():
            out.append(nbformat.v4.new_markdown_cell(md))
        buf.clear()

    for d in parse_directives(text):
        buf += lines[pos:d.start]
        pos = d.end + 1
        if d.name == "exercise":
            buf += [f"**Exercise {number_of[d.options['label']]} ({d.arg}).**", "", d.body]
        elif d.name == "solution":
            n = number_of.get(d.arg)
            if n is None or d.arg not in WRITTEN:
                raise ClassroomError(f"a {{solution}} dropdown for {d.arg!r}, which is not a written question of classroom.checks.WRITTEN.")
            buf.append(f"**Your answer to Exercise {n}** ({WRITTEN[d.arg]} points, graded by hand):")
            flush()
            out.append(_nbgrader(nbformat.v4.new_markdown_cell(_plain(d.body)), f"ex{n}_answer", solution=True, grade=True, points=WRITTEN[d.arg]))
        else:
            title = d.arg or d.name.capitalize()
            buf += [f"**{title}.**", "", d.body]
    buf += lines[pos:]
    flush()
    return out
