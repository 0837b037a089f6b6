"""MLM evaluation blocks: held-out text cut into 128-token blocks, a seeded choice of them, one fixed set of masks.

Given each text's article, the choice is **stratified**: every article gets at least one block (a
block where it holds the most tokens, where it has one), and the rest of the ``max_blocks`` are a
seeded random sample of the remaining blocks. Without articles it is a plain seeded sample.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from txmerge.base.errors import TxmergeError

__all__ = ["char_spaced", "token_blocks", "block_choice", "block_articles", "eval_coverage", "mask_tokens", "mlm_eval_set"]


def char_spaced(text: str) -> str:
    """The official code's evaluation text (paper-spec §5.1): every character separated by a space."""
    return " ".join(text)


def _token_ids(texts: Iterable[str], tokenizer, needed: int | None = None) -> tuple[list[int], list[int]]:
    """(concatenated ids with [CLS]/[SEP] per text, length of each text), stopping once ``needed`` ids are in."""
    ids: list[int] = []
    lengths: list[int] = []
    texts = iter(texts)
    while chunk := [t for _, t in zip(range(1000), texts)]:
        for row in tokenizer(chunk, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]:
            ids.extend(row)
            lengths.append(len(row))
        if needed is not None and len(ids) >= needed:
            break
    return ids, lengths


def block_articles(lengths: Sequence[int], articles: Sequence[int], block_size: int) -> list[dict[int, int]]:
    """{article: tokens} of each whole block [n_blocks] of the concatenated texts (one article id per text)."""
    if len(articles) != len(lengths):
        raise TxmergeError(f"Got {len(articles)} article ids for {len(lengths)} texts; give one article id per text.")
    n = int(sum(lengths)) // block_size
    owner = np.repeat(np.asarray(articles), np.asarray(lengths))[: n * block_size].reshape(n, block_size)
    out = []
    for row in owner:
        values, counts = np.unique(row, return_counts=True)
        out.append(dict(zip(values.tolist(), counts.tolist())))
    return out


def block_choice(n_blocks: int, max_blocks: int | None, sample_seed: int | None,
                 groups: Sequence[dict[int, int]] | None = None) -> torch.Tensor:
    """Indices [k] of the blocks kept, in text order: all, the first ``max_blocks`` (no seed), a seeded
    sample, or, given ``groups`` (:func:`block_articles`), a seeded sample that first takes one block of
    each article (of ``max_blocks`` articles in seeded order, if there are more articles than blocks)."""
    if max_blocks is None or max_blocks >= n_blocks:
        return torch.arange(n_blocks)
    if sample_seed is None:
        return torch.arange(max_blocks)
    gen = torch.Generator().manual_seed(sample_seed)
    if groups is None:
        return torch.randperm(n_blocks, generator=gen)[:max_blocks].sort().values
    majority: dict[int, list[int]] = {}
    anywhere: dict[int, list[int]] = {}
    for i, counts in enumerate(groups):
        majority.setdefault(max(counts, key=counts.get), []).append(i)
        for g in counts:
            anywhere.setdefault(g, []).append(i)
    names = sorted(anywhere)
    chosen: set[int] = set()
    for k in torch.randperm(len(names), generator=gen).tolist():
        if len(chosen) == max_blocks:
            break
        g = names[k]
        if any(g in groups[i] for i in chosen):
            continue
        candidates = majority.get(g) or anywhere[g]
        chosen.add(candidates[int(torch.randint(len(candidates), (1,), generator=gen))])
    rest = [i for i in torch.randperm(n_blocks, generator=gen).tolist() if i not in chosen]
    return torch.tensor(sorted(chosen | set(rest[: max_blocks - len(chosen)])), dtype=torch.long)


