"""Interpolation path, λ grids, both barrier definitions, mean ± s.e., and the losses evaluated along the
path (fixed-mask MLM loss, task losses) plus the fixed masks themselves. Tiny random BERTs; seconds."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from conftest import tiny_bert, token_batches
from txmerge import data
from txmerge.base.errors import TxmergeError
from txmerge.core.evaluate import label_prior_baseline, mlm_loss, task_loss, unigram_mlm_loss
from txmerge.core.interpolate import (
    InterpolationPath,
    check_lambdas,
    default_lambdas,
    dips_below_endpoints,
    interpolate_state_dicts,
    interpolation_curve,
    loss_barrier,
    loss_barrier_linear,
    m_shaped,
)

VOCAB = 61  # conftest's default tiny vocabulary


def _mlm_inputs(seed: int = 3, batch: int = 3, seq: int = 10) -> dict[str, torch.Tensor]:
    b = token_batches(VOCAB, n_batches=1, batch=batch, seq=seq, seed=seed, pad=False)[0]
    return {"input_ids": b["input_ids"], "attention_mask": b["attention_mask"]}


def _eval_set(seed: int = 0, n: int = 5, seq: int = 16, p: float = 0.3) -> dict[str, torch.Tensor]:
    """A fixed-mask MLM set over the tiny vocabulary: labels = original ids at masked positions, else -100."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (n, seq), generator=g)
    chosen = torch.rand((n, seq), generator=g) < p
    chosen[0, 1] = True  # at least one masked token
    labels = torch.where(chosen, ids, torch.full_like(ids, -100))
    masked = torch.where(chosen, torch.full_like(ids, 4), ids)  # id 4 plays [MASK]
    return {"input_ids": masked, "labels": labels, "attention_mask": torch.ones_like(ids)}


def _logits(model, inputs):
    with torch.inference_mode():
        return model(**inputs).logits


# ------------------------------------------------------------------------------------ λ grids
def test_default_grid_is_the_papers_21_points():
    lam = default_lambdas()
    assert lam.shape == (21,)
    assert lam[0] == 0.0 and lam[-1] == 1.0
    np.testing.assert_allclose(lam, np.arange(21) / 20)
    np.testing.assert_allclose(default_lambdas(5), [0, 0.25, 0.5, 0.75, 1])


@pytest.mark.parametrize("grid", [[0.0, 0.5], [0.5, 1.0], [0.1, 0.5, 0.9], [1.0], []])
def test_check_lambdas_requires_both_endpoints(grid):
    with pytest.raises(TxmergeError, match="endpoint"):
        check_lambdas(grid)


@pytest.mark.parametrize("grid", [[0.0, 0.5, 0.5, 1.0], [0.0, 0.7, 0.3, 1.0], [0.0, 1.2, 1.0], [0.0, -0.2, 1.0]])
def test_check_lambdas_rejects_non_increasing_or_out_of_range(grid):
    with pytest.raises(TxmergeError, match="increasing within"):
        check_lambdas(grid)


def test_check_lambdas_rejects_nan():
    """[0, nan, 1] must be refused: NaN compares False with everything, so it slips through."""
    with pytest.raises(TxmergeError):
        check_lambdas([0.0, float("nan"), 1.0])


def test_check_lambdas_accepts_a_valid_grid():
    out = check_lambdas([0, 0.1, 0.5, 1])
    assert out.dtype == float and out.tolist() == [0, 0.1, 0.5, 1]


# ------------------------------------------------------------------------------------ barriers
def test_loss_barrier_hand_computed():
    # max 5, endpoints 2 (λ=0, B) and 4 (λ=1, A): 5 − 3 = 2
    assert loss_barrier([2.0, 5.0, 4.0]) == pytest.approx(2.0)
    # the max may be an endpoint: max 4, mean(4, 1) = 2.5
    assert loss_barrier([4.0, 3.0, 2.0, 1.0]) == pytest.approx(1.5)
    # a convex-ish curve below the endpoints has a negative barrier
    assert loss_barrier([3.0, 1.0, 3.0]) == pytest.approx(0.0)
    assert loss_barrier([3.0, 1.0, 1.0]) == pytest.approx(1.0)


