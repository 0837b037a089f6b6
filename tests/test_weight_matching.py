"""Weight matching (Git Re-Basin): planted recovery from the weights alone on every family and kind,
every head mode and residual strategy, a non-decreasing objective, determinism and bad input."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from conftest import FAMILIES, tiny_model, token_batches
from txmerge.base.errors import TxmergeError
from txmerge.core.permute import apply_permutations, invert_permutations, random_permutations, verify_function_preserved
from txmerge.methods.align import align_pair
from txmerge.methods.matchers.weight import MATCHER, WeightAlignment, weight_matching
from txmerge.methods.method import MergeMethod
from txmerge.methods.registry import matcher_named

SIZES = dict(hidden=24, heads=3, ff=40, layers=2)
FULL = MergeMethod(ff=True, attn=True, residual="first", matcher="weight")
MASKED_LMS = ("bert", "roberta", "distilbert", "xlm-roberta")


def _inputs(model):
    return token_batches(model.config.vocab_size, n_batches=1, batch=3, seq=10, seed=7)[0]


def _plant(model, method, seed=1, **random_kw):
    """B = A permuted by random maps of every group of ``method``'s spec (the library's own functions)."""
    spec = method.spec(model)
    perms = random_permutations(spec, torch.Generator().manual_seed(seed), **random_kw)
    return perms, apply_permutations(model, perms, spec)


def _assert_recovered(model, copy, perms, alignment):
    inverse = invert_permutations(perms)
    assert set(alignment.perms) == set(perms)
    for group, perm in alignment.perms.items():
        assert torch.equal(perm, inverse[group]), group
    restored = apply_permutations(copy, alignment.perms, alignment.spec)
    assert restored.state_dict().keys() == model.state_dict().keys()
    for (key, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), key
    return restored


def _one_sentence(message: str) -> bool:
    return message.endswith(".") and len(re.findall(r"[.!?](?:\s|$)", message)) == 1


def test_registered_and_needs_no_data():
    assert matcher_named("weight") is MATCHER
    assert MATCHER.needs_statistics is False and MATCHER.nodes(FULL, tiny_model("bert", "mlm", **SIZES)) == []
    assert MATCHER.description


# ------------------------------------------------------------------------------- planted recovery
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["base", "mlm", "cls"])
@pytest.mark.parametrize("separate_qk", [False, True])
def test_planted_permutations_are_recovered_from_the_weights(family, kind, separate_qk):
    """FF units, heads, units within heads (and Q/K's own within-head maps) and the residual, all at once."""
    model = tiny_model(family, kind, seed=11, **SIZES)
    method = MergeMethod(ff=True, attn=True, residual="first", heads="permute", separate_qk=separate_qk, matcher="weight")
    perms, copy = _plant(model, method, seed=12)
    assert any(not torch.equal(p, torch.arange(len(p))) for p in perms.values())
    aligned = align_pair(model, copy, method, _inputs(model), progress=False)  # no statistics, no batches
    al = aligned.alignment
    assert isinstance(al, WeightAlignment) and al.function_preserving and al.converged
    restored = _assert_recovered(model, copy, perms, al)
    assert aligned.verification.ok and aligned.tokens == 0
    assert verify_function_preserved(copy, restored, _inputs(model), atol=1e-5, perms=al.perms, spec=al.spec).ok
    assert min(al.matched_corr.values()) > 1 - 1e-9 and max(al.identity_corr.values()) < 0.9
    for layer, hm in al.head_matches.items():  # A-head j ↔ B-head head_assignment[j]
        assert torch.equal(hm.head_assignment, torch.argsort(perms[f"attn.{layer}"].view(3, 8)[:, 0] // 8))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("residual", ["last", "all"])
def test_every_shared_residual_strategy_is_the_same_weight_problem(family, residual):
    model = tiny_model(family, "mlm", seed=13, **SIZES)
    method = MergeMethod(ff=True, residual=residual, matcher="weight")
    perms, copy = _plant(model, method, seed=14)
    _assert_recovered(model, copy, perms, align_pair(model, copy, method, _inputs(model), progress=False).alignment)


@pytest.mark.parametrize("family", FAMILIES)
def test_monotonic_keeps_heads_in_place_and_recovers_a_monotonic_plant(family):
    model = tiny_model(family, "mlm", seed=15, **SIZES)
    method = MergeMethod(attn=True, heads="monotonic", matcher="weight")
    perms, copy = _plant(model, method, seed=16, permute_heads=False)
    _assert_recovered(model, copy, perms, weight_matching(model, copy, method, progress=False))
    perms, copy = _plant(model, method, seed=17)  # heads moved: monotonic may not move them back
    al = weight_matching(model, copy, method, progress=False)
    for layer in range(2):
        assert ((al.perms[f"attn.{layer}"].view(3, 8) // 8) == torch.arange(3)[:, None]).all()
        assert torch.equal(al.head_matches[layer].head_assignment, torch.arange(3))


@pytest.mark.parametrize("family", FAMILIES)
def test_ablations_are_recovered_too_and_flagged(family):
    """Ignore-Heads (units across heads) and separate residual maps: exact weights back, not function-preserving."""
    model = tiny_model(family, "mlm", seed=18, **SIZES)
    for method, kw in ((MergeMethod(attn=True, heads="ignore", matcher="weight"), dict(preserve_heads=False)),
                       (MergeMethod(residual="separate", matcher="weight"), {})):
        perms, copy = _plant(model, method, seed=19, **kw)
        al = weight_matching(model, copy, method, progress=False)
        assert not al.function_preserving and al.head_matches == {}
        _assert_recovered(model, copy, perms, al)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
def test_the_official_double_permuted_decoder_is_left_out_of_the_cost(family):
    model = tiny_model(family, "mlm", seed=20, **SIZES)
    method = MergeMethod(residual="first", tied_decoder="official", matcher="weight")
    perms, copy = _plant(model, method, seed=21)
    al = weight_matching(model, copy, method, progress=False)
    assert torch.equal(al.perms["residual"], torch.argsort(perms["residual"])) and not al.function_preserving


# ------------------------------------------------------------------------------- the descent itself
@pytest.fixture(scope="module", params=list(FAMILIES))
def unrelated(request):
    """Two independently initialised models: a real optimisation problem, several sweeps."""
    return tiny_model(request.param, "mlm", seed=30, **SIZES), tiny_model(request.param, "mlm", seed=31, **SIZES)


def test_objective_never_decreases_and_heads_stay_blocks(unrelated):
    model_a, model_b = unrelated
    method = MergeMethod(ff=True, attn=True, residual="first", separate_qk=True, matcher="weight")
    al = weight_matching(model_a, model_b, method, progress=False)
    obj = np.array(al.objective)
    assert len(obj) == len(al.improved) + 1 >= 3 and al.converged and al.improved[-1] == ()
    assert (np.diff(obj) >= -1e-9 * np.abs(obj).max()).all() and obj[-1] > obj[0]
    for layer, hm in al.head_matches.items():
        for group in (f"attn.{layer}", f"qk.{layer}"):  # Q/K share the head mapping of V/O
            heads = al.perms[group].view(3, 8) // 8
            assert torch.equal(heads, hm.head_assignment[:, None].expand(3, 8)), group
    aligned = align_pair(model_a, model_b, method, _inputs(model_a), progress=False)
    assert aligned.verification.ok


def test_max_iter_stops_the_descent(unrelated):
    al = weight_matching(*unrelated, FULL, max_iter=1, progress=False)
    assert len(al.objective) == 2 and len(al.improved) == 1 and not al.converged


def test_deterministic_for_a_seed(unrelated):
    runs = [weight_matching(*unrelated, FULL, seed=s, progress=False) for s in (5, 5, 6)]
    assert all(torch.equal(runs[0].perms[g], runs[1].perms[g]) for g in runs[0].perms)
    assert runs[0].objective == runs[1].objective and runs[0].improved == runs[1].improved
    assert runs[2].objective[-1] > runs[2].objective[0]  # another seed: another group order, still a descent


# ------------------------------------------------------------------------------------- bad input
def test_bad_input_is_one_sentence():
    model = tiny_model("bert", "mlm", seed=40, **SIZES)
    cases = [
        (model, tiny_model("bert", "mlm", seed=40, hidden=32, heads=4, ff=40, layers=2), FULL, {}),  # other width
        (tiny_model("gpt2", "mlm", **SIZES), model, FULL, {}),  # other family
        (model, model, FULL, dict(max_iter=0)),
        (model, torch.nn.Linear(3, 3), FULL, {}),  # not a supported family
    ]
    for model_a, model_b, method, kw in cases:
        with pytest.raises(TxmergeError) as info:
            weight_matching(model_a, model_b, method, progress=False, **kw)
        assert _one_sentence(str(info.value)), str(info.value)
