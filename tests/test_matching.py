"""Matching on synthetic correlations, planted recovery end to end, methods and their validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FAMILIES, tiny_bert, tiny_config, tiny_model, token_batches
from txmerge.base.errors import TxmergeError
from txmerge.core.features import all_nodes, collect_pair_moments, residual_nodes
from txmerge.core.permute import apply_permutations, invert_permutations, random_permutations, verify_function_preserved
from txmerge.core.spec import bert_spec
from txmerge.methods.matchers.correlation import (
    MergeMethod,
    compute_alignment,
    match_heads,
    match_qk,
    match_units,
    required_nodes,
    residual_perms,
)
from txmerge.methods.method import NAMED_METHODS as METHODS
from txmerge.methods.method import method_named
from txmerge.methods.registry import matcher_named, matchers


def _shuffled_identity(perm: np.ndarray, noise: float = 0.1, seed: int = 0) -> np.ndarray:
    """corr[i, perm[i]] high, the rest noise: A unit i matches B unit perm[i]."""
    rng = np.random.default_rng(seed)
    d = len(perm)
    corr = noise * rng.standard_normal((d, d))
    corr[np.arange(d), perm] = 0.6 + 0.1 * rng.random(d)
    return corr


# ------------------------------------------------------------------------ synthetic matching
def test_match_units_recovers_a_shuffle():
    perm = np.random.default_rng(1).permutation(40)
    got = match_units(_shuffled_identity(perm))
    assert got.dtype == torch.int64 and np.array_equal(got.numpy(), perm)


def test_match_units_rejects_bad_matrices():
    with pytest.raises(TxmergeError, match="square"):
        match_units(np.zeros((3, 4)))
    with pytest.raises(TxmergeError, match="NaN"):
        match_units(np.full((2, 2), np.nan))


def _head_structured(n_heads=4, hd=6, seed=0):
    rng = np.random.default_rng(seed)
    heads = rng.permutation(n_heads)
    while np.array_equal(heads, np.arange(n_heads)):
        heads = rng.permutation(n_heads)
    within = [rng.permutation(hd) for _ in range(n_heads)]
    perm = np.concatenate([heads[j] * hd + within[j] for j in range(n_heads)])
    corr = 0.05 * rng.standard_normal((n_heads * hd,) * 2)
    # block structure: matched head blocks carry a moderate, uniform correlation plus the unit match
    for j in range(n_heads):
        k = heads[j]
        corr[j * hd:(j + 1) * hd, k * hd:(k + 1) * hd] += 0.2
    corr[np.arange(n_heads * hd), perm] += 0.5
    return corr, perm, heads, within


def test_match_heads_permute_recovers_permuted_heads_but_monotonic_does_not():
    corr, perm, heads, within = _head_structured()
    hm = match_heads(corr, 4, "permute")
    assert np.array_equal(hm.perm.numpy(), perm)
    assert np.array_equal(hm.head_assignment.numpy(), heads)
    assert all(np.array_equal(w.numpy(), v) for w, v in zip(hm.within, within))
    assert hm.head_scores.shape == (4, 4) and hm.head_scores[np.arange(4), heads].min() > hm.head_scores.max() * 0.5
    mono = match_heads(corr, 4, "monotonic")
    assert np.array_equal(mono.head_assignment.numpy(), np.arange(4))
    assert not np.array_equal(mono.perm.numpy(), perm)
    assert ((mono.perm.view(4, 6) // 6) == torch.arange(4)[:, None]).all()  # heads stay in place
    ignore = match_heads(corr, 4, "ignore")
    assert ignore.head_assignment is None and np.array_equal(ignore.perm.numpy(), perm)
    with pytest.raises(TxmergeError, match="use one of"):
        match_heads(corr, 4, "greedy")
    with pytest.raises(TxmergeError, match="heads"):
        match_heads(corr, 5)


def test_ignore_heads_can_split_heads():
    rng = np.random.default_rng(3)
    perm = rng.permutation(24)  # units scattered across heads
    hm = match_heads(_shuffled_identity(perm), 4, "ignore")
    assert np.array_equal(hm.perm.numpy(), perm)
    assert not ((hm.perm.view(4, 6) // 6) == (hm.perm.view(4, 6) // 6)[:, :1]).all()


def test_match_qk_keeps_head_mapping():
    corr, perm, heads, _ = _head_structured(seed=2)
    qk_within = [np.random.default_rng(9 + j).permutation(6) for j in range(4)]
    qk_perm = np.concatenate([heads[j] * 6 + qk_within[j] for j in range(4)])
    got = match_qk(_shuffled_identity(qk_perm), torch.as_tensor(heads), 4)
    assert np.array_equal(got.numpy(), qk_perm)


# ---------------------------------------------------------------------- planted, end to end
@pytest.fixture(scope="module", params=list(FAMILIES))
def planted(request):
    """A model with its LM head (every family), a copy permuted everywhere (heads, within-head, Q/K, FF,
    residual), and their moments."""
    model = tiny_model(request.param, "mlm", seed=11, hidden=24, heads=3, ff=40, layers=2)
    spec = bert_spec(model, separate_qk=True)
    perms = random_permutations(spec, torch.Generator().manual_seed(12))
    copy = apply_permutations(model, perms, spec)
    batches = token_batches(model.config.vocab_size, n_batches=3, batch=8, seq=16, seed=13)
    moments = collect_pair_moments(model, copy, batches, nodes=all_nodes(2, qk=True), progress=False)
    return model, copy, perms, moments


@pytest.mark.parametrize("residual", ["first", "last", "all"])
@pytest.mark.parametrize("separate_qk", [False, True])
def test_planted_permutations_are_recovered_exactly(planted, residual, separate_qk):
    model, copy, perms, moments = planted
    method = MergeMethod(ff=True, attn=True, residual=residual, heads="permute", separate_qk=separate_qk)
    al = compute_alignment(moments, copy, method)
    assert al.function_preserving
    inverse = invert_permutations(perms)
    for group, perm in al.perms.items():
        assert torch.equal(perm, inverse[group]), group
    if not separate_qk:  # Q/K were planted with their own within-head perms
        assert not any(g.startswith("qk.") for g in al.perms)
    restored = apply_permutations(copy, al.perms, al.spec)
    assert type(restored) is type(model) and restored.state_dict().keys() == model.state_dict().keys()
    if separate_qk:
        for (k, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
            assert torch.equal(a, b), k
    else:
        assert verify_function_preserved(copy, restored, token_batches(model.config.vocab_size, 1, seed=1)[0], atol=1e-5).ok
    assert min(al.matched_corr.values()) > 1 - 1e-6
    assert max(al.identity_corr.values()) < 0.9
    assert al.official_cost()["residual"] == pytest.approx(al.matched_corr["residual"] / 2)
    for l, hm in al.head_matches.items():
        head_order = perms[f"attn.{l}"].view(3, 8)[:, 0] // 8
        assert torch.equal(hm.head_assignment, torch.argsort(head_order))


def test_monotonic_recovers_monotonic_plant():
    model = tiny_bert("cls", seed=21, hidden=24, heads=3, ff=40, layers=2)
    spec = bert_spec(model, include=("attn",))
    perms = random_permutations(spec, torch.Generator().manual_seed(22), permute_heads=False)
    copy = apply_permutations(model, perms, spec)
    moments = collect_pair_moments(model, copy, token_batches(model.config.vocab_size, seed=23), nodes=["attn.0", "attn.1"], progress=False)
    al = compute_alignment(moments, copy, MergeMethod(attn=True, heads="monotonic"))
    restored = apply_permutations(copy, al.perms, al.spec)
    for (k, a), b in zip(model.state_dict().items(), restored.state_dict().values()):
        assert torch.equal(a, b), k


def test_residual_strategies(planted):
    _, _, perms, moments = planted
    assert residual_perms(moments, "identity") == {}
    inv = torch.argsort(perms["residual"])
    for strategy in ("first", "last", "all"):
        got = residual_perms(moments, strategy)
        assert list(got) == ["residual"] and torch.equal(got["residual"], inv)
    sep = residual_perms(moments, "separate")
    assert set(sep) == set(residual_nodes(2)) and all(torch.equal(p, inv) for p in sep.values())
    with pytest.raises(TxmergeError, match="use one of"):
        residual_perms(moments, "middle")
    with pytest.raises(TxmergeError, match="res.1.ff"):
        residual_perms({"res.emb": moments["res.emb"]}, "last", n_layers=2)


def test_alignment_flags_non_preserving_methods(planted):
    _, copy, _, moments = planted
    assert not compute_alignment(moments, copy, MergeMethod(attn=True, heads="ignore")).function_preserving
    assert not compute_alignment(moments, copy, MergeMethod(residual="separate")).function_preserving
    if copy.config.model_type != "gpt2":  # GPT-2's head has no transform: only the tied treatment applies
        official = compute_alignment(moments, copy, MergeMethod(residual="first", tied_decoder="official"))
        assert not official.function_preserving
        assert compute_alignment(moments, copy, MergeMethod(residual="first", tied_decoder="untied")).function_preserving
    assert compute_alignment(moments, copy, METHODS["ff"]).function_preserving
    vanilla = compute_alignment(moments, copy, METHODS["vanilla"])
    assert vanilla.perms == {} and vanilla.function_preserving


def test_compute_alignment_needs_its_nodes(planted):
    _, copy, _, moments = planted
    with pytest.raises(TxmergeError, match="ff.1"):
        compute_alignment({k: v for k, v in moments.items() if k != "ff.1"}, copy, METHODS["ff"])


def test_alignment_accepts_covariances(planted):
    _, copy, perms, moments = planted
    covs = {k: m.covariance() for k, m in moments.items()}
    al = compute_alignment(covs, copy, MergeMethod(ff=True, attn=True, residual="all"))
    assert torch.equal(al.perms["residual"], torch.argsort(perms["residual"]))


# --------------------------------------------------------------------------------- methods
def test_methods_and_required_nodes():
    assert {"vanilla", "ff", "attn", "ff+attn", "first", "last", "all", "separate", "full"} <= set(METHODS)
    assert required_nodes(METHODS["vanilla"], tiny_config(layers=2)) == []
    assert required_nodes(METHODS["ff"], tiny_config(layers=2)) == ["ff.0", "ff.1"]
    assert required_nodes(METHODS["first"], tiny_config(layers=2)) == ["res.emb"]
    assert required_nodes(METHODS["last"], tiny_config(layers=3)) == ["res.2.ff"]
    assert len(required_nodes(METHODS["all"], tiny_config(layers=3))) == 7
    assert set(required_nodes(MergeMethod(attn=True, separate_qk=True), tiny_config(layers=1))) == {"attn.0", "qk.0"}
    full = required_nodes(METHODS["full"], tiny_config(layers=2))
    assert set(full) <= set(all_nodes(2)) and "res.emb" in full and "attn.1" in full
    # one table, one meaning: "all" is the residual strategy of Table 2, "full" the paper's whole method
    assert METHODS["all"].residual == "all" and not METHODS["all"].ff
    assert METHODS["full"] == MergeMethod(ff=True, attn=True, residual="first")
    assert all(m.matcher in matchers() for m in METHODS.values())


@pytest.mark.parametrize("kw", [dict(residual="middle"), dict(heads="greedy"), dict(tied_decoder="fixed")])
def test_unknown_method_values_are_refused(kw):
    with pytest.raises(TxmergeError, match="use one of"):
        MergeMethod(**kw)


def test_bad_method_combinations_are_refused():
    with pytest.raises(TxmergeError, match="separate_qk"):
        MergeMethod(separate_qk=True)
    with pytest.raises(TxmergeError, match="separate_qk"):
        MergeMethod(attn=True, heads="ignore", separate_qk=True)
    with pytest.raises(TxmergeError, match="True or False"):
        MergeMethod(ff="yes")
    with pytest.raises(TxmergeError, match="choose one of .*vanilla"):
        method_named("zipit")


def test_unknown_matcher_lists_the_registered_ones(planted):
    model, copy, _, _ = planted
    with pytest.raises(TxmergeError, match="registered matchers are correlation"):
        matcher_named("zipit")
    from txmerge.methods.align import align_pair

    with pytest.raises(TxmergeError, match="Unknown matcher 'zipit'"):
        align_pair(model, copy, MergeMethod(ff=True, matcher="zipit"), None)
