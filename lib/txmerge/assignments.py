"""Classroom assignments generated from the exercises chapter: student copies, solutions, autograder.

One source of truth: the solutions live in ``notebooks/07_exercises.md``. In a solution code cell the
function signature and docstring are written out and the body sits between two marker comments::

    def loss_barrier(losses):
        \"\"\"...\"\"\"
        # BEGIN SOLUTION
        ...
        # END SOLUTION

and the solution is wrapped, for the book, in sphinx-exercise's gated directives
``{solution-start} <label>`` (``:class: dropdown``) ... ``{solution-end}``; written questions use a
``{solution} <label>`` dropdown. ``python -m txmerge.assignments [--out assignments]`` writes

- ``student/07_exercises.ipynb``: every marked body replaced by
  ``raise NotImplementedError("Exercise N: implement NAME")``, solution text removed, an answer
  placeholder under each written question;
- ``solutions/07_exercises.ipynb``: the reference (MyST directives turned into plain Markdown);
- ``autograder/``: ``test_07_exercises.py`` (one pytest test per exercise), ``conftest.py``,
  ``pytest.ini`` and ``grade.py`` (``python grade.py submission.ipynb [more.ipynb ...]``).

Grading (:func:`grade`, :func:`grade_details`) reads a submitted notebook, executes only its
imports, function and class definitions and literal constants (never the whole notebook), and runs
the checks of :data:`EXERCISES` against the library: by default through pytest in a subprocess (a
student's crash, ``sys.exit`` or endless loop cannot take the grader down), or in-process with
``isolate=False``. An exercise scores its points when every case passes, else 0.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import re
import subprocess
import sys
import tempfile
import textwrap
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from txmerge.errors import TxmergeError

CHAPTER_STEM = "07_exercises"
BEGIN_MARK = "# BEGIN SOLUTION"
END_MARK = "# END SOLUTION"
SUBMISSION_MODULE = "__submission__"


@dataclass(frozen=True)
class Exercise:
    """A graded coding exercise: its number in the chapter, sphinx-exercise label, functions, points."""

    number: int
    label: str
    title: str
    functions: tuple[str, ...]
    points: int


#: The graded exercises, in chapter order (the chapter's first four ``{exercise}`` directives).
EXERCISES: tuple[Exercise, ...] = (
    Exercise(1, "ex-corr", "Correlation from streaming sums", ("correlation_from_sums",), 2),
    Exercise(2, "ex-ff", "Match FF units and apply the permutation", ("match_ff_units", "permute_ff"), 3),
    Exercise(3, "ex-heads", "Two-stage head matching", ("match_heads_two_stage",), 3),
    Exercise(4, "ex-barrier", "Loss barrier of a curve", ("loss_barrier",), 2),
)
#: Written questions (graded by hand; model answers in the solutions notebook).
WRITTEN: tuple[str, ...] = ("ex-residual", "ex-glue-dip", "ex-ignore-heads")


def repo_root() -> Path:
    """The repository root (``lib/txmerge/..``/..)."""
    return Path(__file__).resolve().parents[2]


def chapter_path() -> Path:
    """``notebooks/07_exercises.md`` in the repository."""
    return repo_root() / "notebooks" / f"{CHAPTER_STEM}.md"


def read_chapter(path: str | os.PathLike | None = None):
    """The chapter as an nbformat notebook (read with jupytext)."""
    import jupytext

    path = Path(path) if path is not None else chapter_path()
    if not path.is_file():
        raise TxmergeError(f"the exercises chapter {path} is missing; restore notebooks/{CHAPTER_STEM}.md from git.")
    return jupytext.read(path)


# ------------------------------------------------------------------------------- MyST parsing
_OPEN = re.compile(r"^(?P<fence>`{3,}|:{3,})\{(?P<name>[\w:-]+)\}[ \t]*(?P<arg>.*?)\s*$")


@dataclass
class Directive:
    """A top-level fenced MyST directive inside one Markdown cell (line numbers: [start, end])."""

    name: str
    arg: str
    options: dict[str, str]
    body: str
    start: int
    end: int


def parse_directives(text: str) -> list[Directive]:
    """Top-level fenced directives (```` ```{name} arg ```` or ``:::{name} arg``) of a Markdown text.

    An unclosed directive runs to the end of the text (as in MyST).
    """
    lines = text.split("\n")
    out: list[Directive] = []
    i = 0
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
        inner = lines[i + 1:j]
        options: dict[str, str] = {}
        k = 0
        while k < len(inner) and re.match(r"^:[\w-]+:", inner[k]):
            key, _, value = inner[k][1:].partition(":")
            options[key] = value.strip()
            k += 1
        body = "\n".join(inner[k:]).strip("\n")
        out.append(Directive(m.group("name"), m.group("arg"), options, body, i, min(j, len(lines) - 1)))
        i = j + 1
    return out


def _cell_text(cell) -> str:
    src = cell.source
    return "".join(src) if isinstance(src, list) else src


@dataclass
class ChapterInfo:
    """What the chapter holds: exercise labels in order (with titles), solutions by label, marker blocks."""

    exercises: list[tuple[str, str]] = field(default_factory=list)  # (label, title) in order
    gated: dict[str, list[int]] = field(default_factory=dict)  # label -> code cell indices inside
    gated_class: dict[str, str] = field(default_factory=dict)  # label -> :class: of solution-start
    written: dict[str, str] = field(default_factory=dict)  # label -> :class: of {solution}
    defined_in_solutions: dict[str, str] = field(default_factory=dict)  # function -> label
    problems: list[str] = field(default_factory=list)

    def number_of(self, label: str) -> int:
        """Exercise number of ``label`` (its position among the chapter's exercises, from 1)."""
        for k, (lab, _title) in enumerate(self.exercises, start=1):
            if lab == label:
                return k
        raise TxmergeError(f"no exercise with label {label!r} in the chapter; add ```{{exercise}} ... :label: {label}.")


def _marker_blocks(source: str) -> tuple[list[tuple[int, int]], list[str]]:
    """(begin_line, end_line) pairs of the solution markers in a code cell, and problems found."""
    blocks, problems, begin = [], [], None
    for n, line in enumerate(source.split("\n")):
        stripped = line.strip()
        if stripped == BEGIN_MARK:
            if begin is not None:
                problems.append(f"line {n + 1}: {BEGIN_MARK} inside an open solution block (missing {END_MARK})")
            begin = n
        elif stripped == END_MARK:
            if begin is None:
                problems.append(f"line {n + 1}: {END_MARK} without a {BEGIN_MARK}")
            else:
                blocks.append((begin, n))
                begin = None
        elif BEGIN_MARK.lower() in stripped.lower() or END_MARK.lower() in stripped.lower():
            problems.append(f"line {n + 1}: malformed solution marker {stripped!r}; write exactly {BEGIN_MARK!r} / {END_MARK!r} on its own line")
    if begin is not None:
        problems.append(f"line {begin + 1}: {BEGIN_MARK} is never closed by {END_MARK}")
    return blocks, problems


def _enclosing_function(source: str, line: int) -> str | None:
    """Name of the innermost top-level ``def`` whose body contains 0-based ``line``."""
    name = None
    for n, text in enumerate(source.split("\n")[: line + 1]):
        m = re.match(r"^def\s+(\w+)\s*\(", text)
        if m:
            name = m.group(1)
    return name


def inspect_chapter(nb) -> ChapterInfo:
    """Walk the chapter and collect exercises, solution regions and marker problems."""
    info = ChapterInfo()
    open_label: str | None = None
    for idx, cell in enumerate(nb.cells):
        text = _cell_text(cell)
        if cell.cell_type == "code":
            blocks, problems = _marker_blocks(text)
            info.problems += [f"code cell {idx}: {p}" for p in problems]
            if blocks and open_label is None:
                info.problems.append(f"code cell {idx}: solution markers outside a {{solution-start}}/{{solution-end}} region")
            if open_label is not None:
                info.gated.setdefault(open_label, []).append(idx)
                for b, _e in blocks:
                    fn = _enclosing_function(text, b)
                    if fn is None:
                        info.problems.append(f"code cell {idx}: solution block at line {b + 1} is not inside a top-level def")
                    else:
                        info.defined_in_solutions[fn] = open_label
            continue
        if cell.cell_type != "markdown":
            continue
        for d in parse_directives(text):
            if d.name == "exercise":
                label = d.options.get("label")
                if not label:
                    info.problems.append(f"markdown cell {idx}: exercise {d.arg!r} has no :label:")
                else:
                    info.exercises.append((label, d.arg))
            elif d.name == "solution-start":
                if open_label is not None:
                    info.problems.append(f"markdown cell {idx}: solution-start {d.arg!r} inside the open solution of {open_label!r}")
                open_label = d.arg
                info.gated_class[d.arg] = d.options.get("class", "")
                info.gated.setdefault(d.arg, [])
            elif d.name == "solution-end":
                if open_label is None:
                    info.problems.append(f"markdown cell {idx}: solution-end without solution-start")
                open_label = None
            elif d.name == "solution":
                info.written[d.arg] = d.options.get("class", "")
    if open_label is not None:
        info.problems.append(f"solution-start {open_label!r} is never closed by solution-end")
    return info


def check_chapter(nb=None) -> list[str]:
    """Problems with the chapter's exercise markup; an empty list means it is well-formed.

    Every BEGIN marker has its END, inside a top-level function, inside a gated solution; every
    exercise has a solution in a collapsed dropdown; the graded exercises of :data:`EXERCISES` are the
    chapter's first ones, in order, and their functions are written in their solutions.
    """
    nb = read_chapter() if nb is None else nb
    info = inspect_chapter(nb)
    problems = list(info.problems)
    labels = [lab for lab, _ in info.exercises]
    if len(set(labels)) != len(labels):
        problems.append(f"duplicate exercise labels: {labels}")
    for lab in labels:
        cls = info.gated_class.get(lab, info.written.get(lab))
        if cls is None:
            problems.append(f"exercise {lab!r} has no solution ({{solution-start}} {lab} or {{solution}} {lab})")
        elif "dropdown" not in cls.split():
            problems.append(f"the solution of {lab!r} is not collapsed; add ':class: dropdown'")
    for lab in list(info.gated) + list(info.written):
        if lab not in labels:
            problems.append(f"solution for {lab!r} but no exercise with that label")
    for ex in EXERCISES:
        if ex.number > len(labels) or labels[ex.number - 1] != ex.label:
            problems.append(f"Exercise {ex.number} should be the chapter's exercise number {ex.number} with label {ex.label!r}; labels in order: {labels}")
        for fn in ex.functions:
            if info.defined_in_solutions.get(fn) != ex.label:
                problems.append(f"Exercise {ex.number}: function {fn!r} has no marked solution in the {ex.label!r} solution cell")
        if not info.gated.get(ex.label):
            problems.append(f"Exercise {ex.number}: no code cell between solution-start {ex.label} and solution-end")
    for lab in WRITTEN:
        if lab not in info.written:
            problems.append(f"written question {lab!r} has no {{solution}} {lab} dropdown")
    return problems


# ------------------------------------------------------------------------------- conversion
def stub_source(source: str, number: int) -> str:
    """A solution code cell with every marked block replaced by ``raise NotImplementedError``."""
    blocks, problems = _marker_blocks(source)
    if problems:
        raise TxmergeError(f"malformed solution markers in Exercise {number}: {problems[0]}; fix notebooks/{CHAPTER_STEM}.md.")
    lines = source.split("\n")
    for b, e in reversed(blocks):
        indent = re.match(r"^\s*", lines[b]).group(0)
        fn = _enclosing_function(source, b) or "this function"
        lines[b:e + 1] = [
            f"{indent}# YOUR CODE HERE",
            f'{indent}raise NotImplementedError("Exercise {number}: implement {fn}")',
        ]
    return "\n".join(lines)


def _strip_markers(source: str) -> str:
    return "\n".join(line for line in source.split("\n") if line.strip() not in (BEGIN_MARK, END_MARK))


_ROLE = re.compile(r"\{[\w:-]+\}`([^`]*)`")


def _plain_role(m: re.Match) -> str:
    text = m.group(1)
    label = re.match(r"^(.*?)\s*<[^>]*>$", text)
    return label.group(1) if label else text


def _plain_markdown(text: str, info: ChapterInfo, student: bool) -> str | None:
    """MyST Markdown -> Jupyter Markdown: directives become headings or bold paragraphs, roles their text.

    In the student copy solution regions disappear and written questions get an answer placeholder.
    Returns None when nothing is left of the cell.
    """
    lines = text.split("\n")
    out: list[str] = []
    pos = 0
    for d in parse_directives(text):
        out += lines[pos:d.start]
        pos = d.end + 1
        if d.name == "exercise":
            n = info.number_of(d.options.get("label", ""))
            out += [f"**Exercise {n} ({d.arg}).**", "", d.body]
        elif d.name == "solution-start":
            if not student:
                out += [f"**Solution to Exercise {info.number_of(d.arg)}.**"]
        elif d.name == "solution-end":
            pass
        elif d.name == "solution":
            n = info.number_of(d.arg)
            out += [f"**Your answer to Exercise {n}.** *Write it here.*"] if student else [f"**Solution to Exercise {n}.**", "", d.body]
        else:
            title = d.arg or d.name.capitalize()
            out += [f"**{title}.**", "", d.body] if title else [d.body]
    out += lines[pos:]
    result = "\n".join(line for line in out if not re.match(r"^\(.+\)=\s*$", line))
    result = _ROLE.sub(_plain_role, result).strip("\n")
    return result if result.strip() else None


def _split_solution_regions(nb) -> list[tuple[Any, bool]]:
    """Cells with a flag 'inside a gated solution region'; markdown cells straddling a boundary are
    cut at the solution-start / solution-end fences (so text after solution-end stays visible)."""
    import nbformat

    out: list[tuple[Any, bool]] = []
    inside = False
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            out.append((cell, inside))
            continue
        text = _cell_text(cell)
        lines = text.split("\n")
        pieces: list[tuple[int, int, bool]] = []
        pos = 0
        for d in parse_directives(text):
            if d.name == "solution-start":
                pieces.append((pos, d.end + 1, inside))  # the fence itself is kept outside (converted later)
                pos, inside = d.end + 1, True
            elif d.name == "solution-end":
                pieces.append((pos, d.start, inside))
                pos, inside = d.start, False
        pieces.append((pos, len(lines), inside))
        for a, b, flag in pieces:
            chunk = "\n".join(lines[a:b])
            if chunk.strip():
                out.append((nbformat.v4.new_markdown_cell(chunk), flag))
    return out


def _new_notebook(cells: list, title: str):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = cells
    return nb


def _copy_code(cell, source: str):
    import nbformat

    new = nbformat.v4.new_code_cell(source)
    tags = cell.get("metadata", {}).get("tags")
    if tags:
        new.metadata["tags"] = list(tags)
    return new


_STUDENT_INTRO = """\
**Student copy of the exercises chapter.** Write each function where it says `# YOUR CODE HERE`
(keep the names and signatures: the autograder calls them), then run the check cell below it.
Write your answers to the written questions in the cells marked *Your answer*. Only imports and
function definitions are graded: make your functions self-contained."""

_SOLUTION_INTRO = "**Reference solutions** of the exercises chapter (generated from the book's source; do not hand out)."


def student_notebook(nb):
    """The student copy: solutions stubbed, solution text removed, answer placeholders added."""
    import nbformat

    info = inspect_chapter(nb)
    number_by_label = {lab: k for k, (lab, _t) in enumerate(info.exercises, start=1)}
    cells = [nbformat.v4.new_markdown_cell(_STUDENT_INTRO)]
    open_label: str | None = None
    for cell, inside in _split_solution_regions(nb):
        text = _cell_text(cell)
        if cell.cell_type == "markdown":
            for d in parse_directives(text):
                if d.name == "solution-start":
                    open_label = d.arg
            if inside:
                continue  # explanation inside a solution: removed
            md = _plain_markdown(text, info, student=True)
            if md is not None:
                cells.append(nbformat.v4.new_markdown_cell(md))
        elif cell.cell_type == "code":
            if inside:
                number = number_by_label.get(open_label or "", 0)
                cells.append(_copy_code(cell, stub_source(text, number)))
            else:
                cells.append(_copy_code(cell, text))
    return _new_notebook(cells, "student")


def solution_notebook(nb):
    """The reference notebook: all code (markers removed) and model answers, in plain Markdown."""
    import nbformat

    info = inspect_chapter(nb)
    cells = [nbformat.v4.new_markdown_cell(_SOLUTION_INTRO)]
    for cell in nb.cells:
        text = _cell_text(cell)
        if cell.cell_type == "markdown":
            md = _plain_markdown(text, info, student=False)
            if md is not None:
                cells.append(nbformat.v4.new_markdown_cell(md))
        elif cell.cell_type == "code":
            cells.append(_copy_code(cell, _strip_markers(text)))
    return _new_notebook(cells, "solutions")


# ------------------------------------------------------------------------------- submissions
@dataclass
class Submission:
    """The definitions taken from a submitted notebook: ``namespace`` (functions, imports, constants),
    ``sources`` (function name -> source), ``notes`` (what was skipped and why)."""

    namespace: dict[str, Any]
    sources: dict[str, str]
    notes: list[str]


_PRELUDE = "import copy\nimport math\nimport numpy as np\nimport torch\nfrom scipy.optimize import linear_sum_assignment\n"
_KEEP = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def extract_definitions(nb) -> Submission:
    """Execute only the defining statements of every code cell, in order, in a fresh namespace.

    Kept: imports, ``def``/``class`` statements, and assignments of literal constants. Everything else
    (training loops, checks, prints) is skipped. IPython magics and shell lines are dropped. A cell that
    does not parse, or a statement that fails, is noted and skipped; later definitions replace earlier
    ones, as when the notebook runs top to bottom.
    """
    ns: dict[str, Any] = {"__name__": SUBMISSION_MODULE, "__builtins__": __builtins__}
    exec(compile(_PRELUDE, "<prelude>", "exec"), ns)  # noqa: S102
    sources: dict[str, str] = {}
    notes: list[str] = []
    for idx, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        text = "\n".join(
            "" if line.lstrip().startswith(("%", "!")) else line for line in _cell_text(cell).split("\n")
        )
        try:
            tree = ast.parse(text)
        except SyntaxError as exc:
            notes.append(f"code cell {idx} does not parse ({exc.msg}, line {exc.lineno}); skipped")
            continue
        for node in tree.body:
            keep = isinstance(node, _KEEP) or (
                isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None and _is_literal(node.value)
            )
            if not keep:
                continue
            module = ast.Module(body=[node], type_ignores=[])
            try:
                exec(compile(module, f"<cell {idx}>", "exec"), ns)  # noqa: S102
            except Exception as exc:  # a failing import or decorator: note it and go on
                notes.append(f"code cell {idx}, line {node.lineno}: {type(exc).__name__}: {exc}; skipped")
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                sources[node.name] = ast.get_source_segment(text, node) or ""
    return Submission(ns, sources, notes)


def load_submission(path: str | os.PathLike) -> Submission:
    """Read a submitted ``.ipynb`` (or a Jupytext ``.md``/``.py``) and extract its definitions."""
    import jupytext
    import nbformat

    path = Path(path)
    if not path.is_file():
        raise TxmergeError(f"submission {path} does not exist; pass the path of the student's .ipynb.")
    try:
        nb = nbformat.read(path, as_version=4) if path.suffix == ".ipynb" else jupytext.read(path)
    except Exception as exc:
        raise TxmergeError(f"submission {path} is not a readable notebook ({type(exc).__name__}); submit the .ipynb saved by Jupyter.") from None
    return extract_definitions(nb)


# ------------------------------------------------------------------------------- checks
class CheckFailed(AssertionError):
    """A check of a student's function failed; the message says which case and how."""


def _library_references(sub: Submission, fn_name: str) -> list[str]:
    """Names of txmerge objects that ``fn_name`` (or a helper it calls) uses."""
    seen, found, todo = set(), [], [fn_name]
    while todo:
        name = todo.pop()
        if name in seen or name not in sub.sources:
            continue
        seen.add(name)
        try:
            tree = ast.parse(textwrap.dedent(sub.sources[name]))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [a.name for a in node.names if a.name.split(".")[0] == "txmerge"]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "txmerge":
                found.append(node.module)
            elif isinstance(node, ast.Name):
                obj = sub.namespace.get(node.id)
                module = getattr(obj, "__module__", None) or getattr(obj, "__name__", "")
                if isinstance(module, str) and module.split(".")[0] == "txmerge":
                    found.append(node.id)
                elif callable(obj) and getattr(obj, "__module__", None) == SUBMISSION_MODULE:
                    todo.append(node.id)
    return sorted(set(found))


def _function(sub: Submission, ex: Exercise, name: str) -> Callable:
    fn = sub.namespace.get(name)
    if fn is None or not callable(fn):
        raise CheckFailed(f"{name} is not defined in the notebook (keep the name and signature of the exercise)")
    used = _library_references(sub, name)
    if used:
        raise CheckFailed(f"{name} uses the library it should reimplement ({', '.join(used)}); write it with numpy/torch/scipy")
    return fn


def _as_array(value: Any, what: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value, dtype=np.float64)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} returned {type(value).__name__}, not an array of numbers") from None
    if arr.shape != shape:
        raise CheckFailed(f"{what} returned shape {arr.shape}, expected {shape}")
    return arr


