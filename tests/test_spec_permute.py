"""The permutation spec and its application: function preservation, ties, inverses, bad inputs."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import tiny_bert, tiny_config, token_batches
from txmerge.errors import TxmergeError
from txmerge.permute import (
    apply_permutations,
    compose_permutations,
    invert_permutations,
    permute_state_dict,
    random_permutations,
    verify_function_preserved,
)
from txmerge.spec import bert_spec, is_function_preserving

KINDS = ("base", "mlm", "cls")
TOL = 1e-5  # float32; observed max diffs are ~1e-6


def _inputs(model):
    return token_batches(model.config.vocab_size, n_batches=1, batch=3, seq=10, seed=7)[0]


def _permuted(model, seed=0, preserve_heads=True, permute_heads=True, **spec_kw):
    spec = bert_spec(model, **spec_kw)
    perms = random_permutations(spec, torch.Generator().manual_seed(seed), preserve_heads=preserve_heads, permute_heads=permute_heads)
    return spec, perms, apply_permutations(model, perms, spec)


# ------------------------------------------------------------------------------------ the spec
@pytest.mark.parametrize("kind", KINDS)
def test_spec_covers_every_parameter_with_consistent_sizes(kind):
    model = tiny_bert(kind)
    spec = bert_spec(model, separate_qk=True)
    sd = model.state_dict()
    assert set(spec.axes) == set(sd)
    for key, entries in spec.axes.items():
        assert len(entries) == sd[key].dim(), key
        for axis, entry in enumerate(entries):
            for g in ([entry] if isinstance(entry, str) else entry or []):
                assert spec.groups[g].size == sd[key].shape[axis], (key, g)


def test_spec_axes_follow_the_paper():
    spec = bert_spec(tiny_config(layers=2))
    ax = spec.axes
    assert ax["bert.encoder.layer.0.intermediate.dense.weight"] == ("ff.0", "residual")
    assert ax["bert.encoder.layer.1.output.dense.weight"] == ("residual", "ff.1")
    assert ax["bert.encoder.layer.0.attention.self.query.weight"] == ("attn.0", "residual")
    assert ax["bert.encoder.layer.0.attention.output.dense.weight"] == ("residual", "attn.0")
    assert ax["bert.embeddings.position_embeddings.weight"] == (None, "residual")
    assert ax["bert.embeddings.LayerNorm.weight"] == ("residual",)
    assert ax["bert.pooler.dense.weight"] == (None, "residual")
    assert ax["classifier.weight"] == (None, None)
    assert ax["cls.predictions.transform.dense.weight"] == ("residual", "residual")
    assert ax["cls.predictions.decoder.weight"] == (None, "residual")
    assert ax["cls.predictions.decoder.bias"] == (None,)
    assert spec.groups["attn.0"].heads == 4 and spec.groups["attn.0"].head_dim == 8
    assert spec.groups["ff.0"].heads is None and spec.groups["ff.0"].size == 64


def test_spec_variants():
    cfg = tiny_config(layers=2)
    qk = bert_spec(cfg, separate_qk=True).axes
    assert qk["bert.encoder.layer.1.attention.self.key.weight"] == ("qk.1", "residual")
    assert qk["bert.encoder.layer.1.attention.self.value.weight"] == ("attn.1", "residual")
    sep = bert_spec(cfg, residual="separate")
    assert {g for g in sep.groups if g.startswith("res.")} == {"res.emb", "res.0.attn", "res.0.ff", "res.1.attn", "res.1.ff"}
    assert sep.axes["bert.encoder.layer.0.attention.self.query.weight"] == ("attn.0", "res.emb")
    assert sep.axes["bert.encoder.layer.1.attention.self.query.weight"] == ("attn.1", "res.0.ff")
    assert sep.axes["bert.encoder.layer.1.intermediate.dense.weight"] == ("ff.1", "res.1.attn")
    assert sep.axes["bert.pooler.dense.weight"] == (None, "res.1.ff")
    off = bert_spec(cfg, tied_decoder="official").axes
    assert off["cls.predictions.transform.dense.weight"] == (None, "residual")
    assert off["cls.predictions.decoder.weight"] == (None, ("residual", "residual"))
    only_ff = bert_spec(cfg, include=("ff",))
    assert set(only_ff.groups) == {"ff.0", "ff.1"}
    assert only_ff.axes["bert.encoder.layer.0.intermediate.dense.weight"] == ("ff.0", None)
    assert bert_spec(tiny_bert("base")).info["prefix"] == ""
    assert not bert_spec(cfg, heads_per_group=False).groups["attn.0"].heads


@pytest.mark.parametrize("kw", [dict(residual="both"), dict(tied_decoder="fixed"), dict(include=("ff", "mlp"))])
def test_spec_rejects_unknown_values(kw):
    with pytest.raises(TxmergeError, match="use one of"):
        bert_spec(tiny_config(), **kw)


# ---------------------------------------------------------------------- function preservation
COMBOS = [
    # (include, permute_heads, separate_qk)
    (("ff",), True, False),
    (("attn",), True, False),
    (("attn",), False, False),  # monotonic heads
    (("attn",), True, True),
    (("residual",), True, False),
    (("ff", "attn"), True, False),
    (("ff", "residual"), True, False),
    (("attn", "residual"), True, False),
    (("ff", "attn", "residual"), True, False),
    (("ff", "attn", "residual"), False, False),
    (("ff", "attn", "residual"), True, True),
    (("ff", "attn", "residual"), False, True),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("include,permute_heads,separate_qk", COMBOS)
def test_planted_permutations_preserve_function(kind, include, permute_heads, separate_qk):
    model = tiny_bert(kind, seed=1)
    spec, perms, permuted = _permuted(model, seed=2, permute_heads=permute_heads, include=include, separate_qk=separate_qk)
    assert is_function_preserving(spec)
    # something really moved
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), permuted.state_dict().values()))
    result = verify_function_preserved(model, permuted, _inputs(model), atol=TOL, perms=perms)
    assert result.ok, result
    assert result.output == ("last_hidden_state+pooler_output" if kind == "base" else "logits")


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    heads=st.sampled_from([2, 4]),
    head_dim=st.integers(4, 12),
    layers=st.integers(1, 3),
    ff=st.integers(8, 48),
    seed=st.integers(0, 10_000),
    separate_qk=st.booleans(),
)
def test_random_configs_preserve_function(kind, heads, head_dim, layers, ff, seed, separate_qk):
    model = tiny_bert(kind, seed=seed, hidden=heads * head_dim, heads=heads, layers=layers, ff=ff)
    _, perms, permuted = _permuted(model, seed=seed + 1, separate_qk=separate_qk)
    result = verify_function_preserved(model, permuted, _inputs(model), atol=TOL, perms=perms)
    assert result.ok, result


def test_identity_permutations_change_nothing():
    model = tiny_bert("mlm")
    same = apply_permutations(model, {}, bert_spec(model))
    for (k, a), b in zip(model.state_dict().items(), same.state_dict().values()):
        assert torch.equal(a, b), k


# ------------------------------------------------------------------------ deliberate ablations
def test_units_moved_across_heads_break_function():
    model = tiny_bert("mlm", seed=3)
    spec, perms, permuted = _permuted(model, seed=4, preserve_heads=False, include=("attn",), heads_per_group=False)
    assert not is_function_preserving(spec)
    assert verify_function_preserved(model, permuted, _inputs(model)).max_abs_diff > 1e-2


@pytest.mark.parametrize("kind", KINDS)
def test_separate_residual_breaks_function(kind):
    model = tiny_bert(kind, seed=3)
    spec, perms, permuted = _permuted(model, seed=4, include=("residual",), residual="separate")
    assert not is_function_preserving(spec)
    assert verify_function_preserved(model, permuted, _inputs(model), perms=perms).max_abs_diff > 1e-2


def test_official_tied_decoder_breaks_mlm_and_unties():
    model = tiny_bert("mlm", seed=5)
    spec, perms, permuted = _permuted(model, seed=6, tied_decoder="official")
    assert not is_function_preserving(spec)
    assert verify_function_preserved(model, permuted, _inputs(model)).max_abs_diff > 1e-2
    dec, emb = permuted.cls.predictions.decoder.weight, permuted.bert.embeddings.word_embeddings.weight
    assert dec is not emb and permuted.config.tie_word_embeddings is False
    p = perms["residual"]
    E = model.bert.embeddings.word_embeddings.weight
    assert torch.equal(emb, E[:, p]) and torch.equal(dec, E[:, p][:, p])  # E·Pᵀ and E·Pᵀ·Pᵀ
    # the original keeps its tie
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert model.config.tie_word_embeddings is True


def test_official_untied_model_survives_save_and_load(tmp_path):
    model = tiny_bert("mlm", seed=5)
    _, _, permuted = _permuted(model, seed=6, tied_decoder="official")
    permuted.save_pretrained(tmp_path)
    reloaded = type(permuted).from_pretrained(tmp_path).eval()
    assert verify_function_preserved(permuted, reloaded, _inputs(model), atol=0.0).ok


def test_correct_tied_decoder_keeps_tie():
    model = tiny_bert("mlm", seed=5)
    _, perms, permuted = _permuted(model, seed=6)
    assert permuted.cls.predictions.decoder.weight is permuted.bert.embeddings.word_embeddings.weight
    assert permuted.cls.predictions.decoder.bias is permuted.cls.predictions.bias


def test_original_model_untouched():
    model = tiny_bert("mlm", seed=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _permuted(model, seed=9)
    for k, v in model.state_dict().items():
        assert torch.equal(before[k], v), k


def test_bertmodel_hidden_state_needs_the_residual_perm():
    model = tiny_bert("base", seed=1)
    _, perms, permuted = _permuted(model, seed=2, include=("residual",))
    assert not verify_function_preserved(model, permuted, _inputs(model)).ok  # compared in different bases
    assert verify_function_preserved(model, permuted, _inputs(model), perms=perms, atol=TOL).ok


# --------------------------------------------------------------------------- perms utilities
def test_invert_and_compose():
    model = tiny_bert("mlm", seed=10)
    spec, perms, permuted = _permuted(model, seed=11, separate_qk=True)
    back = apply_permutations(permuted, invert_permutations(perms), spec)
    for (k, a), b in zip(model.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k
    ident = compose_permutations(perms, invert_permutations(perms))
    assert all(torch.equal(p, torch.arange(p.numel())) for p in ident.values())


def test_random_permutations_respect_heads():
    spec = bert_spec(tiny_config(hidden=32, heads=4), separate_qk=True)
    g = torch.Generator().manual_seed(0)
    perms = random_permutations(spec, g)
    for l in range(2):
        a, q = perms[f"attn.{l}"].view(4, 8), perms[f"qk.{l}"].view(4, 8)
        heads_a, heads_q = a // 8, q // 8
        assert (heads_a == heads_a[:, :1]).all() and torch.equal(heads_a[:, 0], heads_q[:, 0])
    mono = random_permutations(spec, g, permute_heads=False)
    assert torch.equal(mono["attn.0"].view(4, 8) // 8, torch.arange(4)[:, None].expand(4, 8))
    free = random_permutations(spec, g, groups=["attn.0"], preserve_heads=False)
    assert set(free) == {"attn.0"} and sorted(free["attn.0"].tolist()) == list(range(32))


# -------------------------------------------------------------------------------- bad inputs
def test_wrong_length_permutation_is_refused():
    model = tiny_bert("mlm")
    spec = bert_spec(model)
    with pytest.raises(TxmergeError, match="length"):
        apply_permutations(model, {"ff.0": torch.arange(63)}, spec)


def test_non_permutation_is_refused():
    model = tiny_bert("mlm")
    with pytest.raises(TxmergeError, match="not a permutation"):
        permute_state_dict(model.state_dict(), {"residual": torch.zeros(32, dtype=torch.long)}, bert_spec(model))


def test_unknown_group_is_refused():
    model = tiny_bert("mlm")
    with pytest.raises(TxmergeError, match="not in the spec"):
        permute_state_dict(model.state_dict(), {"qk.0": torch.arange(32)}, bert_spec(model))


def test_spec_with_wrong_prefix_is_refused():
    model = tiny_bert("base")
    with pytest.raises(TxmergeError, match="not in the permutation spec"):
        permute_state_dict(model.state_dict(), {}, bert_spec(model.config))  # prefix "bert." vs BertModel
