"""bf16 autocast of the forward passes (on CUDA by default), exercised on CPU with
``torch.autocast("cpu", dtype=torch.bfloat16)``: the statistics still accumulate in float64, the
losses are float32, and both stay within a measured error bound of the float32 path."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from txmerge.base import precision
from txmerge.core.evaluate import mlm_loss, task_loss
from txmerge.core.features import collect_pair_moments


def test_autocast_is_on_for_cuda_only_unless_asked(monkeypatch):
    assert precision.autocast_enabled("cuda") and not precision.autocast_enabled("cpu")
    assert precision.autocast_enabled("cpu", True) and not precision.autocast_enabled("cuda", False)
    monkeypatch.setenv("TXMERGE_AUTOCAST", "0")
    assert not precision.autocast_enabled("cuda")
    with precision.forward_autocast("cpu", True):
        assert torch.is_autocast_enabled("cpu")
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
        with precision.full_precision("cpu"):
            assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32
    with precision.forward_autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")


def test_bf16_feature_pass_keeps_float64_statistics_within_bound(make_bert, make_batches):
    a, b = make_bert("mlm", seed=1, hidden=64, ff=128), make_bert("mlm", seed=2, hidden=64, ff=128)
    batches = make_batches(61, n_batches=4, batch=8, seq=16)
    ref = collect_pair_moments(a, b, batches, progress=False, autocast=False)
    low = collect_pair_moments(a, b, batches, progress=False, autocast=True)
    assert set(ref) == set(low)
    worst = 0.0
    for node in ref:
        assert low[node].sum_ab.dtype == torch.float64 and low[node].n == ref[node].n
        c_ref, c_low = ref[node].correlation(), low[node].correlation()
        assert np.isfinite(c_low).all()
        worst = max(worst, float(np.abs(c_low - c_ref).max()))
    # bf16 keeps 8 bits of mantissa: correlations move (0.010 at most here, measured), but by hundredths at most
    assert 0 < worst < 0.03, worst


def test_bf16_losses_are_float32_and_close(make_bert, make_batches):
    model = make_bert("mlm", seed=3)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 61, (8, 16), generator=g)
    labels = torch.where(torch.rand(8, 16, generator=g) < 0.3, ids, torch.full_like(ids, -100))
    eval_set = {"input_ids": ids, "labels": labels, "attention_mask": torch.ones_like(ids)}
    ref, low = mlm_loss(model, eval_set, autocast=False), mlm_loss(model, eval_set, autocast=True)
    assert isinstance(low["loss"], float) and low["loss"] != ref["loss"]
    assert abs(low["loss"] - ref["loss"]) < 0.02 * ref["loss"]
    cls = make_bert("cls", seed=4)
    batches = [{**b, "labels": torch.arange(len(b["input_ids"])) % 3} for b in make_batches(61, n_batches=2, batch=6)]
    t_ref, t_low = task_loss(cls, batches, False, autocast=False), task_loss(cls, batches, False, autocast=True)
    assert t_low["loss"] == pytest.approx(t_ref["loss"], rel=0.02) and t_low["accuracy"] >= 0