def _as_perm(value: Any, what: str, d: int) -> np.ndarray:
    arr = _as_array(value, what, (d,))
    if not np.array_equal(np.sort(arr), np.arange(d)):
        raise CheckFailed(f"{what} did not return a permutation of 0..{d - 1}")
    return arr.astype(np.int64)


def _tiny_bert(kind: str, seed: int, hidden: int, heads: int, ff: int, layers: int = 2):
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertModel

    config = BertConfig(
        vocab_size=41, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=ff, max_position_embeddings=16, type_vocab_size=2, initializer_range=0.2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    torch.manual_seed(seed)
    model = BertForMaskedLM(config) if kind == "mlm" else BertModel(config)
    with torch.no_grad():  # Hugging Face starts biases at 0: make them matter
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _check_correlation(sub: Submission, rng: np.random.Generator) -> str:
    import torch

    from txmerge.features import PairMoments

    fn = _function(sub, EXERCISES[0], "correlation_from_sums")
    cases = 5
    for case in range(cases):
        d = int(rng.integers(2, 12))
        n = int(rng.integers(60, 400))
        offset_a, offset_b = rng.normal(0, 4, d), rng.normal(0, 4, d)
        xa = rng.normal(size=(n, d)) * rng.uniform(0.3, 3.0, d) + offset_a
        xb = 0.7 * (xa - offset_a)[:, rng.permutation(d)] @ np.diag(rng.choice([-1.0, 1.0], d)) + rng.normal(size=(n, d)) + offset_b
        if case >= 3:  # dead and constant units: correlation 0, not NaN
            xa[:, 0] = 0.0
            xb[:, d - 1] = 1.5
        first = n // 3
        if case == 1:  # sums around zero (no shift) for data with small offsets
            xa, xb = xa - offset_a + 0.5, xb - offset_b - 0.5
            shift = torch.zeros(2 * d, dtype=torch.float64)
        else:  # around the first batch's mean, as txmerge.features does (constant units give exact zeros)
            shift = torch.from_numpy(np.concatenate([xa[:first].mean(0), xb[:first].mean(0)]))
        m = PairMoments.empty(shift, full=True)
        for chunk in np.array_split(np.arange(n), 3):  # streaming: three batches
            m.update(torch.from_numpy(xa[chunk]), torch.from_numpy(xb[chunk]))
        if hasattr(m, "flush"):  # products may wait in a float32 chunk until read
            m.flush()
        szz = m.sum_zz
        # the library's correlation from exactly the sums the student gets
        ref = PairMoments(m.n, m.shift, m.sum_z, torch.diagonal(szz).clone(), szz[:d, d:].clone(), szz).correlation()
        got = _as_array(fn(m.n, m.sum_z.numpy().copy(), szz.numpy().copy(), d), "correlation_from_sums", (d, d))
        if not np.isfinite(got).all():
            raise CheckFailed(f"case {case + 1} (d={d}, n={n}): the result holds NaN or inf (a dead unit? clamp the denominator at 1e-7 and clip variances at 0)")
        err = float(np.abs(got - ref).max())
        if err > 1e-8:
            raise CheckFailed(f"case {case + 1} (d={d}, n={n}): differs from txmerge.features by up to {err:.2e}")
    return f"{cases} cases (shifted sums, dead units) match txmerge.features"


def _check_ff(sub: Submission, rng: np.random.Generator) -> str:
    import torch

    from txmerge.matching import match_units
    from txmerge.permute import apply_permutations, verify_function_preserved
    from txmerge.spec import bert_spec

    match = _function(sub, EXERCISES[1], "match_ff_units")
    permute = _function(sub, EXERCISES[1], "permute_ff")
    for case, d in enumerate((3, 8, 17, 30)):
        corr = rng.uniform(-1, 1, (d, d))
        got = _as_perm(match(corr.copy()), "match_ff_units", d)
        ref = match_units(corr).numpy()
        idx = np.arange(d)
        if abs(corr[idx, got].sum() - corr[idx, ref].sum()) > 1e-9:
            raise CheckFailed(f"match_ff_units, random case {case + 1} (d={d}): matched correlation {corr[idx, got].sum():.4f}, the optimum is {corr[idx, ref].sum():.4f}")
    for d in (6, 25):
        planted = rng.permutation(d)  # B's unit j is A's unit planted[j]
        corr = 0.2 * rng.uniform(-1, 1, (d, d))
        corr[planted, np.arange(d)] = rng.uniform(0.8, 1.0, d)
        got = _as_perm(match(corr.copy()), "match_ff_units", d)
        if not np.array_equal(got, np.argsort(planted)):
            raise CheckFailed(f"match_ff_units on a planted shuffle (d={d}) did not find it (A's unit i should be matched to B's unit perm[i])")
    for case, (kind, hidden, heads, ff) in enumerate((("base", 16, 2, 24), ("mlm", 24, 3, 40))):
        model = _tiny_bert(kind, int(rng.integers(1 << 16)), hidden, heads, ff)
        layer = int(rng.integers(0, 2))
        perm = torch.from_numpy(rng.permutation(ff))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        out = permute(model, layer, perm.clone())
        what = f"permute_ff, case {case + 1} ({type(model).__name__}, layer {layer})"
        if not isinstance(out, torch.nn.Module) or out is model:
            raise CheckFailed(f"{what}: return a permuted copy (copy.deepcopy), not {'the same model' if out is model else type(out).__name__}")
        changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
        if changed:
            raise CheckFailed(f"{what}: the original model was modified ({changed[0]}); permute a copy")
        ref = apply_permutations(model, {f"ff.{layer}": perm}, bert_spec(model, include=("ff",))).state_dict()
        got = out.state_dict()
        wrong = [k for k in ref if k not in got or got[k].shape != ref[k].shape or not torch.equal(got[k].cpu(), ref[k].cpu())]
        if wrong:
            raise CheckFailed(f"{what}: {wrong[0]} differs from txmerge.permute.apply_permutations" + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""))
        g = torch.Generator().manual_seed(case)
        inputs = {"input_ids": torch.randint(0, 41, (3, 9), generator=g), "attention_mask": torch.ones(3, 9, dtype=torch.long)}
        res = verify_function_preserved(model, out, inputs)
        if not res.ok:
            raise CheckFailed(f"{what}: the function changed (largest output difference {res.max_abs_diff:.2e})")
    return "matching optimal on 6 matrices; permutation equals the library's and preserves the function on 2 BERTs"