def test_loss_barrier_linear_hand_computed():
    lam = [0.0, 0.25, 0.5, 1.0]
    losses = [2.0, 4.0, 3.5, 6.0]  # the line: 2, 3, 4, 6 → excess 0, 1, −0.5, 0
    assert loss_barrier_linear(losses, lam) == pytest.approx(1.0)
    # against the paper's definition on the same curve: max 6 − mean(2, 6) = 2
    assert loss_barrier(losses, lam) == pytest.approx(2.0)
    # default grid is inferred from the number of losses: λ = 0, .5, 1; line 1, 2, 3 → excess at middle 2.5 − 2
    assert loss_barrier_linear([1.0, 2.5, 3.0]) == pytest.approx(0.5)


def test_barriers_agree_when_endpoint_losses_are_equal():
    rng = np.random.default_rng(0)
    lam = default_lambdas(11)
    losses = 3.0 + rng.random(11)
    losses[0] = losses[-1] = 3.2
    assert loss_barrier(losses, lam) == pytest.approx(loss_barrier_linear(losses, lam), abs=1e-12)


def test_barrier_needs_one_loss_per_lambda():
    with pytest.raises(TxmergeError, match="one loss per"):
        loss_barrier([1.0, 2.0, 3.0], [0.0, 1.0])
    with pytest.raises(TxmergeError, match="one loss per"):
        loss_barrier_linear([1.0, 2.0, 3.0], [0.0, 1.0])


# ------------------------------------------------------------------------------------ the path
@pytest.fixture(scope="module")
def pair():
    return tiny_bert("mlm", seed=0), tiny_bert("mlm", seed=1)


def test_path_set_equals_interpolate_state_dicts(pair):
    a, b = pair
    path = InterpolationPath(a, b)
    for lam in (0.0, 0.1, 0.35, 0.5, 0.9, 1.0):
        got = path.set(lam).state_dict()
        want = interpolate_state_dicts(a.state_dict(), b.state_dict(), lam)
        assert got.keys() == want.keys()
        for k in want:
            assert torch.equal(got[k], want[k]), (lam, k)


def test_path_endpoints_reproduce_both_models_exactly(pair):
    a, b = pair
    inputs = _mlm_inputs()
    path = InterpolationPath(a, b)
    assert torch.equal(_logits(path.set(1.0), inputs), _logits(a, inputs))  # λ = 1 is A
    assert torch.equal(_logits(path.set(0.0), inputs), _logits(b, inputs))  # λ = 0 is B
    mid = _logits(path.set(0.5), inputs)
    assert not torch.allclose(mid, _logits(a, inputs)) and not torch.allclose(mid, _logits(b, inputs))


def test_path_reuses_one_model_and_leaves_inputs_untouched(pair):
    a, b = pair
    before_a = {k: v.clone() for k, v in a.state_dict().items()}
    before_b = {k: v.clone() for k, v in b.state_dict().items()}
    path = InterpolationPath(a, b)
    ids = {id(path.set(lam)) for lam in default_lambdas(5)}
    assert ids == {id(path.model)}
    assert path.model is not a and path.model is not b
    for before, model in ((before_a, a), (before_b, b)):
        for k, v in model.state_dict().items():
            assert torch.equal(v, before[k]), k


def test_path_keeps_the_decoder_tied(pair):
    a, b = pair
    path = InterpolationPath(a, b)
    m = path.set(0.3)
    assert m.cls.predictions.decoder.weight is m.bert.embeddings.word_embeddings.weight
    want = torch.lerp(b.bert.embeddings.word_embeddings.weight, a.bert.embeddings.word_embeddings.weight, 0.3)
    assert torch.equal(m.cls.predictions.decoder.weight, want)


