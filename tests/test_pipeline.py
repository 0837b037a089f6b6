"""The experiment pipeline on the smoke preset's micro models (2 layers, 32 wide, trained in seconds):
barriers tables, verification, caching, curves shared across method names, bad inputs, and a GLUE-style
task experiment with on-the-fly micro fine-tunes. Nothing is downloaded: the pinned archives must already
be in a local download folder, otherwise these tests skip."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from txmerge.base.errors import TxmergeError
from txmerge.core.evaluate import mlm_loss, task_loss
from txmerge.core.interpolate import loss_barrier, loss_barrier_linear
from txmerge.experiments import along_training as progress
from txmerge.experiments import pipeline
from txmerge.methods.matchers.correlation import matched_correlation

REPO = Path(__file__).resolve().parents[1]
LAMBDAS = np.linspace(0, 1, 5)
MLM_KW = dict(n_sentences=64, eval_blocks=4, lambdas=LAMBDAS, progress=False)


# ------------------------------------------------------------------------------------ environment
@pytest.fixture
def fresh_cache(env, tmp_path, monkeypatch) -> Path:
    """An empty results folder that still sees the (already trained) micro models."""
    from txmerge.zoo import tiny as zoo

    zoo.ensure_smoke_model(1), zoo.ensure_smoke_model(2)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "smoke-zoo").symlink_to(env / "smoke-zoo", target_is_directory=True)
    monkeypatch.setenv("TXMERGE_CACHE", str(cache))
    return cache


def _row(results, name):
    b = results.barriers
    rows = b[b["method"] == name]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# ------------------------------------------------------------------------------------ MLM experiment
def test_mlm_smoke_run_vanilla_and_ff_attn(env):
    exp = pipeline.MLMExperiment("smoke", **MLM_KW)
    res = exp.run([[1, 2]], ["vanilla", "ff+attn"])
    b = res.barriers
    assert b["method"].tolist() == ["vanilla", "ff+attn"] and b["pair"].tolist() == ["1-2", "1-2"]
    assert len(res.curves) == 2 * len(LAMBDAS)

    van, fa = _row(res, "vanilla"), _row(res, "ff+attn")
    assert van["function_preserving"] and van["max_abs_diff"] == 0.0
    assert fa["function_preserving"] and fa["max_abs_diff"] < 1e-4
    # endpoints: A is untouched, B is function-equal after the permutation
    assert fa["loss_A"] == pytest.approx(van["loss_A"], abs=1e-6)
    assert fa["loss_B"] == pytest.approx(van["loss_B"], abs=1e-4)
    assert van["loss_A"] == pytest.approx(mlm_loss(exp.model(1), exp.eval_set())["loss"], abs=1e-6)
    assert van["loss_B"] == pytest.approx(mlm_loss(exp.model(2), exp.eval_set())["loss"], abs=1e-6)
    for r in res.results:
        loss = r.curve["loss"].to_numpy()
        assert r.curve["lambda"].tolist() == pytest.approx(LAMBDAS.tolist())
        assert r.barrier == pytest.approx(loss_barrier(loss, LAMBDAS))
        assert r.barrier_linear == pytest.approx(loss_barrier_linear(loss, LAMBDAS))
        assert np.isfinite(loss).all()
    ff_attn = next(r for r in res.results if r.name == "ff+attn")
    assert {"ff.0", "ff.1", "attn.0", "attn.1"} <= set(ff_attn.matched_corr)
    for g, corr in ff_attn.matched_corr.items():  # LSA maximises the matched correlation
        assert corr >= ff_attn.identity_corr[g] - 1e-9, g
    summary = res.summary()
    assert list(summary.index) == ["vanilla", "ff+attn"] and summary["se"].isna().all()  # one pair: no s.e.
    # the same permutations scored on the text they were matched on give the alignment's own numbers;
    # on held-out text (the unmasked evaluation blocks) they are other numbers
    method = pipeline.method_named("ff+attn")
    al = exp.alignment((1, 2), method)
    same, same_ident = matched_correlation(al, exp.statistics((1, 2))["covariances"])
    assert same == pytest.approx(ff_attn.matched_corr) and same_ident == pytest.approx(ff_attn.identity_corr)
    held, held_ident = exp.heldout_correlation((1, 2), method)
    assert set(held) == set(same) and held != pytest.approx(same)
    assert exp.statistics((1, 2), heldout=True)["tokens"] == int(exp.eval_set()["attention_mask"].sum())


def test_separate_is_flagged_not_function_preserving(env):
    exp = pipeline.MLMExperiment("smoke", **MLM_KW)
    res = exp.run([[1, 2]], ["separate"])
    row = _row(res, "separate")
    assert not row["function_preserving"]
    # the outputs change exactly when the per-node residual permutations disagree (on these barely
    # trained micro models every residual node is dominated by the embeddings, so they often agree)
    al = exp.alignment((1, 2), pipeline.NAMED_METHODS["separate"])
    res_perms = [p for g, p in al.perms.items() if g.startswith("res.")]
    assert len(res_perms) == 5
    all_equal = all(torch.equal(p, res_perms[0]) for p in res_perms)
    assert (row["max_abs_diff"] > 1e-3) == (not all_equal), (row["max_abs_diff"], all_equal)


def test_separate_with_disagreeing_residual_perms_changes_outputs_and_is_still_reported(env, monkeypatch):
    real = pipeline.compute_alignment

    def scrambled(stats, model, method):
        al = real(stats, model, method)
        g = torch.Generator().manual_seed(0)
        for name in al.perms:
            if name.startswith("res."):
                al.perms[name] = torch.randperm(len(al.perms[name]), generator=g)
        return al

    monkeypatch.setattr(pipeline, "compute_alignment", scrambled)
    exp = pipeline.MLMExperiment("smoke", use_cache=False, **MLM_KW)
    r = exp.curve((1, 2), "separate")
    assert not r.function_preserving
    assert r.max_abs_diff > 1e-2  # a large change, recorded, not refused (the method does not claim preservation)
    assert r.curve["loss"].iloc[0] != pytest.approx(mlm_loss(exp.model(2), exp.eval_set())["loss"], abs=1e-4)


def test_a_function_preserving_method_that_changes_outputs_is_refused(env, monkeypatch):
    from txmerge.methods import align

    real = align.apply_permutations

    def broken(model, perms, spec):
        out = real(model, perms, spec)
        with torch.no_grad():
            out.bert.encoder.layer[0].intermediate.dense.bias.add_(1.0)
        return out

    monkeypatch.setattr(align, "apply_permutations", broken)
    exp = pipeline.MLMExperiment("smoke", use_cache=False, **MLM_KW)
    with pytest.raises(TxmergeError, match="changed its outputs"):
        exp.curve((1, 2), "ff+attn")


def test_second_run_hits_the_cache(fresh_cache, monkeypatch):
    first = pipeline.MLMExperiment("smoke", **MLM_KW).run([[1, 2]], ["vanilla", "ff+attn"])
    assert len(list((fresh_cache / "mlm-curve").glob("*.pkl"))) == 2

    def boom(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(pipeline, "interpolation_curve", boom)
    monkeypatch.setattr(pipeline, "collect_pair_moments", boom)
    second = pipeline.MLMExperiment("smoke", **MLM_KW).run([[2, 1]], ["vanilla", "ff+attn"])  # order of a pair is irrelevant
    for a, b in zip(first.results, second.results):
        assert a.name == b.name and a.pair == b.pair == (1, 2)
        assert a.barrier == b.barrier and a.curve.equals(b.curve)
    # anything that changes the curve is part of the key: these recompute (and hit the patched function)
    with pytest.raises(AssertionError, match="recomputed"):
        pipeline.MLMExperiment("smoke", **{**MLM_KW, "lambdas": np.linspace(0, 1, 3)}).run([[1, 2]], ["vanilla"])
    with pytest.raises(AssertionError, match="recomputed"):
        pipeline.MLMExperiment("smoke", **{**MLM_KW, "eval_blocks": 3}).run([[1, 2]], ["vanilla"])
    with pytest.raises(AssertionError, match="recomputed"):
        pipeline.MLMExperiment("smoke", **{**MLM_KW, "n_sentences": 32}).run([[1, 2]], ["ff+attn"])


def test_curves_are_shared_across_names(fresh_cache):
    exp = pipeline.MLMExperiment("smoke", **MLM_KW)
    assert pipeline.NAMED_METHODS["vanilla"] == pipeline.NAMED_METHODS["identity"]
    res = exp.run([[1, 2]], ["vanilla", "identity"])
    van, ident = res.results
    assert (van.name, ident.name) == ("vanilla", "identity")
    assert van.curve.equals(ident.curve) and van.barrier == ident.barrier and van.barrier_linear == ident.barrier_linear
    assert len(list((fresh_cache / "mlm-curve").glob("*.pkl"))) == 1  # computed once
    assert set(res.summary().index) == {"vanilla", "identity"}


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: pipeline.MLMExperiment("smoke", **MLM_KW).run([[1, 2]], ["no-such-method"]), "Unknown merge method"),
        (lambda: pipeline.MLMExperiment("smoke", **MLM_KW).run([[1, 1]], ["vanilla"]), "two different seeds"),
        (lambda: pipeline.MLMExperiment("smoke", **MLM_KW).run([], ["vanilla"]), "No seed pairs"),
        (lambda: pipeline.MLMExperiment("nope", **MLM_KW), "Unknown preset"),
        (lambda: pipeline.TaskExperiment("nope", "stsb", n_sentences=8), "Unknown preset"),
        (lambda: pipeline.MLMExperiment("smoke", **{**MLM_KW, "lambdas": [0.0, 0.5]}), "endpoint"),
    ],
    ids=["method", "same-seeds", "no-pairs", "preset", "task-preset", "lambdas"],
)
def test_bad_inputs_raise_one_clear_error(env, call, match):
    with pytest.raises(TxmergeError, match=match):
        call()


# ------------------------------------------------------------------------------------ task experiment
def test_task_smoke_run_stsb(env):
    t0 = time.monotonic()
    exp = pipeline.TaskExperiment("smoke", "stsb", n_sentences=32, max_validation=16, lambdas=LAMBDAS, progress=False)
    res = exp.run([[1, 2]], ["vanilla", "full"])
    seconds = time.monotonic() - t0
    assert seconds < 120, f"the smoke task experiment took {seconds:.0f} s; it should take seconds"
    van, full = _row(res, "vanilla"), _row(res, "full")
    assert full["function_preserving"] and full["max_abs_diff"] < 1e-4
    assert full["loss_A"] == pytest.approx(van["loss_A"], abs=1e-6)
    assert full["loss_B"] == pytest.approx(van["loss_B"], abs=1e-4)
    want = task_loss(exp.model(1), exp.eval_batches(), is_regression=True)
    assert van["loss_A"] == pytest.approx(want["loss"], rel=1e-6)
    assert sum(len(b["labels"]) for b in exp.eval_batches()) == 16
    for r in res.results:
        assert {"lambda", "loss", "pearson", "spearman"} <= set(r.curve.columns)
        assert len(r.curve) == len(LAMBDAS) and np.isfinite(r.curve["loss"]).all()
    # the two fine-tunes start from different bases, so their trained heads differ
    pa, pb = exp.model(1).classifier.weight, exp.model(2).classifier.weight
    assert not torch.equal(pa, pb)


def test_explicit_checkpoints_replace_the_presets_models(env):
    """The training-progress study merges mid-training snapshots: model_paths overrides the preset's zoo."""
    from txmerge.core import models
    from txmerge.zoo import tiny as zoo

    one, two = zoo.ensure_model("smoke", 1), zoo.ensure_model("smoke", 2)
    exp = pipeline.MLMExperiment("smoke", model_paths={1: two, 2: one}, **MLM_KW)
    assert exp.model_path(1) == two and exp.model_path(2) == one
    assert exp.model_key(1) == models.model_sha256(two) != exp.model_key(2)


