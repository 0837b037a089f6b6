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

``make book`` runs ``python -m txmerge.params --preset P --write-dir executed/.params`` first: it
validates every chapter of the preset (an unknown preset, parameter or value stops the build
before any work) and writes one YAML per chapter for ``papermill -f``.  Inside a chapter, right after
the ``parameters`` cell (and papermill's injected cell), a validation cell runs::

    from txmerge.params import validate_namespace
    P = validate_namespace("02_ffn_attention", globals())

so a reader's ``papermill -p name value`` is checked against the same schema.

Adding a chapter schema: see CONTRIBUTING.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

import warnings

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .cache import REPO_ROOT
from .errors import TxmergeError
from .presets import PRESETS

PresetName = Literal["tiny", "smoke", "paper"]

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
# Schemas
# --------------------------------------------------------------------------------------------
class CommonParams(BaseModel):
    """Parameters every chapter has."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    preset: PresetName = Field("tiny", description="which preset these values come from")
    seed: int = Field(0, ge=0, description="base random seed")
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "auto", description="torch device; auto = cuda if available, else cpu"
    )
    threads: int = Field(
        0, ge=0, description="torch CPU threads; 0 = torch's default (1 is fastest for tiny models on a busy CPU)"
    )


# ---- the paper's chapters ------------------------------------------------------------------------
TINY_PAIRS = [[1, 2], [1, 3], [2, 3]]
TASK_NAMES = Literal["stsb", "sst2", "qnli", "mrpc", "mnli", "qqp", "cola", "rte"]


def _check_pairs(pairs: list[list[int]], preset: str) -> None:
    top = 24 if preset == "paper" else 5  # MultiBERTs has seeds 0-24; the zoo has seeds 1-5
    for pair in pairs:
        if len(pair) != 2 or pair[0] == pair[1] or not all(0 <= s <= top for s in pair):
            raise ValueError(f"pair {pair} must be two different seeds between {0 if preset == 'paper' else 1} and {top}")


class ModelsDataParams(CommonParams):
    """01_models_and_data: the zoo (training curves, sizes) and the texts and tasks."""

    seeds: list[int] = Field([1, 2, 3, 4, 5], min_length=1, description="zoo seeds to describe")


class MLMParams(CommonParams):
    """Shared by the masked-LM chapters: which pairs, how much correlation text, how to evaluate."""

    pairs: list[list[int]] = Field(TINY_PAIRS, min_length=1, description="pairs of seeds [A, B] to merge")
    eval_blocks: int | None = Field(96, ge=1, description="128-token blocks of held-out text per λ (null = all)")
    text_mode: Literal["clean", "char_spaced"] = Field("clean", description="evaluation text as is, or character-spaced like the official code")
    batch_size: int = Field(8, ge=1, description="sentences per batch in the feature pass (the paper: 8)")
    drop_special_tokens: bool = Field(False, description="exclude [CLS]/[SEP] from the correlations (the paper includes them)")
    n_lambdas: int = Field(21, ge=3, description="points on the interpolation path, endpoints included")

    @model_validator(mode="after")
    def _pairs_valid(self) -> "MLMParams":
        _check_pairs(self.pairs, self.preset)
        return self


class FFAttentionParams(MLMParams):
    """02_ffn_attention: vanilla, FF, attention and FF+attention merges (Figs. 3 and 4)."""

    n_sentences: int = Field(4000, ge=1, description="correlation-text sentences")
    heatmap_layer: int = Field(0, ge=0, description="layer whose FF correlation matrix is shown")
    heatmap_units: int = Field(96, ge=8, description="units shown in the correlation heatmaps")


class HeadsParams(MLMParams):
    """03_attention_heads: Table 1 variants, head-block structure, Q/K sharing."""

    n_sentences: int = Field(4000, ge=1, description="correlation-text sentences")
    heatmap_layer: int = Field(0, ge=0, description="layer whose attention correlation is shown")


class ResidualParams(MLMParams):
    """04_residual: Table 2 strategies, verification, the tied decoder."""

    n_sentences: int = Field(4000, ge=1, description="correlation-text sentences")
    official: bool = Field(True, description="also run the official code's tied-decoder handling (residual 'first')")


class DataAmountParams(MLMParams):
    """05_data_amount: barrier vs number of correlation sentences (Fig. 6)."""

    amounts: list[int] = Field([500, 1500, 4000, 10000], min_length=2, description="numbers of correlation sentences")

    @model_validator(mode="after")
    def _amounts_increasing(self) -> "DataAmountParams":
        if any(a < 1 for a in self.amounts) or sorted(set(self.amounts)) != list(self.amounts):
            raise ValueError(f"amounts {self.amounts} must be positive and strictly increasing")
        return self


class GlueParams(CommonParams):
    """06_glue: fine-tuned pairs merged on GLUE tasks (Table 3, Fig. 7)."""

    tasks: list[TASK_NAMES] = Field(["stsb", "sst2", "qnli", "mrpc"], min_length=1, description="tasks to merge on")
    pairs: list[list[int]] = Field(TINY_PAIRS, min_length=1, description="pairs of seeds [A, B]")
    n_sentences: int | None = Field(2000, ge=1, description="training examples for the correlations (null = all)")
    max_validation: int | None = Field(300, ge=1, description="validation examples per λ (null = all)")
    batch_size: int = Field(8, ge=1, description="examples per batch in the feature pass")
    n_lambdas: int = Field(21, ge=3, description="points on the interpolation path")

    @model_validator(mode="after")
    def _valid(self) -> "GlueParams":
        _check_pairs(self.pairs, self.preset)
        if self.preset != "paper":
            missing = [t for t in self.tasks if t in ("mnli", "qqp", "cola", "rte")]
            if missing:
                raise ValueError(f"tasks {missing} have no offline analogue; the {self.preset} preset has stsb, sst2, qnli and mrpc")
        return self


class ExercisesParams(CommonParams):
    """07_exercises: classroom exercises checked against the library on tiny random BERTs (CPU, seconds)."""

    vocab_size: int = Field(100, ge=8, description="vocabulary of the random token streams")
    hidden_size: int = Field(32, ge=4, description="width of the residual stream of the tiny BERTs")
    num_heads: int = Field(4, ge=1, description="attention heads (must divide hidden_size)")
    intermediate_size: int = Field(64, ge=2, description="feed-forward width (units matched in exercise 2)")
    num_layers: int = Field(2, ge=1, description="transformer layers")
    seq_len: int = Field(32, ge=4, description="tokens per sequence")
    n_tokens: int = Field(1024, ge=16, description="tokens of correlation data (features are collected on this many)")
    weight_noise: float = Field(0.01, ge=0, description="std of the noise added to the disguised copy's weights (0 = exact copy)")
    n_lambdas: int = Field(11, ge=2, description="points on the interpolation path in exercise 4")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> "ExercisesParams":
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of num_heads ({self.num_heads})")
        return self


#: notebook stem -> schema. Register new chapters here (see the module docstring).
CHAPTERS: dict[str, type[CommonParams]] = {
    "01_models_and_data": ModelsDataParams,
    "02_ffn_attention": FFAttentionParams,
    "03_attention_heads": HeadsParams,
    "04_residual": ResidualParams,
    "05_data_amount": DataAmountParams,
    "06_glue": GlueParams,
    "07_exercises": ExercisesParams,
}


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
            f"{', '.join(sorted(CHAPTERS))}, and a new one is registered in txmerge.params.CHAPTERS."
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


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` if available, else ``mps`` if available, else ``cpu``."""
    import torch

    if device != "auto":
        if device == "cuda" and not torch.cuda.is_available():
            raise TxmergeError("device=cuda was asked for but torch sees no CUDA GPU; use device=auto or cpu.")
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def setup_torch(params: CommonParams) -> str:
    """Apply ``threads`` and ``seed`` to torch and return the device string (see ``resolve_device``)."""
    import torch

    if params.threads:
        torch.set_num_threads(params.threads)
    torch.manual_seed(params.seed)
    return resolve_device(params.device)


def require_online_for(params: CommonParams) -> None:
    """Call at the top of a chapter: before any work, the ``paper`` preset needs the Hub or, offline
    (HF_HUB_OFFLINE=1), every model and dataset of the chapter in the Hugging Face caches (``txmerge prefetch``);
    then it prints the chapter's plan (models, tokens, curves, time estimate: :mod:`txmerge.plan`)."""
    if params.preset == "paper":
        from .plan import show_plan
        from .prefetch import require_for

        require_for(params)
        show_plan(params)


# --------------------------------------------------------------------------------------------
# Command line: python -m txmerge.params --preset P (--chapter C | --write-dir DIR)
# --------------------------------------------------------------------------------------------
def _dump(model: CommonParams) -> str:
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)


def _write_if_changed(path: Path, text: str) -> bool:
    if path.is_file() and path.read_text() == text:
        return False
    from .cache import atomic_write

    atomic_write(path, lambda tmp: tmp.write_text(text))
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m txmerge.params",
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
