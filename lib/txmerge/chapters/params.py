"""Parameter schema of every chapter, the presets, and validation with one-sentence errors.

Presets live in ``params/<preset>.yaml`` (``tiny`` is the default, ``smoke`` is for tests/CI,
``paper`` reproduces the paper on a GPU with internet)::

    common:                 # fields of CommonParams shared by every chapter (not `preset`)
      seed: 0
      device: auto
    chapters:               # one section per notebook stem; keys are that chapter's parameters
      02_ffn_attention:
        n_sentences: 4000
        ...

``make book`` runs ``python -m txmerge.chapters.params --preset P --write-dir executed/.params`` first: it
validates every chapter of the preset (an unknown preset, parameter or value stops the build
before any work) and writes one YAML per chapter for ``papermill -f``.  Inside a chapter, right after
the ``parameters`` cell (and papermill's injected cell), the start cell runs::

    from txmerge.chapters.start import start
    P, DEVICE = start("02_ffn_attention", globals())

which validates the notebook's values with :func:`validate_namespace` (so a reader's ``papermill -p name
value`` is checked against the same schema), then the rest of the start-up (:mod:`txmerge.chapters.start`).

The schemas are in :mod:`txmerge.chapters.schemas`; adding a chapter schema: see CONTRIBUTING.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
import warnings
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ValidationError

from txmerge.base.cache import REPO_ROOT
from txmerge.base.errors import TxmergeError
from txmerge.base.presets import PRESETS
from txmerge.chapters.schemas import *  # noqa: F401,F403  (the schemas are part of this module's API)
from txmerge.chapters.schemas import CHAPTERS, CommonParams

# Every chapter imports this module first. tqdm.auto (imported by transformers/datasets) warns in a
# kernel without ipywidgets; progress bars still work as text, so keep that noise out of the book.
warnings.filterwarnings("ignore", message="IProgress not found")

# IPython/Jupyter names that are never parameters.
_IPYTHON_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})


def params_dir() -> Path:
    """Folder of the preset files (``$TXMERGE_PARAMS``, default ``<repo>/params``)."""
    default = REPO_ROOT / "params"
    return Path(os.environ.get("TXMERGE_PARAMS", default)).expanduser()


# --------------------------------------------------------------------------------------------
# Describing types and errors in one sentence
# --------------------------------------------------------------------------------------------
def _plural(annotation: Any) -> str:
    """'integers', 'lists of integers', "values each one of 'a', 'b'" ..."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "values each " + _describe(annotation)
    if origin in (list, tuple, set):
        args = typing.get_args(annotation)
        return f"lists of {_plural(args[0])}" if args else "lists"
    return {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(annotation, "values")


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not type(None)]
        text = " or ".join(parts)
        return text + (" or null" if type(None) in args else "")
    if origin in (list, tuple, set):
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict:
        return "a mapping"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _constraints(field: Any) -> str:
    bits = []
    for meta in getattr(field, "metadata", []):
        for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            val = getattr(meta, attr, None)
            if val is not None:
                bits.append(f"{sym} {val}")
    return f" ({', '.join(bits)})" if bits else ""


def allowed(model: type[CommonParams], name: str) -> str:
    """Human description of what parameter ``name`` of ``model`` accepts."""
    field = model.model_fields[name]
    return _describe(field.annotation) + _constraints(field)


def _one_sentence(
    model: type[CommonParams], chapter: str, err: ValidationError, where: str, fix: str
) -> str:
    errors = err.errors()
    first = errors[0]
    loc = [str(x) for x in first.get("loc", ())]
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    if first["type"] == "extra_forbidden" and loc:
        names = ", ".join(model.model_fields)
        return (
            f"Unknown parameter '{loc[0]}' for chapter '{chapter}' (from {where}); the allowed "
            f"parameters are {names}, so fix the spelling or remove it{more}."
        )
    if loc and loc[0] in model.model_fields:
        name = loc[0]
        got = first.get("input")
        return (
            f"Parameter '{name}' of chapter '{chapter}' got {got!r} (from {where}), but it must be "
            f"{allowed(model, name)}; {fix.format(name=name)}{more}."
        )
    msg = first.get("msg", "invalid").removeprefix("Value error, ")
    return f"Parameters of chapter '{chapter}' (from {where}) are inconsistent: {msg}; change one of them{more}."


def _chapter_model(chapter: str) -> type[CommonParams]:
    try:
        return CHAPTERS[chapter]
    except KeyError:
        raise TxmergeError(
            f"Chapter '{chapter}' has no parameter schema; known chapters are "
            f"{', '.join(sorted(CHAPTERS))}, and a new one is registered in txmerge.chapters.params.CHAPTERS."
        ) from None