def test_untied_b_interpolates_against_tied_a_by_name(pair):
    a, _ = pair
    b = tiny_bert("mlm", seed=1, tie_word_embeddings=False)
    with torch.no_grad():  # make the untied decoder differ from B's embeddings
        b.cls.predictions.decoder.weight.add_(0.05 * torch.randn_like(b.cls.predictions.decoder.weight))
    assert b.cls.predictions.decoder.weight is not b.bert.embeddings.word_embeddings.weight
    path = InterpolationPath(a, b)
    m = path.set(0.25)
    assert m.cls.predictions.decoder.weight is not m.bert.embeddings.word_embeddings.weight  # B's structure kept
    dec = torch.lerp(b.cls.predictions.decoder.weight, a.bert.embeddings.word_embeddings.weight, 0.25)
    emb = torch.lerp(b.bert.embeddings.word_embeddings.weight, a.bert.embeddings.word_embeddings.weight, 0.25)
    assert torch.equal(m.cls.predictions.decoder.weight, dec)
    assert torch.equal(m.bert.embeddings.word_embeddings.weight, emb)
    inputs = _mlm_inputs()
    assert torch.equal(_logits(path.set(1.0), inputs), _logits(a, inputs))
    assert torch.equal(_logits(path.set(0.0), inputs), _logits(b, inputs))


@pytest.mark.parametrize("kw_b", [dict(hidden=16, heads=2, ff=32), dict(ff=48), dict(vocab=70)])
def test_mismatched_shapes_raise(kw_b):
    a, b = tiny_bert("mlm", seed=0), tiny_bert("mlm", seed=1, **kw_b)
    with pytest.raises(TxmergeError, match="architectures differ"):
        InterpolationPath(a, b)


def test_b_with_more_layers_than_a_raises():
    a, b = tiny_bert("mlm", seed=0, layers=2), tiny_bert("mlm", seed=1, layers=3)
    with pytest.raises(TxmergeError, match="missing"):
        InterpolationPath(a, b)


def test_a_with_more_layers_than_b_raises():
    """A's extra layer must not be silently dropped: the path would interpolate half of A."""
    a, b = tiny_bert("mlm", seed=0, layers=3), tiny_bert("mlm", seed=1, layers=2)
    with pytest.raises(TxmergeError):
        InterpolationPath(a, b)


def test_different_heads_raise():
    a, b = tiny_bert("mlm", seed=0), tiny_bert("cls", seed=1)
    with pytest.raises(TxmergeError):
        InterpolationPath(a, b)
    with pytest.raises(TxmergeError):
        interpolate_state_dicts(a.state_dict(), b.state_dict(), 0.5)


def test_interpolation_curve_one_row_per_lambda(pair):
    a, b = pair
    es = _eval_set()
    lam = default_lambdas(6)
    seen = []

    def evaluate(model):
        seen.append(id(model))
        return mlm_loss(model, es)

    df = interpolation_curve(a, b, evaluate, lam, progress=False)
    assert isinstance(df, pd.DataFrame) and len(df) == 6
    assert df["lambda"].tolist() == pytest.approx(lam.tolist())
    assert {"loss", "ppl"} <= set(df.columns)
    assert len(set(seen)) == 1  # one working model for every λ
    assert df["loss"].iloc[0] == pytest.approx(mlm_loss(b, es)["loss"], abs=1e-6)
    assert df["loss"].iloc[-1] == pytest.approx(mlm_loss(a, es)["loss"], abs=1e-6)
    assert df["loss"].nunique() == 6


def test_interpolation_curve_needs_a_loss_and_a_valid_grid(pair):
    a, b = pair
    with pytest.raises(TxmergeError, match="'loss'"):
        interpolation_curve(a, b, lambda m: {"accuracy": 1.0}, [0.0, 1.0], progress=False)
    with pytest.raises(TxmergeError, match="endpoint"):
        interpolation_curve(a, b, lambda m: {"loss": 1.0}, [0.0, 0.5], progress=False)


# ------------------------------------------------------------------------------------ evaluate
def test_mlm_loss_equals_the_stock_head_loss(pair):
    a, _ = pair
    es = _eval_set(n=7)
    with torch.inference_mode():
        want = a(**es).loss.item()  # BertForMaskedLM: mean CE over all masked tokens of the batch
    for bs in (64, 3, 1):  # batching must weight by tokens, not by batch
        assert mlm_loss(a, es, batch_size=bs)["loss"] == pytest.approx(want, rel=1e-5, abs=1e-5)
    out = mlm_loss(a, es)
    assert out["ppl"] == pytest.approx(np.exp(out["loss"]), rel=1e-6)