def _check_heads(sub: Submission, rng: np.random.Generator) -> str:
    from txmerge.matching import match_heads

    fn = _function(sub, EXERCISES[2], "match_heads_two_stage")
    cases = ((2, 3), (3, 4), (4, 2), (4, 5), (6, 3))
    for case, (h, hd) in enumerate(cases):
        d = h * hd
        corr = rng.uniform(-1, 1, (d, d))
        got = _as_perm(fn(corr.copy(), h), "match_heads_two_stage", d)
        blocks = got.reshape(h, hd) // hd
        if not (blocks == blocks[:, :1]).all() or len(set(blocks[:, 0].tolist())) != h:
            raise CheckFailed(f"case {case + 1} (h={h}, head_dim={hd}): the permutation splits heads (each A-head must map onto one whole B-head)")
        ref = match_heads(corr, h, mode="permute").perm.numpy()
        idx = np.arange(d)
        if abs(corr[idx, got].sum() - corr[idx, ref].sum()) > 1e-9:
            raise CheckFailed(f"case {case + 1} (h={h}, head_dim={hd}): matched correlation {corr[idx, got].sum():.4f}, Algorithm 1 reaches {corr[idx, ref].sum():.4f}")
    h, hd = 4, 3
    d = h * hd
    order = rng.permutation(h)
    planted = np.concatenate([k * hd + rng.permutation(hd) for k in order])  # B's unit j is A's unit planted[j]
    corr = 0.3 * rng.uniform(-1, 1, (d, d))
    corr[planted, np.arange(d)] = rng.uniform(0.7, 1.0, d)
    got = _as_perm(fn(corr.copy(), h), "match_heads_two_stage", d)
    if not np.array_equal(got, np.argsort(planted)):
        raise CheckFailed("a planted head permutation (heads moved, units shuffled inside heads) was not recovered")
    return f"{len(cases)} random cases reach Algorithm 1's optimum without splitting heads; planted heads recovered"


