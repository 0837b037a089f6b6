"""Every registered matcher × every family: planted recovery and function preservation through
``align_pair``, so a new matcher (one file in ``methods/matchers/``) is tested the day it is added."""

from __future__ import annotations

import pytest
import torch

from conftest import FAMILIES, tiny_model, token_batches
from txmerge.core.features import collect_pair_moments
from txmerge.core.permute import apply_permutations, invert_permutations, random_permutations, verify_function_preserved
from txmerge.core.spec import feature_nodes, sizes_of
from txmerge.methods.align import align_pair
from txmerge.methods.method import MergeMethod
from txmerge.methods.registry import matchers

MATCHERS = list(matchers())
#: The paper's method (FF + Head-Perm + residual) and the variant with its own Q/K maps and all residual nodes.
METHODS = {"full": dict(ff=True, attn=True, residual="first"),
           "permute+qk+all": dict(ff=True, attn=True, residual="all", separate_qk=True)}


def _inputs(model):
    return token_batches(model.config.vocab_size, n_batches=1, batch=3, seq=10, seed=7)[0]


def _tiny(family: str, seed: int) -> torch.nn.Module:
    return tiny_model(family, "mlm", seed=seed, hidden=24, heads=3, ff=40, layers=2)


@pytest.fixture(scope="module", params=list(FAMILIES))
def family(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def model(family):
    return _tiny(family, 11)


@pytest.mark.parametrize("name", MATCHERS)
def test_a_matcher_follows_the_protocol(name, model):
    matcher = matchers()[name]
    method = MergeMethod(**METHODS["full"], matcher=name)
    assert matcher.name == name and isinstance(matcher.needs_statistics, bool) and matcher.description
    nodes = matcher.nodes(method, model)
    # any node the features can collect (e.g. the pooled query/key node ``qk.{l}`` beside the spec's own)
    assert set(nodes) <= set(feature_nodes(sizes_of(model)[1], qk=True))
    assert bool(nodes) or not matcher.needs_statistics


@pytest.mark.parametrize("variant", list(METHODS))
@pytest.mark.parametrize("name", MATCHERS)
def test_planted_permutations_are_recovered_and_function_preserved(name, variant, model):
    matcher = matchers()[name]
    method = MergeMethod(**METHODS[variant], matcher=name)
    spec = method.spec(model)
    perms = random_permutations(spec, torch.Generator().manual_seed(12))
    copy = apply_permutations(model, perms, spec)
    statistics = None
    if matcher.needs_statistics:  # the pair's moments on random text, only the nodes the matcher asks for
        batches = token_batches(model.config.vocab_size, n_batches=3, batch=8, seq=16, seed=13)
        statistics = collect_pair_moments(model, copy, batches, nodes=matcher.nodes(method, copy), progress=False)
    aligned = align_pair(model, copy, method, _inputs(model), statistics=statistics, progress=False)
    al = aligned.alignment
    assert al.function_preserving and aligned.function_preserving and aligned.verification.ok
    inverse = invert_permutations(perms)
    for group, perm in al.perms.items():
        assert torch.equal(perm, inverse[group]), group
    assert set(al.perms) == set(perms)
    for (key, a), b in zip(model.state_dict().items(), aligned.permuted.state_dict().values()):
        assert torch.equal(a, b), key
    check = verify_function_preserved(copy, aligned.permuted, _inputs(model), atol=1e-5, perms=al.perms, spec=al.spec)
    assert check.ok, check


@pytest.mark.parametrize("name", MATCHERS)
def test_unrelated_models_are_mapped_without_changing_b(name, family, model):
    """On two independent models nothing is planted, yet B's function must survive its matcher's maps."""
    matcher = matchers()[name]
    method = MergeMethod(**METHODS["full"], matcher=name)
    batches = token_batches(model.config.vocab_size, n_batches=2, batch=8, seq=16, seed=14)
    aligned = align_pair(model, _tiny(family, 12), method, _inputs(model),
                         batches=batches if matcher.needs_statistics else None, progress=False)
    assert aligned.verification.ok and aligned.alignment.function_preserving