def test_mlm_loss_restores_training_mode(pair):
    a, _ = pair
    m = copy.deepcopy(a).train()
    mlm_loss(m, _eval_set())
    assert m.training


def test_mlm_loss_without_masked_tokens_is_a_clear_error(pair):
    """An evaluation set in which no token is masked (e.g. a very short text) must raise TxmergeError,
    not ZeroDivisionError."""
    a, _ = pair
    es = _eval_set()
    es = {**es, "labels": torch.full_like(es["labels"], -100)}
    with pytest.raises(TxmergeError):
        mlm_loss(a, es)


def _cls_batches(n_batches=2, batch=5, seed=0, regression=False):
    g = torch.Generator().manual_seed(seed + 100)
    out = []
    for b in token_batches(VOCAB, n_batches=n_batches, batch=batch, seq=10, seed=seed):
        labels = torch.randn(batch, generator=g) if regression else torch.randint(0, 3, (batch,), generator=g)
        out.append({"input_ids": b["input_ids"], "attention_mask": b["attention_mask"],
                    "token_type_ids": b["token_type_ids"], "labels": labels})
    return out


def test_task_loss_classification_matches_manual():
    model = tiny_bert("cls", seed=0)
    batches = _cls_batches()
    with torch.inference_mode():
        logits = torch.cat([model(**{k: v for k, v in b.items() if k != "labels"}).logits for b in batches])
    y = torch.cat([b["labels"] for b in batches])
    got = task_loss(model, batches, is_regression=False)
    assert got["loss"] == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert got["accuracy"] == pytest.approx((logits.argmax(-1) == y).float().mean().item())
    assert set(got) == {"loss", "accuracy"}


def test_task_loss_regression_matches_manual():
    model = tiny_bert("cls", seed=0, num_labels=1)
    batches = _cls_batches(n_batches=3, batch=4, regression=True)
    with torch.inference_mode():
        pred = torch.cat([model(**{k: v for k, v in b.items() if k != "labels"}).logits.squeeze(-1) for b in batches])
    y = torch.cat([b["labels"] for b in batches])
    got = task_loss(model, batches, is_regression=True)
    assert got["loss"] == pytest.approx(torch.nn.functional.mse_loss(pred, y).item(), rel=1e-5)
    assert got["pearson"] == pytest.approx(stats.pearsonr(pred.numpy(), y.numpy())[0], abs=1e-5)
    assert got["spearman"] == pytest.approx(stats.spearmanr(pred.numpy(), y.numpy())[0], abs=1e-5)
    with pytest.raises(TxmergeError):
        task_loss(model, [], is_regression=True)


# ------------------------------------------------------------------------------------ fixed masks
@pytest.fixture(scope="module")
def zoo_tokenizer():
    from txmerge.zoo import tiny as zoo

    try:
        return zoo.load_tokenizer()
    except TxmergeError as exc:  # the committed zoo tokenizer is missing in this checkout
        pytest.skip(f"no zoo tokenizer: {exc}")


@pytest.fixture(scope="module")
def eval_texts():
    return data.correlation_text("smoke", n_sentences=120)["text"]  # committed novels: nothing is downloaded


def test_mlm_eval_set_masks_are_fixed_by_the_seed(zoo_tokenizer, eval_texts):
    one = data.mlm_eval_set(eval_texts, zoo_tokenizer, max_blocks=6, seed=42)
    two = data.mlm_eval_set(eval_texts, zoo_tokenizer, max_blocks=6, seed=42)
    other = data.mlm_eval_set(eval_texts, zoo_tokenizer, max_blocks=6, seed=43)
    assert one["input_ids"].shape == (6, 128)
    for k in one:
        assert torch.equal(one[k], two[k]), k
    assert not torch.equal(one["labels"], other["labels"])
    assert not torch.equal(one["input_ids"], other["input_ids"])


