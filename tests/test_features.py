"""Feature hooks and streaming pair statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import FAMILIES, tiny_bert, tiny_model, token_batches
from txmerge.base.errors import TxmergeError
from txmerge.core.features import (
    PairMoments,
    all_nodes,
    average_moments,
    collect_pair_moments,
    residual_nodes,
)
from txmerge.core.models import model_inputs


def _concat(batches):
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def _ref_cov(xa: np.ndarray, xb: np.ndarray):
    """Population cross covariance and variances in float64 from explicit samples [n, d]."""
    xa, xb = xa.astype(np.float64), xb.astype(np.float64)
    ca, cb = xa - xa.mean(0), xb - xb.mean(0)
    return ca.T @ cb / len(xa), np.concatenate([(ca**2).mean(0), (cb**2).mean(0)])


def _hidden(model, batch, keep):
    """Residual features from output_hidden_states: [res.emb, res.0.ff, res.1.ff, ...] as [tokens, d]."""
    with torch.inference_mode():
        out = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                               token_type_ids=batch["token_type_ids"], output_hidden_states=True)
    return [h[keep].numpy() for h in out.hidden_states]


@pytest.fixture(scope="module")
def pair():
    return tiny_bert("mlm", seed=0), tiny_bert("mlm", seed=1)


def test_default_nodes_and_shapes(pair):
    a, b = pair
    moments = collect_pair_moments(a, b, token_batches(61), progress=False)
    assert list(moments) == all_nodes(2)
    assert moments["ff.0"].d == 64 and moments["attn.1"].d == 32 and moments["res.emb"].d == 32
    assert moments["ff.0"].sum_ab.dtype == torch.float64 and moments["ff.0"].sum_zz is None
    corr = moments["ff.1"].correlation()
    assert corr.shape == (64, 64) and corr.dtype == np.float64 and np.abs(corr).max() <= 1 + 1e-9


@pytest.mark.parametrize("pad", [True, False])
def test_matches_explicit_float64_computation(pair, pad):
    a, b = pair
    batches = token_batches(61, n_batches=3, pad=pad)
    moments = collect_pair_moments(a, b, batches, nodes=residual_nodes(2), progress=False)
    big = _concat(batches)
    keep = big["attention_mask"].bool()
    ha, hb = _hidden(a, big, keep), _hidden(b, big, keep)
    for node, i in (("res.emb", 0), ("res.0.ff", 1), ("res.1.ff", 2)):
        cross, var = _ref_cov(ha[i], hb[i])
        cov = moments[node].covariance()
        assert moments[node].n == int(keep.sum())
        np.testing.assert_allclose(cov.cross, cross, atol=1e-6, rtol=1e-5)
        np.testing.assert_allclose(cov.var, var, atol=1e-6, rtol=1e-5)
        np.testing.assert_allclose(moments[node].mean(), np.concatenate([ha[i].mean(0), hb[i].mean(0)]), atol=1e-6)


@pytest.mark.parametrize("chunk_tokens", [8192, 7])
def test_streaming_equals_one_concatenated_batch(pair, monkeypatch, chunk_tokens):
    monkeypatch.setattr(PairMoments, "CHUNK_TOKENS", chunk_tokens)  # 7: float64 flush after every batch
    a, b = pair
    batches = token_batches(61, n_batches=4, seed=3)
    stream = collect_pair_moments(a, b, batches, progress=False, full=True)
    whole = collect_pair_moments(a, b, [_concat(batches)], progress=False, full=True)
    for node in stream:
        s, w = stream[node].covariance(), whole[node].covariance()
        assert stream[node].n == whole[node].n
        # float32 forward passes and per-batch float32 products: agreement to float32 rounding
        np.testing.assert_allclose(s.cross, w.cross, atol=1e-6, rtol=1e-5)
        np.testing.assert_allclose(s.var, w.var, atol=1e-6, rtol=1e-5)
        np.testing.assert_allclose(s.full, w.full, atol=1e-6, rtol=1e-5)
        np.testing.assert_allclose(stream[node].correlation(), whole[node].correlation(), atol=1e-5)


def test_full_covariance_agrees_with_blocks(pair):
    a, b = pair
    m = collect_pair_moments(a, b, token_batches(61), nodes=["attn.0"], progress=False, full=True)["attn.0"]
    cov = m.covariance()
    np.testing.assert_allclose(cov.full[:32, 32:], cov.cross, atol=1e-6)
    np.testing.assert_allclose(np.diag(cov.full), cov.var, atol=1e-6)


def test_merge_and_shift_are_exact(pair):
    a, b = pair
    batches = token_batches(61, n_batches=4, seed=5)
    first = collect_pair_moments(a, b, batches[:2], nodes=["ff.0"], progress=False, full=True)["ff.0"]
    second = collect_pair_moments(a, b, batches[2:], nodes=["ff.0"], progress=False, full=True)["ff.0"]
    whole = collect_pair_moments(a, b, batches, nodes=["ff.0"], progress=False, full=True)["ff.0"]
    merged = first.merged(second)
    assert merged.n == whole.n
    np.testing.assert_allclose(merged.covariance().cross, whole.covariance().cross, atol=1e-6)
    np.testing.assert_allclose(merged.covariance().full, whole.covariance().full, atol=1e-6)
    moved = first.shifted_to(torch.zeros_like(first.shift))
    np.testing.assert_allclose(moved.covariance().cross, first.covariance().cross, atol=1e-10)


def test_padding_is_excluded(pair):
    a, b = pair
    batches = token_batches(61, n_batches=2, seed=1)
    changed = []
    for batch in batches:
        batch = dict(batch)
        ids = batch["input_ids"].clone()
        ids[batch["attention_mask"] == 0] = 17  # other tokens at padded positions
        types = torch.where(batch["attention_mask"] == 1, batch["token_type_ids"], torch.ones_like(ids))
        batch["input_ids"], batch["token_type_ids"] = ids, types
        changed.append(batch)
    assert any((b["attention_mask"] == 0).any() for b in batches)
    one = collect_pair_moments(a, b, batches, progress=False)
    two = collect_pair_moments(a, b, changed, progress=False)
    n_real = sum(int(b["attention_mask"].sum()) for b in batches)
    for node in one:
        assert one[node].n == two[node].n == n_real
        np.testing.assert_allclose(one[node].covariance().cross, two[node].covariance().cross, atol=1e-9)


def test_drop_special_tokens(pair):
    a, b = pair
    batches = token_batches(61, n_batches=2, seed=2)
    kept = collect_pair_moments(a, b, batches, nodes=["res.0.ff"], drop_special_tokens=True, progress=False)["res.0.ff"]
    big = _concat(batches)
    keep = big["attention_mask"].bool() & ~big["special_tokens_mask"].bool()
    assert kept.n == int(keep.sum()) < int(big["attention_mask"].sum())
    cross, _ = _ref_cov(_hidden(a, big, keep)[1], _hidden(b, big, keep)[1])
    np.testing.assert_allclose(kept.covariance().cross, cross, atol=1e-6, rtol=1e-5)
    no_mask = [{k: v for k, v in batch.items() if k != "special_tokens_mask"} for batch in batches]
    with pytest.raises(TxmergeError, match="special_tokens_mask"):
        collect_pair_moments(a, b, no_mask, drop_special_tokens=True, progress=False)


def test_qk_node_pools_queries_and_keys(pair):
    a, b = pair
    batches = token_batches(61, n_batches=2, seed=4)
    m = collect_pair_moments(a, b, batches, nodes=["qk.1"], progress=False)["qk.1"]
    big = _concat(batches)
    keep = big["attention_mask"].bool()
    assert m.n == 2 * int(keep.sum())
    feats = {}
    for side, model in (("a", a), ("b", b)):
        layer = model.bert.encoder.layer[1].attention.self
        grabbed = {}
        hooks = [layer.query.register_forward_hook(lambda _m, _i, o: grabbed.__setitem__("q", o)),
                 layer.key.register_forward_hook(lambda _m, _i, o: grabbed.__setitem__("k", o))]
        with torch.inference_mode():
            model.bert(input_ids=big["input_ids"], attention_mask=big["attention_mask"], token_type_ids=big["token_type_ids"])
        for h in hooks:
            h.remove()
        feats[side] = np.concatenate([grabbed["q"][keep].numpy(), grabbed["k"][keep].numpy()])
    cross, var = _ref_cov(feats["a"], feats["b"])
    np.testing.assert_allclose(m.covariance().cross, cross, atol=1e-6, rtol=1e-5)


def test_early_stop_gives_same_numbers(pair):
    a, b = pair
    batches = token_batches(61, n_batches=2, seed=6)
    alone = collect_pair_moments(a, b, batches, nodes=["res.emb"], progress=False)["res.emb"]
    full = collect_pair_moments(a, b, batches, progress=False)["res.emb"]
    np.testing.assert_allclose(alone.covariance().cross, full.covariance().cross, atol=1e-12)


def test_identical_models_correlate_perfectly_and_modes_restored(pair):
    a, _ = pair
    a.train()
    m = collect_pair_moments(a, a, token_batches(61), nodes=["res.1.attn", "ff.1"], progress=False)
    assert a.training  # mode restored
    a.eval()
    np.testing.assert_allclose(np.diag(m["res.1.attn"].correlation()), 1.0, atol=1e-6)


def test_correlation_guard_for_constant_features():
    d = 3
    g = torch.Generator().manual_seed(0)
    xa = torch.randn(50, d, generator=g)
    xb = torch.randn(50, d, generator=g)
    xa[:, 1] = 4.0  # constant feature
    m = PairMoments.empty(torch.cat([xa.mean(0), xb.mean(0)]).double())
    m.update(xa, xb)
    corr = m.correlation()
    assert np.all(corr[1] == 0) and np.isfinite(corr).all()
    assert np.all(m.correlation(absolute=True) >= 0)
    with pytest.raises(TxmergeError, match="no tokens"):
        PairMoments.empty(torch.zeros(4)).correlation()


def test_average_moments_averages_covariances(pair):
    a, b = pair
    m = collect_pair_moments(a, b, token_batches(61), nodes=residual_nodes(2), progress=False)
    avg = average_moments(list(m.values()))
    np.testing.assert_allclose(avg.cross, np.mean([x.covariance().cross for x in m.values()], axis=0), atol=1e-12)
    assert avg.correlation().shape == (32, 32)
    with pytest.raises(TxmergeError):
        average_moments([])
    with pytest.raises(TxmergeError, match="widths"):
        average_moments([m["res.emb"], collect_pair_moments(a, b, token_batches(61), nodes=["ff.0"], progress=False)["ff.0"]])


# -------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("change", [dict(hidden=48, heads=4), dict(layers=3), dict(heads=2), dict(ff=32)])
def test_mismatched_architectures_are_refused(pair, change):
    a, _ = pair
    other = tiny_bert("mlm", seed=1, **change)
    with pytest.raises(TxmergeError, match="models differ"):
        collect_pair_moments(a, other, token_batches(61), progress=False)


def test_empty_inputs_are_refused(pair):
    a, b = pair
    with pytest.raises(TxmergeError, match="no batches"):
        collect_pair_moments(a, b, [], progress=False)
    batch = token_batches(61, n_batches=1)[0]
    batch["attention_mask"] = torch.zeros_like(batch["attention_mask"])
    with pytest.raises(TxmergeError, match="no selected tokens"):
        collect_pair_moments(a, b, [batch], progress=False)


@pytest.mark.parametrize("nodes,match", [(["ff.7"], "layers"), (["mlp.0"], "unknown feature node"), ([], "no feature nodes")])
def test_bad_nodes_are_refused(pair, nodes, match):
    a, b = pair
    with pytest.raises(TxmergeError, match=match):
        collect_pair_moments(a, b, token_batches(61), nodes=nodes, progress=False)


def test_batches_need_an_attention_mask(pair):
    a, b = pair
    with pytest.raises(TxmergeError, match="attention_mask"):
        collect_pair_moments(a, b, [{"input_ids": torch.ones(2, 3, dtype=torch.long)}], progress=False)


def test_update_algebra_is_exact_on_integer_features():
    """Integer features make float32 products exact, so chunked streaming must equal one pass to 1e-12."""
    g = torch.Generator().manual_seed(0)
    xa = torch.randint(-5, 6, (200, 6), generator=g).float() + 10.0
    xb = torch.randint(-5, 6, (200, 6), generator=g).float()
    whole = PairMoments.empty(torch.zeros(12), full=True)
    whole.update(xa, xb)
    stream = PairMoments.empty(torch.cat([xa[:7].mean(0), xb[:7].mean(0)]).round(), full=True)  # integer shift: exact
    for i in range(0, 200, 7):
        stream.update(xa[i:i + 7], xb[i:i + 7])
    ref_cross, ref_var = _ref_cov(xa.numpy(), xb.numpy())
    empty_first = PairMoments.empty(torch.ones(12), full=True).merged(stream)  # an empty start adds nothing
    for m in (whole, stream, stream.merged(PairMoments.empty(torch.ones(12))), empty_first):
        cov = m.covariance()
        assert m.n == 200
        if m.sum_zz is not None:
            np.testing.assert_allclose(cov.full[:6, 6:], ref_cross, atol=1e-12)
        np.testing.assert_allclose(cov.cross, ref_cross, atol=1e-12)
        np.testing.assert_allclose(cov.var, ref_var, atol=1e-12)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_hooks_the_residual_stream_and_the_inner_widths(family):
    """res.emb and res.0.ff equal the base model's hidden states 0 and 1 (its own output_hidden_states)."""
    a, b = tiny_model(family, "cls", seed=0, layers=2), tiny_model(family, "cls", seed=1, layers=2)
    batches = token_batches(61, n_batches=2, seed=3)
    m = collect_pair_moments(a, b, batches, nodes=all_nodes(2, qk=True), progress=False)
    assert m["ff.1"].d == 64 and m["attn.0"].d == 32 and m["qk.1"].d == 32 and m["res.1.attn"].d == 32
    big = _concat(batches)
    keep = big["attention_mask"].bool()
    assert m["qk.0"].n == 2 * m["res.emb"].n == 2 * int(keep.sum())
    states = {}
    for side, model in (("a", a), ("b", b)):
        with torch.inference_mode():
            out = model.base_model(**model_inputs(model.base_model, big), output_hidden_states=True)
        states[side] = [h[keep].numpy() for h in out.hidden_states]
    for node, index in (("res.emb", 0), ("res.0.ff", 1)):
        cross, var = _ref_cov(states["a"][index], states["b"][index])
        np.testing.assert_allclose(m[node].covariance().cross, cross, atol=1e-5, rtol=1e-4)