# ------------------------------------------------------------------------------ along pretraining
def test_barrier_along_training_uses_the_snapshots_and_ends_at_the_preset_models(env):
    points = progress.training_points("smoke", 1)
    assert sorted(points) == [0.5, 1.0] and all((Path(p) / "model.safetensors").exists() for p in points.values())
    along = progress.barrier_along_training("smoke", [2, 1], ["vanilla", "ff+attn"], **MLM_KW)
    assert sorted(along["fraction"].unique()) == [0.5, 1.0] and len(along) == 4 and along["function_preserving"].all()
    assert along["tokens"].tolist() == sorted(along["tokens"].tolist()) and along["tokens"].iloc[0] > 0
    final = pipeline.MLMExperiment("smoke", **MLM_KW).run([[1, 2]], ["vanilla"]).barriers.iloc[0]
    end = along[(along["fraction"] == 1.0) & (along["method"] == "vanilla")].iloc[0]
    half = along[(along["fraction"] == 0.5) & (along["method"] == "vanilla")].iloc[0]
    assert end["barrier"] == pytest.approx(final["barrier"]) and end["loss_A"] == pytest.approx(final["loss_A"])
    assert half["loss_A"] != pytest.approx(final["loss_A"], abs=1e-4)  # the half-trained snapshot is another model