def test_mlm_eval_set_blocks_are_spread_over_the_whole_text(zoo_tokenizer, eval_texts):
    every = data.token_blocks(eval_texts, zoo_tokenizer, 128)
    es = data.mlm_eval_set(eval_texts, zoo_tokenizer, max_blocks=6, seed=42)
    rows = [next(i for i in range(len(every)) if torch.equal(every[i][es["labels"][j] == -100],
                                                           es["input_ids"][j][es["labels"][j] == -100]))
            for j in range(6)]
    assert rows == sorted(rows) and len(set(rows)) == 6  # distinct blocks, in text order
    assert rows != list(range(6)) and rows[-1] >= len(every) // 2  # not the first blocks: the sample reaches the end


def test_mlm_eval_set_masks_skip_special_tokens_and_hit_about_15_percent(zoo_tokenizer, eval_texts):
    es = data.mlm_eval_set(eval_texts, zoo_tokenizer, max_blocks=8, seed=7)
    original = data.token_blocks(eval_texts, zoo_tokenizer, 128, 8, sample_seed=7)
    special = torch.isin(original, torch.tensor(zoo_tokenizer.all_special_ids))
    assert special.any()  # [CLS]/[SEP] are in the blocks
    chosen = es["labels"] != -100
    assert not (chosen & special).any()
    assert torch.equal(es["input_ids"][special], original[special])  # specials are never altered
    assert torch.equal(es["labels"][chosen], original[chosen])  # labels are the original tokens
    assert torch.equal(es["input_ids"][~chosen], original[~chosen])  # unchosen tokens are untouched
    rate = chosen.sum().item() / (~special).sum().item()
    assert 0.12 < rate < 0.18, rate
    replaced = (es["input_ids"][chosen] == zoo_tokenizer.mask_token_id).float().mean().item()
    assert 0.7 < replaced < 0.9, replaced  # BERT's 80 % [MASK]


# ------------------------------------------------------------------------------ context-free baseline
def test_unigram_mlm_loss_hand_computed():
    """Counts 3×token 5 and 1×token 6 in a vocabulary of 8, add-one: p5 = 4/12, p6 = 2/12."""
    train = torch.tensor([[5, 5, 5, 6]])
    es = {"labels": torch.tensor([[5, -100, 6, -100]])}
    expected = -(np.log(4 / 12) + np.log(2 / 12)) / 2
    assert unigram_mlm_loss(train, es, vocab_size=8) == pytest.approx(expected)


def test_unigram_mlm_loss_is_uniform_without_training_tokens_and_refuses_no_masks():
    es = {"labels": torch.tensor([[1, 2, -100]])}
    assert unigram_mlm_loss(torch.zeros(0, dtype=torch.long), es, vocab_size=10) == pytest.approx(np.log(10))
    with pytest.raises(TxmergeError):
        unigram_mlm_loss(torch.tensor([1, 2]), {"labels": torch.full((1, 3), -100)}, vocab_size=10)


# ------------------------------------------------------------------------------ curve shapes, priors
def test_curve_shapes():
    assert dips_below_endpoints([1.0, 0.8, 1.2]) and not dips_below_endpoints([1.0, 1.1, 1.2])
    assert not dips_below_endpoints([1.0, 2.0])
    lam = [0, 0.25, 0.5, 0.75, 1]
    assert m_shaped([1.0, 1.5, 1.0, 1.5, 1.0], lam)
    assert not m_shaped([1.0, 1.5, 2.0, 1.5, 1.0], lam)  # a plain bump
    assert not m_shaped([1.0, 1.5, 1.0, 1.02, 1.0], lam)  # the right bump is within the margin


def test_label_prior_baseline():
    # classes 0,0,0,1 in training (add-one: 4/6, 2/6); validation 0,1 -> majority accuracy 1/2
    out = label_prior_baseline([0, 0, 0, 1], [0, 1], is_regression=False)
    assert out["accuracy"] == pytest.approx(0.5)
    assert out["loss"] == pytest.approx(-(np.log(4 / 6) + np.log(2 / 6)) / 2)
    reg = label_prior_baseline([1.0, 3.0], [0.0, 4.0], is_regression=True)  # mean 2 -> MSE 4
    assert reg["loss"] == pytest.approx(4.0) and np.isnan(reg["pearson"])
    with pytest.raises(TxmergeError):
        label_prior_baseline([], [1], is_regression=False)