def validate(
    chapter: str,
    values: dict[str, Any],
    where: str = "the given values",
    fix: str = "pass a valid value for {name}",
) -> CommonParams:
    """Validate ``values`` against the schema of ``chapter``; raise TxmergeError in one sentence.

    ``where`` names the source of the values and ``fix`` (a format string with ``{name}``) the remedy.
    """
    model = _chapter_model(chapter)
    try:
        return model.model_validate(values)
    except ValidationError as err:
        raise TxmergeError(_one_sentence(model, chapter, err, where, fix)) from None


# --------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------
def load_preset(name: str) -> dict[str, Any]:
    """The raw preset ``params/<name>.yaml`` as ``{"common": {...}, "chapters": {stem: {...}}}``."""
    if name not in PRESETS:
        raise TxmergeError(
            f"Unknown preset '{name}'; choose one of {', '.join(PRESETS)} (e.g. make book PRESET=tiny)."
        )
    path = params_dir() / f"{name}.yaml"
    if not path.is_file():
        raise TxmergeError(f"Preset file {path} is missing; restore it from git (git checkout -- params/).")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark else ""
        raise TxmergeError(f"Preset file {path} is not valid YAML{line}; fix its syntax.") from None
    if not isinstance(data, dict) or set(data) - {"common", "chapters"}:
        raise TxmergeError(
            f"Preset file {path} must hold only the sections 'common' and 'chapters', "
            f"but has {sorted(data) if isinstance(data, dict) else type(data).__name__}; move the keys under them."
        )
    common = dict(data.get("common") or {})
    chapters = {str(k): dict(v or {}) for k, v in (data.get("chapters") or {}).items()}
    if "preset" in common and common["preset"] != name:
        raise TxmergeError(f"Preset file {path} says preset: {common['preset']}; remove that key.")
    common["preset"] = name
    return {"common": common, "chapters": chapters}


def mlm_evaluation(preset: str) -> dict[str, Any]:
    """The MLM chapters' evaluation under ``preset`` (``eval_blocks``, ``text_mode``, from its FF/attention
    chapter), for a chapter that measures an MLM barrier on the same held-out text (the GLUE chapter's C7)."""
    p = chapter_params(preset, "02_ffn_attention")
    return {"eval_blocks": p.eval_blocks, "text_mode": p.text_mode}


def chapter_params(preset: str, chapter: str) -> CommonParams:
    """Validated parameters of ``chapter`` under ``preset`` (common section + chapter section)."""
    data = load_preset(preset)
    _chapter_model(chapter)
    unknown = sorted(set(data["chapters"]) - set(CHAPTERS))
    if unknown:
        raise TxmergeError(
            f"params/{preset}.yaml has a section for unknown chapter '{unknown[0]}'; known chapters are "
            f"{', '.join(sorted(CHAPTERS))}, so rename or remove it."
        )
    values = {**data["common"], **data["chapters"].get(chapter, {})}
    return validate(
        chapter, values, where=f"params/{preset}.yaml", fix=f"fix {{name}} in params/{preset}.yaml"
    )


def validate_namespace(chapter: str, namespace: dict[str, Any]) -> CommonParams:
    """Validate the parameters a notebook holds (call with ``globals()`` after the parameters cells).

    Collects user-visible globals, skipping names that start with ``_``, IPython's own names,
    modules, functions and classes, and validates them against the chapter's schema.
    """
    values = {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_")
        and k not in _IPYTHON_NAMES
        and not isinstance(v, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type))
        and not callable(v)
        and not isinstance(v, BaseModel)  # e.g. P from an earlier run of the validation cell
    }
    return validate(
        chapter,
        values,
        where="the notebook's parameters",
        fix="rerun with e.g. papermill -p {name} <value> or fix the parameters cell",
    )


# --------------------------------------------------------------------------------------------
# Command line: python -m txmerge.chapters.params --preset P (--chapter C | --write-dir DIR)
# --------------------------------------------------------------------------------------------
def _dump(model: CommonParams) -> str:
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    from txmerge.base.cache import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(text))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m txmerge.chapters.params",
        description="Validate a preset and print (or write) the papermill parameters of chapters.",
    )
    parser.add_argument("--preset", required=True, help=f"one of {', '.join(PRESETS)}")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--chapter", help="notebook stem; prints its validated parameters as YAML")
    what.add_argument(
        "--write-dir",
        type=Path,
        help="validate every chapter (given with --chapters, default all) and write DIR/<chapter>.yaml "
        "where the content changed",
    )
    parser.add_argument("--chapters", nargs="*", help="chapter stems for --write-dir")
    args = parser.parse_args(argv)
    try:
        if args.chapter:
            sys.stdout.write(_dump(chapter_params(args.preset, args.chapter)))
            return 0
        chapters = args.chapters if args.chapters is not None else sorted(CHAPTERS)
        dumped = {c: _dump(chapter_params(args.preset, c)) for c in chapters}  # validate all first
        for chapter, text in dumped.items():
            _write_if_changed(args.write_dir / f"{chapter}.yaml", text)
        return 0
    except TxmergeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