def token_blocks(texts: Iterable[str], tokenizer, block_size: int = 128, max_blocks: int | None = None,
                 sample_seed: int | None = None, articles: Sequence[int] | None = None) -> torch.Tensor:
    """Tokenise each text with [CLS]/[SEP], concatenate, cut into blocks: LongTensor [n_blocks, block_size].

    The remainder shorter than one block is dropped (as the paper's evaluation does). With
    ``max_blocks``, the first ``max_blocks`` blocks are kept, or, given ``sample_seed``, a seeded
    random choice of ``max_blocks`` blocks from the whole text, kept in text order; given also
    ``articles`` (one id per text), every article first gets a block (:func:`block_choice`).
    """
    sampled = max_blocks is None or sample_seed is not None
    ids, lengths = _token_ids(texts, tokenizer, None if sampled else max_blocks * block_size)
    n = len(ids) // block_size
    if n == 0:
        raise TxmergeError(f"The text gives fewer than {block_size} tokens; provide more text.")
    blocks = torch.tensor(ids[: n * block_size], dtype=torch.long).view(n, block_size)
    groups = block_articles(lengths, articles, block_size) if articles is not None and sampled else None
    return blocks[block_choice(n, max_blocks, sample_seed, groups)]


def eval_coverage(texts: Sequence[str], tokenizer, *, block_size: int = 128, max_blocks: int | None = None,
                  seed: int | None = 42, articles: Sequence[int] | None = None) -> dict[str, int]:
    """How much of ``texts`` the blocks of :func:`mlm_eval_set` (same arguments) cover: the texts with at
    least one token in a block (or, given ``articles``, the articles), of how many, blocks and tokens."""
    _, lengths = _token_ids(texts, tokenizer)
    n = int(sum(lengths)) // block_size
    groups = block_articles(lengths, articles if articles is not None else range(len(lengths)), block_size)
    picked = block_choice(n, max_blocks, seed, groups if articles is not None else None).tolist()
    covered = set().union(*(groups[i] for i in picked))
    total = len(set(articles)) if articles is not None else len(lengths)
    return {"articles": len(covered), "of": total, "blocks": len(picked), "tokens": len(picked) * block_size}


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
    articles: Sequence[int] | None = None,
) -> dict[str, torch.Tensor]:
    """Fixed-mask MLM evaluation set: ``input_ids``, ``labels``, ``attention_mask``, each [n_blocks, block_size].

    With ``max_blocks``, the blocks are a seeded sample spread over the whole text; with ``articles``
    (one id per text) every article has at least one block. The blocks and masks depend only on
    ``seed``, so every model and every λ sees the same masked tokens.
    ``text_mode="char_spaced"`` reproduces the official code's character-spaced text (off by default).
    """
    if text_mode not in ("clean", "char_spaced"):
        raise TxmergeError(f"Unknown text_mode {text_mode!r}; choose 'clean' or 'char_spaced'.")
    if text_mode == "char_spaced":
        texts = (char_spaced(t) for t in texts)
    blocks = token_blocks(texts, tokenizer, block_size, max_blocks, sample_seed=seed, articles=articles)
    gen = torch.Generator().manual_seed(seed)
    input_ids, labels = mask_tokens(blocks, tokenizer, mlm_probability, gen)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": torch.ones_like(blocks)}


def read_passages(path: str) -> list[str]:
    """The non-empty lines of the UTF-8 file ``path`` (one passage per line), or one sentence on what to pass."""
    p = Path(path)
    if not p.exists():
        raise TxmergeError(f"Text file {path} does not exist; pass a UTF-8 file with one passage per line.")
    lines = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise TxmergeError(f"Text file {path} holds no text; pass a file with one passage per line.")
    return lines


def limit_tokens(batches, max_tokens: int | None) -> list:
    """The first ``batches`` that hold at least ``max_tokens`` real tokens (all of them for None)."""
    if max_tokens is None:
        return list(batches)
    out, seen = [], 0
    for b in batches:
        out.append(b)
        seen += int(b["attention_mask"].sum())
        if seen >= max_tokens:
            break
    return out