def test_eval_coverage_counts_the_texts_the_sampled_blocks_touch(zoo_tokenizer):
    texts = ["one two three " * 40, "four five " * 70, "six " * 150, "seven eight nine ten " * 30]
    every = data.token_blocks(texts, zoo_tokenizer, 32)
    full = data.eval_coverage(texts, zoo_tokenizer, block_size=32)
    assert full == {"articles": 4, "of": 4, "blocks": len(every), "tokens": 32 * len(every)}
    first = data.eval_coverage(texts, zoo_tokenizer, block_size=32, max_blocks=1, seed=None)
    assert first["articles"] == 1 and first["blocks"] == 1  # the first block lies inside the first text
    sampled = data.eval_coverage(texts, zoo_tokenizer, block_size=32, max_blocks=3, seed=5)
    picked = data.token_blocks(texts, zoo_tokenizer, 32, 3, sample_seed=5)
    # each text has its own [CLS]: the texts covered are the [CLS] tokens in the blocks plus a text running in
    starts = int((picked == zoo_tokenizer.cls_token_id).sum())
    running_in = int((picked[:, 0] != zoo_tokenizer.cls_token_id).sum())
    assert starts <= sampled["articles"] <= starts + running_in and sampled["tokens"] == 96
    grouped = data.eval_coverage(texts, zoo_tokenizer, block_size=32, articles=[7, 7, 8, 8])  # two articles, two texts each
    assert grouped["articles"] == 2 and grouped["of"] == 2 and grouped["blocks"] == full["blocks"]


def _articles_text(n_articles: int = 12, seed: int = 0) -> tuple[list[str], list[int]]:
    """Texts of ``n_articles`` articles of very different lengths (1-3 texts each), with their article ids."""
    rng = np.random.default_rng(seed)
    texts, articles = [], []
    for a in range(n_articles):
        for _ in range(int(rng.integers(1, 4))):
            texts.append(f"word{a} " * int(rng.integers(5, 400)))
            articles.append(a)
    return texts, articles


def test_stratified_blocks_represent_every_article_and_are_fixed_by_the_seed(zoo_tokenizer):
    texts, articles = _articles_text()
    n_blocks = len(data.token_blocks(texts, zoo_tokenizer, 32))
    one = data.token_blocks(texts, zoo_tokenizer, 32, 15, sample_seed=3, articles=articles)
    assert one.shape == (15, 32) and n_blocks > 40  # a real choice among many blocks
    assert torch.equal(one, data.token_blocks(texts, zoo_tokenizer, 32, 15, sample_seed=3, articles=articles))
    assert not torch.equal(one, data.token_blocks(texts, zoo_tokenizer, 32, 15, sample_seed=4, articles=articles))
    cover = data.eval_coverage(texts, zoo_tokenizer, block_size=32, max_blocks=15, seed=3, articles=articles)
    assert cover == {"articles": 12, "of": 12, "blocks": 15, "tokens": 480}
    groups = data.block_articles([len(r) for r in zoo_tokenizer(texts)["input_ids"]], articles, 32)
    picked = data.block_choice(len(groups), 15, 3, groups)
    assert torch.equal(one, data.token_blocks(texts, zoo_tokenizer, 32)[picked])  # the same choice, in text order
    assert set().union(*(groups[i] for i in picked.tolist())) == set(range(12))


def test_stratified_blocks_with_fewer_blocks_than_articles_take_distinct_articles(zoo_tokenizer):
    texts, articles = _articles_text()
    cover = data.eval_coverage(texts, zoo_tokenizer, block_size=32, max_blocks=5, seed=1, articles=articles)
    assert cover["blocks"] == 5 and cover["articles"] >= 5
    groups = data.block_articles([len(r) for r in zoo_tokenizer(texts)["input_ids"]], articles, 32)
    picked = data.block_choice(len(groups), 5, 1, groups).tolist()
    assert picked == sorted(picked) and len({max(groups[i], key=groups[i].get) for i in picked}) == 5


def test_stratified_blocks_refuse_article_ids_that_do_not_match_the_texts(zoo_tokenizer):
    texts, articles = _articles_text()
    with pytest.raises(TxmergeError, match="one article id per text"):
        data.mlm_eval_set(texts, zoo_tokenizer, block_size=32, max_blocks=5, articles=articles[:-1])
