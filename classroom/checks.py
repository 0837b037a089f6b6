"""The autograder's checks of the exercises chapter (``notebooks/07_exercises.md``).

This file travels with the assignment: ``python -m classroom make`` copies it next to the notebook
as ``exercise_checks.py``, and each autograder test cell of the nbgrader assignment runs::

    import exercise_checks
    exercise_checks.check(1, globals(), seed=seed)

A check draws random cases from ``seed`` (a homework variant's seed), compares the student's
functions with the ``txmerge`` library, and raises :class:`CheckFailed` (an ``AssertionError``) with
one line saying which case failed and how; nbgrader then gives the test cell 0 points. A function
that calls the library implementation it should replace fails too. Each check stops after
:data:`TIME_LIMIT` seconds (an endless loop in a student's function costs that exercise only);
nbgrader's own per-cell time limit covers the rest of the notebook. Needs numpy, torch,
transformers and txmerge; no file of the repository.
"""

from __future__ import annotations

import os
import signal
import threading
import types
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

#: seconds one exercise's check may take (an endless loop fails it); override with $EXERCISE_TIME_LIMIT
TIME_LIMIT = float(os.environ.get("EXERCISE_TIME_LIMIT", "60"))


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
#: Written questions (sphinx-exercise labels), graded by hand, and their points.
WRITTEN: dict[str, int] = {"ex-residual": 2, "ex-glue-dip": 2, "ex-ignore-heads": 2}


class CheckFailed(AssertionError):
    """A check of a student's function failed; the message says which case and how."""


@contextmanager
def _time_limit(seconds: float, what: str):
    """Raise CheckFailed when the body runs longer than ``seconds`` (main thread, POSIX only)."""
    if seconds <= 0 or not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise CheckFailed(f"{what} took longer than {seconds:g} s (an endless loop?)")

    old = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _library_references(ns: dict[str, Any], fn: Callable) -> list[str]:
    """Names of txmerge objects that ``fn`` (or a helper of the notebook it calls) uses.

    Reads the names in the compiled code (globals, attributes, imports inside the body), so it
    needs no source text and sees helpers defined in other cells.
    """
    found: set[str] = set()
    seen: set[int] = set()
    todo = [fn]
    while todo:
        f = todo.pop()
        code = getattr(f, "__code__", None)
        if code is None or id(code) in seen:
            continue
        seen.add(id(code))
        codes = [code]
        while codes:
            c = codes.pop()
            codes += [k for k in c.co_consts if isinstance(k, types.CodeType)]
            for name in c.co_names:
                if name.split(".")[0] == "txmerge":
                    found.add(name)
                    continue
                obj = ns.get(name)
                module = getattr(obj, "__module__", None) or (obj.__name__ if isinstance(obj, types.ModuleType) else "")
                if isinstance(module, str) and module.split(".")[0] == "txmerge":
                    found.add(name)
                elif isinstance(obj, types.FunctionType) and obj.__globals__ is f.__globals__:
                    todo.append(obj)
    return sorted(found)


def _function(ns: dict[str, Any], name: str) -> Callable:
    fn = ns.get(name)
    if fn is None or not callable(fn):
        raise CheckFailed(f"{name} is not defined in the notebook (keep the name and signature of the exercise)")
    used = _library_references(ns, fn)
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


def _check_correlation(ns: dict[str, Any], rng: np.random.Generator) -> str:
    import torch

    from txmerge.core.features import PairMoments

    fn = _function(ns, "correlation_from_sums")
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
        else:  # around the first batch's mean, as txmerge.core.features does (constant units give exact zeros)
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
            raise CheckFailed(f"case {case + 1} (d={d}, n={n}): differs from txmerge.core.features by up to {err:.2e}")
    return f"{cases} cases (shifted sums, dead units) match txmerge.core.features"


def _check_ff(ns: dict[str, Any], rng: np.random.Generator) -> str:
    import torch

    from txmerge.core.permute import apply_permutations, verify_function_preserved
    from txmerge.core.spec import bert_spec
    from txmerge.methods.matchers.correlation import match_units

    match = _function(ns, "match_ff_units")
    permute = _function(ns, "permute_ff")
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
            raise CheckFailed(f"{what}: {wrong[0]} differs from txmerge.core.permute.apply_permutations" + (f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""))
        g = torch.Generator().manual_seed(case)
        inputs = {"input_ids": torch.randint(0, 41, (3, 9), generator=g), "attention_mask": torch.ones(3, 9, dtype=torch.long)}
        res = verify_function_preserved(model, out, inputs)
        if not res.ok:
            raise CheckFailed(f"{what}: the function changed (largest output difference {res.max_abs_diff:.2e})")
    return "matching optimal on 6 matrices; permutation equals the library's and preserves the function on 2 BERTs"


def _check_heads(ns: dict[str, Any], rng: np.random.Generator) -> str:
    from txmerge.methods.matchers.correlation import match_heads

    fn = _function(ns, "match_heads_two_stage")
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


def _check_barrier(ns: dict[str, Any], rng: np.random.Generator) -> str:
    from txmerge.core.interpolate import loss_barrier

    fn = _function(ns, "loss_barrier")
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
    return f"{len(curves)} curves (arrays and lists) match txmerge.core.interpolate.loss_barrier"


CHECKS: dict[int, Callable[[dict[str, Any], np.random.Generator], str]] = {
    1: _check_correlation,
    2: _check_ff,
    3: _check_heads,
    4: _check_barrier,
}


def run_check(number: int, namespace: dict[str, Any], seed: int = 0) -> str:
    """Run exercise ``number``'s check on the functions in ``namespace``.

    Returns a one-line summary, or raises CheckFailed (or whatever the student's code raised).
    """
    if number not in CHECKS:
        raise ValueError(f"there is no exercise {number}; graded exercises are {sorted(CHECKS)}.")
    import torch

    torch.manual_seed(seed)
    with _time_limit(TIME_LIMIT, f"the check of exercise {number}"):
        return CHECKS[number](namespace, np.random.default_rng([seed, number]))


def check(number: int, namespace: dict[str, Any], seed: int = 0) -> None:
    """The autograder test cell: run the check and print ``Exercise N passed: ...`` (raises on failure)."""
    ex = EXERCISES[number - 1]
    summary = run_check(number, namespace, seed)
    print(f"Exercise {number} ({ex.title}, {ex.points} points) passed: {summary}.")