def _check_barrier(sub: Submission, rng: np.random.Generator) -> str:
    from txmerge.interpolate import loss_barrier

    fn = _function(sub, EXERCISES[3], "loss_barrier")
    lam = np.linspace(0, 1, 21)
    curves = [
        rng.normal(3, 0.5, 11),
        3 + np.sin(np.pi * lam),  # a bump
        2 - 0.5 * np.sin(np.pi * lam),  # a dip below both ends
        np.linspace(4.0, 2.0, 7),  # a straight line
        np.array([2.5, 3.5]),
        rng.normal(1, 0.1, 5),
    ]
    for case, curve in enumerate(curves):
        for given in (curve.copy(), curve.tolist()):
            try:
                got = float(fn(given))
            except (TypeError, ValueError) as exc:
                raise CheckFailed(f"curve {case + 1} given as {type(given).__name__}: {type(exc).__name__}: {exc}") from None
            ref = loss_barrier(curve)
            if abs(got - ref) > 1e-10:
                raise CheckFailed(f"curve {case + 1} ({len(curve)} points, given as {type(given).__name__}): got {got:.6f}, expected {ref:.6f}")
    return f"{len(curves)} curves (arrays and lists) match txmerge.interpolate.loss_barrier"


CHECKS: dict[int, Callable[[Submission, np.random.Generator], str]] = {
    1: _check_correlation,
    2: _check_ff,
    3: _check_heads,
    4: _check_barrier,
}