def test_training_points_of_the_paper_preset_are_multiberts_checkpoints():
    points = progress.training_points("paper", 0)
    assert points[0.2] == "google/multiberts-seed_0-step_400k" and points[1.0].startswith("google/multiberts-seed_0")
    with pytest.raises(TxmergeError, match="seeds 0–4"):
        progress.training_points("paper", 7)


def test_mlm_eval_coverage_describes_the_blocks_the_experiment_evaluates():
    exp = pipeline.MLMExperiment("smoke", **MLM_KW)
    coverage = exp.eval_coverage()
    assert coverage["blocks"] == exp.eval_set()["input_ids"].shape[0] == MLM_KW["eval_blocks"]
    assert coverage["tokens"] == exp.eval_set()["input_ids"].numel()
    assert MLM_KW["eval_blocks"] <= coverage["articles"] <= coverage["of"]  # a different article per block (a block may touch two)


def test_experiments_from_a_chapters_parameters_and_the_amount_sweep(env):
    from txmerge.chapters.params import chapter_params

    p = chapter_params("smoke", "05_data_amount")
    exp = pipeline.MLMExperiment.from_params(p, "cpu", progress=False)
    assert (exp.eval_blocks, exp.text_mode, len(exp.lambdas), exp.n_sentences) == (p.eval_blocks, p.text_mode, p.n_lambdas, None)
    sweep = exp.amount_sweep([[2, 1]], "ff+attn", [16, 48])
    assert list(sweep.columns) == ["sentences", "tokens", "pair", "barrier"] and list(sweep["pair"]) == ["1-2", "1-2"]
    assert sweep["tokens"].is_monotonic_increasing and np.isfinite(sweep["barrier"]).all()
    g = chapter_params("smoke", "06_glue")
    task = pipeline.TaskExperiment.from_params(g, g.tasks[0], "cpu")
    assert (task.task, task.n_sentences, task.max_validation, len(task.lambdas)) == (g.tasks[0], g.n_sentences, g.max_validation, g.n_lambdas)
