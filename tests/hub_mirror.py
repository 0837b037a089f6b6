"""A local Hugging Face Hub mirror for the paper preset, generated in seconds (nothing committed).

``build_mirror(home)`` writes, under ``home`` (used as ``HF_HOME``), what ``txmerge prefetch --preset
paper`` leaves on a machine with internet, under the real ids and in the libraries' own layouts:

- ``hub/models--google--multiberts-seed_N/{refs/main, snapshots/<rev>/...}`` (the hub cache of
  ``huggingface_hub``): micro ``BertForPreTraining`` checkpoints (safetensors, config naming the class
  as MultiBERTs do) for seeds 0-5 and the intermediate ids ``-step_{100,400,1000}k`` of seeds 0-4, with
  the zoo's WordPiece tokenizer files;
- ``datasets/<owner>___<name>/<config>/0.0.0/<rev>/`` (the prepared-datasets cache that an offline
  ``datasets.load_dataset`` reads): the eight GLUE configs of ``nyu-mll/glue`` with their real columns,
  ``ClassLabel`` names, ``idx`` and splits (MNLI's ``validation_matched``/``validation_mismatched``,
  STS-B's float32 labels, test splits labelled -1), ``Salesforce/wikitext`` ``wikitext-103-raw-v1``
  and the ``bookcorpus/bookcorpus`` Parquet conversion (config ``default``, column ``text``).

The datasets are written by a ``datasets`` builder (``download_and_prepare``) given the real
``repo_id``, ``dataset_name`` and config, so the files are exactly what the installed ``datasets``
writes when it prepares a Hub dataset; offline, ``load_dataset`` finds them through its cache
fallback (``CachedDatasetModuleFactory``). ``use_mirror(monkeypatch, home)`` points this process
at the mirror; subprocesses get it from ``mirror_env(home)``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REVISION = "0" * 39 + "1"  # a commit hash of the mirror (any 40 hex digits)
SEEDS = range(0, 6)
STEP_SEEDS = range(0, 5)
STEPS_K = (100, 400, 1000)
WORDS = ("the a one two house river long short night day walked spoke quietly city old young man woman "
         "found lost again under over before after light dark water stone friend letter garden morning").split()


def _model_ids() -> list[str]:
    return ([f"google/multiberts-seed_{s}" for s in SEEDS]
            + [f"google/multiberts-seed_{s}-step_{k}k" for s in STEP_SEEDS for k in STEPS_K])


def write_model(hub: Path, repo_id: str, model=None, tokenizer_dir: Path | None = None, seed: int = 0) -> Path:
    """Save ``model`` (default: a micro BertForPreTraining) in the hub-cache layout under ``repo_id``; the snapshot folder."""
    import torch
    from transformers import BertConfig, BertForPreTraining

    tokenizer_dir = tokenizer_dir or REPO / "zoo" / "tiny" / "tokenizer"
    if model is None:
        vocab = len(json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]["vocab"])
        torch.manual_seed(seed)
        model = BertForPreTraining(BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                              intermediate_size=64, max_position_embeddings=128, type_vocab_size=2))
    from transformers.utils import logging as hf_logging

    folder = hub / ("models--" + repo_id.replace("/", "--"))
    snap = folder / "snapshots" / REVISION
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(snap)
    finally:
        hf_logging.enable_progress_bar()
    for f in tokenizer_dir.iterdir():
        shutil.copy(f, snap / f.name)
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(REVISION)
    (folder / "blobs").mkdir(exist_ok=True)
    return snap


def _sentences(n: int, seed: int, words: tuple[int, int] = (5, 14)) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(*words)))).capitalize() + " ." for _ in range(n)]


def write_dataset(datasets_dir: Path, repo_id: str, config: str, splits: dict[str, dict[str, list]], features) -> Path:
    """Prepare ``splits`` ({split: columns}) as the datasets cache holds ``repo_id`` / ``config``; its folder."""
    import datasets
    import pyarrow as pa
    from datasets.builder import Key

    class Mirror(datasets.ArrowBasedBuilder):
        VERSION = datasets.Version("0.0.0")

        def _info(self):
            return datasets.DatasetInfo(features=features)

        def _split_generators(self, dl_manager):
            return [datasets.SplitGenerator(name=s, gen_kwargs={"split": s}) for s in splits]

        def _generate_tables(self, split):
            yield Key(0, 0), pa.Table.from_pydict(splits[split], schema=features.arrow_schema)

    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        builder = Mirror(cache_dir=str(datasets_dir), dataset_name=repo_id.rpartition("/")[2], repo_id=repo_id,
                         config_name=config, hash=REVISION)
        builder.download_and_prepare()
    finally:
        datasets.enable_progress_bars()
        datasets.logging.set_verbosity(verbosity)
    return Path(builder.cache_dir)


#: nyu-mll/glue: (text columns, label names or None for STS-B's float scores, validation splits)
GLUE_SCHEMA = {
    "cola": (("sentence",), ("unacceptable", "acceptable"), ("validation",)),
    "sst2": (("sentence",), ("negative", "positive"), ("validation",)),
    "mrpc": (("sentence1", "sentence2"), ("not_equivalent", "equivalent"), ("validation",)),
    "qqp": (("question1", "question2"), ("not_duplicate", "duplicate"), ("validation",)),
    "stsb": (("sentence1", "sentence2"), None, ("validation",)),
    "mnli": (("premise", "hypothesis"), ("entailment", "neutral", "contradiction"), ("validation_matched", "validation_mismatched")),
    "qnli": (("question", "sentence"), ("entailment", "not_entailment"), ("validation",)),
    "rte": (("sentence1", "sentence2"), ("entailment", "not_entailment"), ("validation",)),
}


def write_glue(datasets_dir: Path, task: str, n_train: int = 24, n_val: int = 12) -> Path:
    import datasets

    columns, names, val_splits = GLUE_SCHEMA[task]
    label = datasets.Value("float32") if names is None else datasets.ClassLabel(names=list(names))
    features = datasets.Features({**{c: datasets.Value("string") for c in columns}, "label": label, "idx": datasets.Value("int32")})
    test_splits = tuple(s.replace("validation", "test") for s in val_splits)

    def rows(n: int, seed: int, test: bool) -> dict[str, list]:
        out = {c: _sentences(n, seed + i) for i, c in enumerate(columns)}
        if names is None:
            out["label"] = [-1.0] * n if test else [round(5.0 * ((i * 7) % 11) / 10, 2) for i in range(n)]
        else:
            out["label"] = [-1] * n if test else [i % len(names) for i in range(n)]
        out["idx"] = list(range(n))
        return out

    splits = {"train": rows(n_train, 1, False)}
    splits.update({s: rows(n_val, 10 + i, False) for i, s in enumerate(val_splits)})
    splits.update({s: rows(n_val, 20 + i, True) for i, s in enumerate(test_splits)})
    return write_dataset(datasets_dir, "nyu-mll/glue", task, splits, features)


def write_wikitext(datasets_dir: Path, n: int = 160) -> Path:
    import datasets

    def article(seed: int) -> list[str]:
        lines = []
        for k, s in enumerate(_sentences(n // 8, seed, (12, 40))):
            if k % 10 == 0:
                lines += ["", f" = {s.split()[0]} {s.split()[1]} = \n", ""]
            lines.append(" " + s.replace(" long ", " long @-@ ") + " \n")
        return lines

    features = datasets.Features({"text": datasets.Value("string")})
    splits = {"test": {"text": article(3)}, "train": {"text": article(4) * 2}, "validation": {"text": article(5) * 8}}
    return write_dataset(datasets_dir, "Salesforce/wikitext", "wikitext-103-raw-v1", splits, features)


def write_bookcorpus(datasets_dir: Path, n: int = 3000) -> Path:
    import datasets

    lines = [s.lower() for s in _sentences(n, 7, (2, 16))]
    return write_dataset(datasets_dir, "bookcorpus/bookcorpus", "default", {"train": {"text": lines}},
                         datasets.Features({"text": datasets.Value("string")}))


def build_mirror(home: Path) -> Path:
    """Write the whole mirror under ``home`` (an HF_HOME); returns ``home``."""
    home = Path(home)
    for i, repo_id in enumerate(_model_ids()):
        write_model(home / "hub", repo_id, seed=i)
    for task in GLUE_SCHEMA:
        write_glue(home / "datasets", task)
    write_wikitext(home / "datasets")
    write_bookcorpus(home / "datasets")
    return home


def mirror_env(home: Path) -> dict[str, str]:
    """Environment variables that make a new process read only the mirror, offline."""
    home = Path(home)
    return {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_DATASETS_CACHE": str(home / "datasets"),
            "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def use_mirror(monkeypatch, home: Path, offline: bool = True) -> None:
    """Point this process's huggingface_hub, transformers and datasets at the mirror (their constants are
    read at import, so they are patched as well as the environment)."""
    import datasets.config as ds_config
    import huggingface_hub.constants as hf_constants

    for key, value in mirror_env(home).items():
        if key != "HF_HUB_OFFLINE" or offline:
            monkeypatch.setenv(key, value)
    if not offline:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(Path(home) / "hub"))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(ds_config, "HF_DATASETS_CACHE", Path(home) / "datasets")
    monkeypatch.setattr(ds_config, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(ds_config, "HF_DATASETS_OFFLINE", offline)


if __name__ == "__main__":  # python tests/hub_mirror.py DIR: build a mirror to explore by hand
    import sys
    import time

    t0 = time.time()
    build_mirror(Path(sys.argv[1]))
    print(f"mirror written to {sys.argv[1]} in {time.time() - t0:.1f} s; use it with:")
    print(" ".join(f"{k}={v}" for k, v in mirror_env(Path(sys.argv[1])).items()))
    os._exit(0)
