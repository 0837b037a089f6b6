"""Losses of one model: the fixed-mask MLM loss (nats) and GLUE-style task losses with their metrics.

The evaluation functions take ``autocast`` (None = bf16 forward passes on CUDA only, see
:mod:`txmerge.base.precision`); the losses themselves are always computed and summed in float32/float64.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
from scipy import stats

from txmerge.base.errors import TxmergeError
from txmerge.base.precision import forward_autocast, full_precision
from txmerge.core.models import model_inputs
from txmerge.core.spec import family_of


def mlm_loss_masked_only(model, input_ids, attention_mask, labels) -> torch.Tensor:
    """Mean cross-entropy over masked tokens of a masked LM of any supported family.

    Tensors are [batch, seq]; labels are -100 where not masked. Where the family names its LM head
    module (BERT, RoBERTa), the decoder runs only on the masked positions (same loss, ~5× faster at
    the zoo's size); otherwise the full forward pass gives the logits.
    """
    chosen = labels != -100
    head = family_of(model).lm_head_module
    if head and hasattr(model, "base_model"):
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        logits = model.get_submodule(head)(hidden[chosen])
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[chosen]
    with full_precision(logits.device):
        return torch.nn.functional.cross_entropy(logits.float(), labels[chosen])


@torch.inference_mode()
def clm_loss(model, blocks: dict[str, torch.Tensor], batch_size: int = 64, autocast: bool | None = None) -> dict[str, float]:
    """{"loss": mean next-token cross-entropy in nats, "ppl"} of a causal LM on token blocks
    (``input_ids``, ``attention_mask`` [n, seq]); padding positions are not predicted."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    for i in range(0, blocks["input_ids"].shape[0], batch_size):
        ids = blocks["input_ids"][i : i + batch_size].to(device)
        mask = blocks["attention_mask"][i : i + batch_size].to(device)
        with forward_autocast(device, autocast):
            logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        k = int((target != -100).sum())
        if k:
            total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                             ignore_index=-100, reduction="sum"))
            count += k
    model.train(was_training)
    if count == 0:
        raise TxmergeError("The causal-LM evaluation set predicts no token; give blocks of at least two tokens.")
    loss = total / count
    return {"loss": loss, "ppl": float(np.exp(min(loss, 50.0)))}


NO_MASKED_TOKEN = ("No token of the MLM evaluation set is masked; give more evaluation text or blocks "
                   "(15% of the tokens are masked), or check the labels (-100 marks unmasked tokens).")


@torch.inference_mode()
def mlm_loss(model, eval_set: dict[str, torch.Tensor], batch_size: int = 64, autocast: bool | None = None) -> dict[str, float]:
    """{"loss": mean masked-token cross-entropy in nats, "ppl": exp(loss)} on a fixed-mask set from ``data.mlm_eval_set``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, count = 0.0, 0
    n = eval_set["input_ids"].shape[0]
    if n == 0:
        raise TxmergeError("The MLM evaluation set is empty; give more evaluation text or blocks.")
    for i in range(0, n, batch_size):
        sl = slice(i, i + batch_size)
        labels = eval_set["labels"][sl].to(device)
        k = int((labels != -100).sum())
        if k == 0:
            continue
        with forward_autocast(device, autocast):
            loss = mlm_loss_masked_only(model, eval_set["input_ids"][sl].to(device), eval_set["attention_mask"][sl].to(device), labels)
        total += float(loss) * k
        count += k
    model.train(was_training)
    if count == 0:
        raise TxmergeError(NO_MASKED_TOKEN)
    loss = total / count
    return {"loss": loss, "ppl": float(np.exp(min(loss, 50.0)))}


def unigram_mlm_loss(train_ids: torch.Tensor, eval_set: dict[str, torch.Tensor], vocab_size: int) -> float:
    """Loss (nats) of a model that ignores context: add-one smoothed token frequencies of ``train_ids``
    (any shape) scored on the masked tokens of ``eval_set``. An MLM below this line uses its context."""
    counts = torch.bincount(train_ids.flatten().long(), minlength=vocab_size)[:vocab_size].double() + 1.0
    log_p = (counts / counts.sum()).log()
    labels = eval_set["labels"]
    targets = labels[labels != -100]
    if targets.numel() == 0:
        raise TxmergeError(NO_MASKED_TOKEN)
    return float(-log_p[targets].mean())


def label_prior_baseline(train_labels, validation_labels, is_regression: bool) -> dict[str, float]:
    """The validation loss and metric of a model that ignores its input: the training mean (regression, MSE)
    or the add-one smoothed training class frequencies (cross-entropy; accuracy of the majority class).
    A fine-tune that does not beat this has learned nothing from the text."""
    train, val = np.asarray(train_labels), np.asarray(validation_labels)
    if train.size == 0 or val.size == 0:
        raise TxmergeError("The prior baseline needs at least one training and one validation label.")
    if is_regression:
        return {"loss": float(np.mean((val.astype(float) - train.astype(float).mean()) ** 2)),
                "pearson": float("nan"), "spearman": float("nan")}
    k = int(max(train.max(), val.max())) + 1
    prior = (np.bincount(train.astype(int), minlength=k) + 1.0) / (train.size + k)
    return {"loss": float(-np.log(prior[val.astype(int)]).mean()), "accuracy": float((val == prior.argmax()).mean())}


@torch.inference_mode()
def task_loss(model, batches: Iterable[dict[str, torch.Tensor]], is_regression: bool, autocast: bool | None = None) -> dict[str, float]:
    """Validation loss of a ``BertForSequenceClassification`` plus its metric.

    Loss: cross-entropy (classification) or MSE (regression, as GLUE's STS-B in the paper), averaged
    over examples. Metrics: accuracy, or Pearson and Spearman correlation.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    preds, labels = [], []
    total, count = 0.0, 0
    for batch in batches:
        y = batch["labels"].to(device)
        with forward_autocast(device, autocast):
            logits = model(**model_inputs(model, batch)).logits.float()
        if is_regression:
            out = logits.squeeze(-1)
            loss = torch.nn.functional.mse_loss(out, y.float(), reduction="sum")
            preds.append(out.float().cpu().numpy())
        else:
            loss = torch.nn.functional.cross_entropy(logits, y, reduction="sum")
            preds.append(logits.argmax(-1).cpu().numpy())
        labels.append(y.cpu().numpy())
        total += float(loss)
        count += len(y)
    model.train(was_training)
    if count == 0:
        raise TxmergeError("The task evaluation set is empty; give at least one validation example.")
    p, t = np.concatenate(preds), np.concatenate(labels)
    result = {"loss": total / count}
    if is_regression:
        result["pearson"] = float(stats.pearsonr(p, t)[0]) if np.std(p) > 0 else float("nan")
        result["spearman"] = float(stats.spearmanr(p, t)[0]) if np.std(p) > 0 else float("nan")
    else:
        result["accuracy"] = float((p == t).mean())
    return result