def run_check(number: int, sub: Submission, seed: int = 0) -> str:
    """Run exercise ``number``'s check on ``sub``; returns a one-line summary or raises (CheckFailed or
    whatever the student's code raised)."""
    if number not in CHECKS:
        raise TxmergeError(f"there is no exercise {number}; graded exercises are {sorted(CHECKS)}.")
    import torch

    torch.manual_seed(seed)
    return CHECKS[number](sub, np.random.default_rng([seed, number]))


# ------------------------------------------------------------------------------- grading
@dataclass
class ExerciseResult:
    """One exercise's grade."""

    number: int
    title: str
    points: float
    max_points: int
    message: str

    @property
    def passed(self) -> bool:
        return self.points == self.max_points


def _failure_message(exc: BaseException) -> str:
    if isinstance(exc, NotImplementedError):
        return "not implemented yet"
    if isinstance(exc, CheckFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _grade_in_process(path: Path, seed: int) -> list[ExerciseResult]:
    try:
        sub = load_submission(path)
    except Exception as exc:
        return [ExerciseResult(e.number, e.title, 0, e.points, f"could not read the notebook: {exc}") for e in EXERCISES]
    results = []
    for ex in EXERCISES:
        try:
            msg = run_check(ex.number, sub, seed)
            results.append(ExerciseResult(ex.number, ex.title, ex.points, ex.points, msg))
        except Exception as exc:  # the student's code may raise anything
            results.append(ExerciseResult(ex.number, ex.title, 0, ex.points, _first_line(_failure_message(exc))))
    return results


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().split("\n")[0] if text.strip() else "failed"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _grade_with_pytest(path: Path, seed: int, tests_dir: Path, timeout: float) -> list[ExerciseResult]:
    tests_dir = tests_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="txmerge-grade-") as tmp:
        xml = Path(tmp) / "report.xml"
        cmd = [
            sys.executable, "-m", "pytest", str(tests_dir), "-q", "-p", "no:cacheprovider", "--tb=line",
            f"--junitxml={xml}", "--submission", str(path.resolve()), "--grade-seed", str(seed),
        ]
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        try:
            proc = subprocess.run(cmd, cwd=tests_dir, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return [ExerciseResult(e.number, e.title, 0, e.points, f"grading timed out after {timeout:.0f} s (an endless loop?)") for e in EXERCISES]
        if not xml.is_file():
            tail = (proc.stdout + proc.stderr).strip().split("\n")[-3:]
            raise TxmergeError(f"the autograder in {tests_dir} did not run (pytest exit {proc.returncode}: {' | '.join(tail)}); regenerate it with python -m txmerge.assignments.")
        outcome: dict[int, tuple[bool, str]] = {}
        for case in ET.parse(xml).getroot().iter("testcase"):
            m = re.match(r"test_exercise_(\d+)$", case.get("name", ""))
            if not m:
                continue
            bad = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
            if bad is None:
                summary = next((p.get("value") for p in case.iter("property") if p.get("name") == "summary"), None)
                outcome[int(m.group(1))] = (True, summary or "all cases pass")
            else:
                outcome[int(m.group(1))] = (False, _clean_pytest_message(bad.get("message") or bad.text or "failed"))
    results = []
    for ex in EXERCISES:
        if ex.number not in outcome:
            results.append(ExerciseResult(ex.number, ex.title, 0, ex.points, "the autograder has no test for this exercise; regenerate it"))
        else:
            ok, message = outcome[ex.number]
            results.append(ExerciseResult(ex.number, ex.title, ex.points if ok else 0, ex.points, message))
    return results


def _clean_pytest_message(text: str) -> str:
    text = text.strip()
    for prefix in ("txmerge.assignments.CheckFailed: ", "CheckFailed: ", "NotImplementedError: ", "failed on setup with "):
        if text.startswith(prefix):
            text = text[len(prefix):]
    if re.match(r"^Exercise \d+: implement ", text) or "NotImplementedError" in text.split(":")[0]:
        return "not implemented yet"
    return _first_line(text)


def grade_details(
    notebook_path: str | os.PathLike,
    seed: int = 0,
    isolate: bool = True,
    tests_dir: str | os.PathLike | None = None,
    timeout: float = 600.0,
) -> list[ExerciseResult]:
    """Grade one submission: an :class:`ExerciseResult` per exercise of :data:`EXERCISES`.

    ``isolate=True`` runs the autograder's pytest tests (``tests_dir``, default a freshly written copy)
    in a subprocess with ``timeout`` seconds; ``isolate=False`` runs the same checks in this process.
    ``seed`` varies the random cases (use the homework variant's seed).
    """
    path = Path(notebook_path)
    if not isolate:
        return _grade_in_process(path, seed)
    if tests_dir is not None:
        return _grade_with_pytest(path, seed, Path(tests_dir), timeout)
    with tempfile.TemporaryDirectory(prefix="txmerge-autograder-") as tmp:
        write_autograder(Path(tmp))
        return _grade_with_pytest(path, seed, Path(tmp), timeout)


def grade(notebook_path: str | os.PathLike, **kwargs: Any) -> dict[int, float]:
    """Points per exercise number, e.g. ``{1: 2, 2: 0, 3: 3, 4: 2}`` (see :func:`grade_details`)."""
    return {r.number: r.points for r in grade_details(notebook_path, **kwargs)}


def format_report(results: Iterable[ExerciseResult], name: str = "") -> str:
    """A per-exercise table with the total, for printing."""
    results = list(results)
    width = max(len(r.title) for r in results)
    lines = [f"Grading {name}" if name else "Grading"]
    for r in results:
        mark = "PASS" if r.passed else "FAIL"
        lines.append(f"  Exercise {r.number}  {r.title:<{width}}  {r.points:g}/{r.max_points}  {mark}  {r.message}")
    total, most = sum(r.points for r in results), sum(r.max_points for r in results)
    lines.append(f"  Total {total:g}/{most}   (written questions {', '.join(WRITTEN)}: graded by hand)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- writing files
_TEST_MODULE = '''\
"""Autograder for the exercises chapter, one test per graded exercise.

Generated by `python -m txmerge.assignments`; do not edit (edit notebooks/{stem}.md and
lib/txmerge/assignments.py, then regenerate). Run it with

    python grade.py SUBMISSION.ipynb            # per-exercise report (recommended)
    pytest . --submission SUBMISSION.ipynb      # plain pytest; without --submission it grades
                                                # ../solutions/{stem}.ipynb (a self-test)
"""

from txmerge.assignments import run_check

{tests}
'''

_ONE_TEST = '''
def test_exercise_{n}(submission, grade_seed, record_property):
    """Exercise {n}: {title} ({points} points; {functions})."""
    record_property("summary", run_check({n}, submission, grade_seed))
'''

_CONFTEST = '''\
"""Options of the autograder: --submission PATH (default ../solutions/{stem}.ipynb), --grade-seed N."""

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)  # tiny models: one thread is fastest and keeps bulk grading polite

HERE = Path(__file__).resolve().parent


def pytest_addoption(parser):
    parser.addoption("--submission", default=os.environ.get("TXMERGE_SUBMISSION"),
                     help="the student's notebook (.ipynb); default: the reference solutions")
    parser.addoption("--grade-seed", type=int, default=int(os.environ.get("TXMERGE_GRADE_SEED", "0")),
                     help="seed of the random test cases (a homework variant's seed)")


@pytest.fixture(scope="session")
def submission(request):
    from txmerge.assignments import load_submission

    path = request.config.getoption("--submission") or HERE.parent / "solutions" / "{stem}.ipynb"
    return load_submission(path)


@pytest.fixture(scope="session")
def grade_seed(request):
    return request.config.getoption("--grade-seed")
'''

_PYTEST_INI = """\
[pytest]
# Makes this folder pytest's rootdir, so the repository's pytest settings stay out of grading runs.
"""

_GRADE_PY = '''\
#!/usr/bin/env python
"""Grade submissions of the exercises chapter and print a per-exercise report.

    python grade.py SUBMISSION.ipynb [MORE.ipynb ...] [--seed N] [--csv grades.csv] [--in-process]

Only imports, function and class definitions and literal constants of the notebook's code cells are
executed (not the whole notebook); the checks compare the functions with the txmerge library on
random cases (pytest, in a subprocess per submission). Exit status 0 whatever the scores; 2 if a
submission cannot be found. Generated by `python -m txmerge.assignments`.
"""

import argparse
import csv
import sys
from pathlib import Path

from txmerge.assignments import EXERCISES, format_report, grade_details

HERE = Path(__file__).resolve().parent


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\\n\\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path, help="submitted .ipynb files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random cases (the variant's seed)")
    parser.add_argument("--csv", type=Path, help="also write one row per submission to this CSV file")
    parser.add_argument("--in-process", action="store_true", help="run the checks in this process (faster, not isolated)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per submission (isolated mode)")
    args = parser.parse_args(argv)
    missing = [str(p) for p in args.notebooks if not p.is_file()]
    if missing:
        print(f"error: no such submission: {', '.join(missing)}", file=sys.stderr)
        return 2
    rows = []
    for path in args.notebooks:
        results = grade_details(path, seed=args.seed, isolate=not args.in_process, tests_dir=HERE, timeout=args.timeout)
        print(format_report(results, str(path)))
        rows.append([str(path)] + [r.points for r in results] + [sum(r.points for r in results)])
    if args.csv:
        with open(args.csv, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["submission"] + [f"exercise_{e.number} (/{e.points})" for e in EXERCISES] + ["total"])
            writer.writerows(rows)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def write_autograder(out: Path) -> dict[str, Path]:
    """Write the autograder (test module, conftest, pytest.ini, grade.py) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    tests = "".join(
        _ONE_TEST.format(n=e.number, title=e.title, points=e.points, functions=", ".join(e.functions)) for e in EXERCISES
    )
    files = {
        f"test_{CHAPTER_STEM}.py": _TEST_MODULE.format(stem=CHAPTER_STEM, tests=tests),
        "conftest.py": _CONFTEST.replace("{stem}", CHAPTER_STEM),
        "pytest.ini": _PYTEST_INI,
        "grade.py": _GRADE_PY,
    }
    paths = {}
    for name, text in files.items():
        path = out / name
        path.write_text(text)
        paths[name] = path
    paths["grade.py"].chmod(0o755)
    return paths


def write_assignments(out: str | os.PathLike = "assignments", chapter: str | os.PathLike | None = None) -> dict[str, Path]:
    """Generate ``student/``, ``solutions/`` and ``autograder/`` under ``out`` from the chapter.

    Raises TxmergeError listing the problems if the chapter's exercise markup is not well-formed.
    """
    import nbformat

    nb = read_chapter(chapter)
    problems = check_chapter(nb)
    if problems:
        raise TxmergeError(f"the exercises chapter is not well-formed ({len(problems)} problem(s), first: {problems[0]}); fix notebooks/{CHAPTER_STEM}.md.")
    out = Path(out)
    paths: dict[str, Path] = {}
    for kind, make in (("student", student_notebook), ("solutions", solution_notebook)):
        path = out / kind / f"{CHAPTER_STEM}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        result = make(copy.deepcopy(nb))
        nbformat.validate(result)
        nbformat.write(result, path)
        paths[kind] = path
    for name, path in write_autograder(out / "autograder").items():
        paths[f"autograder/{name}"] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m txmerge.assignments",
        description="Generate student notebooks, reference solutions and the autograder from the exercises chapter.",
    )
    parser.add_argument("--out", default="assignments", help="output folder (default: assignments)")
    parser.add_argument("--chapter", default=None, help=f"chapter source (default: notebooks/{CHAPTER_STEM}.md)")
    parser.add_argument("--check", action="store_true", help="only check the chapter's exercise markup")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check_chapter(read_chapter(args.chapter))
            for p in problems:
                print(f"problem: {p}", file=sys.stderr)
            print(f"{len(problems)} problem(s) in the exercise markup")
            return 1 if problems else 0
        paths = write_assignments(args.out, args.chapter)
    except TxmergeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    root = Path(args.out)
    print(f"wrote {root / 'student'}/, {root / 'solutions'}/ and {root / 'autograder'}/ "
          f"({len(EXERCISES)} graded exercises, {sum(e.points for e in EXERCISES)} points; {len(WRITTEN)} written questions)")
    print(f"grade a submission: python {paths['autograder/grade.py']} SUBMISSION.ipynb")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
