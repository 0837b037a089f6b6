"""Shared tiny-BERT fixtures: models build in milliseconds, tests take seconds."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

torch.set_num_threads(1)

BERT_CLASSES = {"base": BertModel, "mlm": BertForMaskedLM, "cls": BertForSequenceClassification}


def tiny_config(hidden: int = 32, layers: int = 2, heads: int = 4, ff: int = 64, vocab: int = 61, **kw) -> BertConfig:
    """A tiny BERT config; ``initializer_range=0.2`` makes attention sharp enough for head moves to matter."""
    base = dict(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
        intermediate_size=ff, max_position_embeddings=32, type_vocab_size=2, initializer_range=0.2,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=3,
    )
    base.update(kw)
    return BertConfig(**base)


def tiny_bert(kind: str = "mlm", seed: int = 0, **config_kw) -> torch.nn.Module:
    """A random tiny BERT of ``kind`` in {"base", "mlm", "cls"}, in eval mode; MLM head bias made non-zero."""
    torch.manual_seed(seed)
    config = tiny_config(**config_kw)
    model = BERT_CLASSES[kind](config) if kind != "base" else BertModel(config, add_pooling_layer=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(0.1 * torch.randn_like(p))  # non-trivial biases and LayerNorm params
    return model.eval()


def token_batches(vocab: int, n_batches: int = 3, batch: int = 4, seq: int = 12, seed: int = 0, pad: bool = True) -> list[dict]:
    """Random token batches with [CLS]=1 / [SEP]=2 specials, right padding (id 0) and token types."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        ids = torch.randint(3, vocab, (batch, seq), generator=g)
        lengths = torch.randint(3, seq + 1, (batch,), generator=g) if pad else torch.full((batch,), seq)
        lengths[0] = seq
        mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
        special = torch.zeros_like(ids)
        ids[:, 0] = 1
        special[:, 0] = 1
        rows = torch.arange(batch)
        ids[rows, lengths - 1] = 2
        special[rows, lengths - 1] = 1
        ids[mask == 0] = 0
        types = (torch.arange(seq)[None, :] >= (lengths[:, None] // 2)).long() * mask
        out.append(dict(input_ids=ids, attention_mask=mask, token_type_ids=types, special_tokens_mask=special))
    return out


@pytest.fixture(scope="session")
def make_bert() -> Callable[..., torch.nn.Module]:
    """Factory fixture: ``make_bert(kind="mlm", seed=0, **config_kw)``."""
    return tiny_bert


@pytest.fixture(scope="session")
def make_batches() -> Callable[..., list[dict]]:
    """Factory fixture: ``make_batches(vocab, n_batches=3, batch=4, seq=12, seed=0, pad=True)``."""
    return token_batches
