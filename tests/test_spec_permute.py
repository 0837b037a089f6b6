"""The permutation spec and its application: function preservation, ties, inverses, bad inputs.

Every family (BERT, RoBERTa, DistilBERT, GPT-2) and every kind (base model, LM head, classifier)
runs the same matrix: planted permutations keep the function for every component combination, and
each ablation (Ignore-Heads, separate residual, official decoder) is shown to break it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import FAMILIES, tiny_bert, tiny_config, tiny_model, token_batches
from txmerge.base.errors import TxmergeError
from txmerge.core.permute import (
    apply_permutations,
    compose_permutations,
    invert_permutations,
    permute_state_dict,
    random_permutations,
    verify_function_preserved,
)
from txmerge.core.spec import Fused, bert_spec, is_function_preserving, model_spec

KINDS = ("base", "mlm", "cls")
MASKED_LMS = ("bert", "roberta", "distilbert")  # families with a transform before a tied decoder
TOL = 1e-5  # float32; observed max diffs are ~1e-6


def _inputs(model):
    return token_batches(model.config.vocab_size, n_batches=1, batch=3, seq=10, seed=7)[0]


def _permuted(model, seed=0, preserve_heads=True, permute_heads=True, **spec_kw):
    spec = bert_spec(model, **spec_kw)
    perms = random_permutations(spec, torch.Generator().manual_seed(seed), preserve_heads=preserve_heads, permute_heads=permute_heads)
    return spec, perms, apply_permutations(model, perms, spec)


# ------------------------------------------------------------------------------------ the spec
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", KINDS)
def test_spec_covers_every_parameter_with_consistent_sizes(family, kind):
    model = tiny_model(family, kind)
    spec = model_spec(model, separate_qk=True)
    sd = model.state_dict()
    assert set(spec.axes) == set(sd)
    for key, entries in spec.axes.items():
        assert len(entries) == sd[key].dim(), key
        for axis, entry in enumerate(entries):
            if isinstance(entry, Fused):
                assert sd[key].shape[axis] == sum(spec.groups[g].size for g in entry.segments), key
                continue
            for g in ([entry] if isinstance(entry, str) else entry or []):
                assert spec.groups[g].size == sd[key].shape[axis], (key, g)


def test_gpt2_conv1d_and_fused_qkv_axes():
    spec = model_spec(tiny_model("gpt2", "mlm"), separate_qk=True)
    ax = spec.axes
    assert ax["transformer.h.0.attn.c_attn.weight"] == ("residual", Fused(("qk.0", "qk.0", "attn.0")))  # [in, out]
    assert ax["transformer.h.1.mlp.c_fc.weight"] == ("residual", "ff.1")
    assert ax["transformer.h.1.mlp.c_proj.weight"] == ("ff.1", "residual")
    assert ax["transformer.ln_f.weight"] == ("residual",) and ax["lm_head.weight"] == (None, "residual")
    assert spec.groups["qk.0"].partner == "attn.0" and spec.output_group == "residual"


def test_an_unknown_family_is_refused_listing_the_supported_ones():
    from transformers import T5Config

    with pytest.raises(TxmergeError, match="supported families: bert, distilbert, gpt2, roberta, xlm-roberta"):
        model_spec(T5Config(d_model=16, num_layers=1, num_heads=2, d_ff=32, vocab_size=20))


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


def test_function_preservation_is_one_rule_on_the_spec():
    cfg = tiny_config(layers=2)
    assert model_spec(cfg, tied_decoder="official").function_preserving is False
    # the official handling touches only the MLM head: a classifier stays function-preserving
    assert model_spec(tiny_bert("cls"), tied_decoder="official").function_preserving is True
    assert model_spec(cfg, tied_decoder="official", include=("ff", "attn")).function_preserving is True


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


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("include,permute_heads,separate_qk", COMBOS)
def test_planted_permutations_preserve_function(family, kind, include, permute_heads, separate_qk):
    model = tiny_model(family, kind, seed=1)
    spec, perms, permuted = _permuted(model, seed=2, permute_heads=permute_heads, include=include, separate_qk=separate_qk)
    assert is_function_preserving(spec)
    assert type(permuted) is type(model) and permuted.state_dict().keys() == model.state_dict().keys()
    # something really moved
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), permuted.state_dict().values()))
    result = verify_function_preserved(model, permuted, _inputs(model), atol=TOL, perms=perms, spec=spec)
    assert result.ok, result
    pooled = kind == "base" and getattr(model, "pooler", None) is not None
    assert result.output == ("last_hidden_state+pooler_output" if pooled else "last_hidden_state" if kind == "base" else "logits")


@settings(max_examples=16, deadline=None)
@given(
    family=st.sampled_from(list(FAMILIES)),
    kind=st.sampled_from(KINDS),
    heads=st.sampled_from([2, 4]),
    head_dim=st.integers(4, 12),
    layers=st.integers(1, 3),
    ff=st.integers(8, 48),
    seed=st.integers(0, 10_000),
    separate_qk=st.booleans(),
)
def test_random_configs_preserve_function(family, kind, heads, head_dim, layers, ff, seed, separate_qk):
    model = tiny_model(family, kind, seed=seed, hidden=heads * head_dim, heads=heads, layers=layers, ff=ff)
    spec, perms, permuted = _permuted(model, seed=seed + 1, separate_qk=separate_qk)
    result = verify_function_preserved(model, permuted, _inputs(model), atol=TOL, perms=perms, spec=spec)
    assert result.ok, result


@pytest.mark.parametrize("family", FAMILIES)
def test_identity_permutations_change_nothing(family):
    model = tiny_model(family, "mlm")
    same = apply_permutations(model, {}, model_spec(model))
    for (k, a), b in zip(model.state_dict().items(), same.state_dict().values()):
        assert torch.equal(a, b), k


# ------------------------------------------------------------------------ deliberate ablations
@pytest.mark.parametrize("family", FAMILIES)
def test_units_moved_across_heads_break_function(family):
    model = tiny_model(family, "mlm", seed=3)
    spec, perms, permuted = _permuted(model, seed=4, preserve_heads=False, include=("attn",), heads_per_group=False)
    assert not is_function_preserving(spec)
    assert verify_function_preserved(model, permuted, _inputs(model)).max_abs_diff > 1e-2


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", KINDS)
def test_separate_residual_breaks_function(family, kind):
    model = tiny_model(family, kind, seed=3)
    spec, perms, permuted = _permuted(model, seed=4, include=("residual",), residual="separate")
    assert not is_function_preserving(spec)
    assert verify_function_preserved(model, permuted, _inputs(model), perms=perms, spec=spec).max_abs_diff > 1e-2


@pytest.mark.parametrize("family", MASKED_LMS)
def test_official_decoder_breaks_every_masked_lm_and_the_minimal_fix_keeps_it(family):
    model = tiny_model(family, "mlm", seed=5)
    spec, _, permuted = _permuted(model, seed=6, tied_decoder="official")
    assert not is_function_preserving(spec)
    assert verify_function_preserved(model, permuted, _inputs(model)).max_abs_diff > 1e-2
    spec, _, permuted = _permuted(model, seed=6, tied_decoder="untied")
    assert is_function_preserving(spec)
    assert verify_function_preserved(model, permuted, _inputs(model), atol=TOL).ok
    decoder, embeddings = permuted.get_output_embeddings().weight, permuted.get_input_embeddings().weight
    assert decoder is not embeddings and torch.equal(decoder, model.get_input_embeddings().weight)  # B's own E


def test_gpt2_has_no_decoder_treatment_but_the_tied_one():
    with pytest.raises(TxmergeError, match="does not apply to gpt2"):
        model_spec(tiny_model("gpt2", "mlm"), tied_decoder="untied")


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


@pytest.mark.parametrize("family", FAMILIES)
def test_base_model_hidden_state_needs_the_residual_perm(family):
    model = tiny_model(family, "base", seed=1)
    spec, perms, permuted = _permuted(model, seed=2, include=("residual",))
    assert not verify_function_preserved(model, permuted, _inputs(model)).ok  # compared in different bases
    assert verify_function_preserved(model, permuted, _inputs(model), perms=perms, spec=spec, atol=TOL).ok


# --------------------------------------------------------------------------- perms utilities
@pytest.mark.parametrize("family", FAMILIES)
def test_invert_and_compose(family):
    model = tiny_model(family, "mlm", seed=10)
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


def test_verification_tolerance_grows_with_the_outputs_and_still_catches_a_wrong_permutation():
    from txmerge.core.permute import verify_function_preserved

    model = tiny_bert(seed=5)
    inputs = {"input_ids": torch.randint(5, 50, (2, 12)), "attention_mask": torch.ones(2, 12, dtype=torch.long)}
    same = verify_function_preserved(model, model, inputs, atol=1e-4, rtol=1e-5)
    with torch.inference_mode():
        scale = float(model(**inputs).logits.abs().max())
    assert same.ok and same.max_abs_diff == 0.0 and same.tolerance == pytest.approx(1e-4 + 1e-5 * scale)
    broken = tiny_bert(seed=5)
    with torch.no_grad():
        w = broken.bert.encoder.layer[0].intermediate.dense.weight
        w.copy_(w.flip(0))  # FF units reordered on one side only: a wrong permutation
    wrong = verify_function_preserved(model, broken, inputs, atol=1e-4, rtol=1e-5)
    assert not wrong.ok and wrong.max_abs_diff > 100 * wrong.tolerance
