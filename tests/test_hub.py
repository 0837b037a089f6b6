"""The paper preset without the Hub: every chapter's items found in the standard Hugging Face caches
(the local mirror of tests/hub_mirror.py) by the real ``from_pretrained`` / ``load_dataset`` calls,
and one sentence, before any work, for an empty cache, a half-downloaded model, a missing split, a
GLUE config the paper does not use or a Hub id that is not a BERT. ``txmerge prefetch`` plans,
sizes and downloads (against a stand-in of the Hub's API) and refuses to run without network."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import pytest

from hub_mirror import REVISION, use_mirror, write_model
from txmerge import data
from txmerge.base import hub
from txmerge.base.errors import TxmergeError
from txmerge.chapters import params as tp
from txmerge.chapters import prefetch, start
from txmerge.core import models
from txmerge.experiments import pipeline
from txmerge.zoo import tiny as zoo


@pytest.fixture
def mirror(hub_mirror, monkeypatch, env):
    use_mirror(monkeypatch, hub_mirror)
    return hub_mirror


@pytest.fixture
def empty(tmp_path, monkeypatch, env):
    use_mirror(monkeypatch, tmp_path / "hf-empty")
    return tmp_path / "hf-empty"


def one_sentence(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.endswith(".") and "Traceback" not in msg
    return msg


def test_offline_with_a_filled_cache_every_paper_chapter_passes_its_check(mirror):
    for chapter in tp.CHAPTERS:
        start.require_online_for(tp.chapter_params("paper", chapter))  # no error: everything is cached
    items = prefetch.preset_items("paper")
    ids = {i.repo_id for i in items}
    assert {f"google/multiberts-seed_{s}" for s in range(1, 6)} <= ids and "google/multiberts-seed_1-step_400k" in ids
    assert {(i.config, i.splits) for i in items if i.repo_id == "nyu-mll/glue"} >= {
        ("mnli", ("train", "validation_mismatched")), ("stsb", ("train", "validation"))}
    assert all(hub.missing(i) is None for i in items)


def test_offline_loads_go_through_the_real_library_calls(mirror):
    tok = zoo.tokenizer_for("paper")
    model = models.load_model("google/multiberts-seed_2", "mlm")
    assert type(model).__name__ == "BertForMaskedLM" and model.config.vocab_size == len(tok)
    assert models.load_checkpoint("google/multiberts-seed_1-step_100k").__class__.__name__ == "BertForPreTraining"
    mn = data.glue_task("mnli", "paper")
    assert mn["validation"]["sentence1"] != mn["train"]["sentence1"][: len(mn["validation"])]
    assert mn["train"].features == data.TASK_FEATURES_CLS and set(mn["train"]["label"]) == {0, 1, 2}
    st = data.glue_task("stsb", "paper", max_train=8)
    assert st["train"].features["label"].dtype == "float32" and len(st["train"]) == 8
    assert max(st["train"]["label"]) > 1.5  # scores on the 0-5 scale, not class ids
    ev = data.mlm_eval_text("paper")
    assert all(t.strip() for t in ev["text"]) and any("@-@" in t for t in ev["text"])
    bc = data.correlation_text("paper", n_sentences=50, seed=3)
    assert len(bc) == 50 and all(len(t.split()) >= data.MIN_WORDS for t in bc["text"])
    assert data.correlation_text("paper", n_sentences=50, seed=3)["text"] == bc["text"]


def test_empty_cache_offline_stops_before_any_work_naming_the_item(empty):
    for chapter, first in (("02_ffn_attention", "multiberts-seed_0"), ("06_glue", "multiberts-seed_0"),
                           ("01_models_and_data", "multiberts-seed_0")):
        with pytest.raises(TxmergeError) as exc:
            start.require_online_for(tp.chapter_params("paper", chapter))
        msg = one_sentence(exc)
        assert first in msg and "txmerge prefetch --preset paper" in msg and "HF_HUB_OFFLINE" in msg
    start.require_online_for(tp.chapter_params("paper", "07_exercises"))  # nothing from the Hub
    start.require_online_for(tp.chapter_params("tiny", "02_ffn_attention"))  # no check for an offline preset
    for call in (lambda: models.load_model("google/multiberts-seed_1"), lambda: zoo.load_tokenizer(zoo.PAPER_TOKENIZER),
                 lambda: pipeline.MLMExperiment("paper", n_sentences=8), lambda: data.glue_task("rte", "paper"),
                 lambda: data.mlm_eval_text("paper"), lambda: data.correlation_text("paper", n_sentences=10)):
        with pytest.raises(TxmergeError) as exc:
            call()
        assert "prefetch" in one_sentence(exc)


def test_partial_cache_names_the_first_missing_item(hub_mirror, tmp_path, monkeypatch, env):
    home = tmp_path / "hf"
    shutil.copytree(hub_mirror, home, symlinks=True)
    shutil.rmtree(home / "hub" / "models--google--multiberts-seed_4")
    shutil.rmtree(home / "datasets" / "nyu-mll___glue" / "qqp")
    use_mirror(monkeypatch, home)
    glue = tp.validate("06_glue", {"preset": "paper", "tasks": ["rte", "qqp"], "pairs": [[1, 2]]})
    with pytest.raises(TxmergeError, match=r"The GLUE task qqp nyu-mll/glue \(qqp\) is not in the Hugging Face datasets cache"):
        start.require_online_for(glue)
    mlm = tp.validate("03_attention_heads", {"preset": "paper", "pairs": [[1, 2], [3, 4]]})
    with pytest.raises(TxmergeError, match="google/multiberts-seed_4 is not in the Hugging Face cache"):
        start.require_online_for(mlm)


def test_half_downloaded_model_is_refused(hub_mirror, tmp_path, monkeypatch, env):
    home = tmp_path / "hf"
    shutil.copytree(hub_mirror / "hub" / "models--google--multiberts-seed_0", home / "hub" / "models--google--multiberts-seed_0")
    folder = home / "hub" / "models--google--multiberts-seed_3"
    snap = write_model(home / "hub", "google/multiberts-seed_3")
    (snap / "model.safetensors").rename(folder / "blobs" / "0123abcd.incomplete")  # what an interrupted download leaves
    use_mirror(monkeypatch, home)
    with pytest.raises(TxmergeError) as exc:
        models.load_model("google/multiberts-seed_3")
    assert "google/multiberts-seed_3 is only partly downloaded" in one_sentence(exc)
    params = tp.validate("04_residual", {"preset": "paper", "pairs": [[0, 3]]})
    with pytest.raises(TxmergeError, match="only partly downloaded"):
        start.require_online_for(params)


def test_half_prepared_dataset_is_refused(hub_mirror, tmp_path, monkeypatch, env):
    home = tmp_path / "hf"
    shutil.copytree(hub_mirror, home, symlinks=True)
    version = home / "datasets" / "Salesforce___wikitext" / "wikitext-103-raw-v1" / "0.0.0"
    (version / REVISION).rename(version / f"{REVISION}.incomplete")  # what an interrupted load_dataset leaves
    use_mirror(monkeypatch, home)
    with pytest.raises(TxmergeError) as exc:
        data.mlm_eval_text("paper")
    assert "Salesforce/wikitext (wikitext-103-raw-v1) is not in the Hugging Face datasets cache" in one_sentence(exc)


def test_missing_split_and_unused_glue_config(mirror, hub_mirror):
    with pytest.raises(TxmergeError) as exc:
        hub.load_dataset("nyu-mll/glue", "mnli", "validation", what="The GLUE task mnli")
    assert "without its split(s) validation" in one_sentence(exc)
    with pytest.raises(TxmergeError) as exc:
        data.glue_task("wnli", "paper")
    assert "Unknown task 'wnli'" in one_sentence(exc)
    with pytest.raises(TxmergeError, match="not one of the paper's tasks"):
        prefetch.glue_item("ax")
    with pytest.raises(TxmergeError, match="Parameter 'tasks'"):
        tp.validate("06_glue", {"preset": "paper", "tasks": ["wnli"]})


def test_hub_id_that_is_not_a_bert(mirror, hub_mirror, tmp_path, monkeypatch):
    from transformers import GPT2Config, GPT2LMHeadModel

    home = tmp_path / "hf"
    shutil.copytree(hub_mirror / "hub" / "models--google--multiberts-seed_0", home / "hub" / "models--google--multiberts-seed_0")
    write_model(home / "hub", "google/not-a-bert", GPT2LMHeadModel(GPT2Config(n_embd=16, n_layer=1, n_head=2, vocab_size=50)))
    use_mirror(monkeypatch, home)
    with pytest.raises(TxmergeError) as exc:
        models.load_model("google/not-a-bert", "mlm")
    assert "google/not-a-bert" in one_sentence(exc)
    exp = pipeline.MLMExperiment("paper", n_sentences=8, model_paths={1: "google/not-a-bert"}, progress=False)
    with pytest.raises(TxmergeError):
        exp.model(1)


# ------------------------------------------------------------------------------------------------ prefetch
class FakeApi:
    """The two calls of huggingface_hub.HfApi that the prefetch plan makes."""

    def model_info(self, repo_id, files_metadata=False):
        names = [("config.json", 600), ("pytorch_model.bin", 440_000_000), ("model.safetensors", 438_000_000),
                 ("tf_model.h5", 530_000_000), ("vocab.txt", 230_000), ("flax_model.msgpack", 438_000_000), (".gitattributes", 9)]
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=n, size=s) for n, s in names])

    def dataset_info(self, repo_id, revision=None, files_metadata=False):
        names = [("mnli/train-00000-of-00001.parquet", 52_000_000), ("mnli/validation_matched-00000-of-00001.parquet", 1_200_000),
                 ("qqp/train-00000-of-00001.parquet", 33_000_000), ("plain_text/train/0000.parquet", 500_000_000),
                 ("README.md", 30_000)]
        return SimpleNamespace(siblings=[SimpleNamespace(rfilename=n, size=s) for n, s in names])


def test_prefetch_plans_sizes_and_fetches_only_what_is_missing(empty, monkeypatch):
    monkeypatch.setattr(prefetch, "hub_reachable", lambda *a, **k: True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    items = [prefetch.TOKENIZER, prefetch.model_item(1), prefetch.glue_item("mnli"), prefetch.BOOKCORPUS]
    fetched, lines = [], []
    plan = prefetch.prefetch(items, api=FakeApi(), download=lambda row: fetched.append(row["item"]), echo=lines.append,
                             dry_run=True)
    assert not fetched and "GB in all" in lines[0]
    sizes = {r["item"].ref: r for r in plan}
    assert [n for n, _ in sizes["google/multiberts-seed_1"]["files"]] == ["config.json", "model.safetensors", "vocab.txt"]
    assert [n for n, _ in sizes["google/multiberts-seed_0"]["files"]] == ["config.json", "vocab.txt"]  # tokenizer only
    assert sizes["nyu-mll/glue (mnli)"]["bytes"] == 53_200_000
    assert sizes["bookcorpus/bookcorpus@refs/convert/parquet"]["bytes"] == 500_000_000
    total = sum(r["bytes"] for r in plan)
    assert f"{total / 1e9:.2f} GB" in lines[0]
    with pytest.raises(TxmergeError, match="still not complete"):  # the fake download writes nothing
        prefetch.prefetch(items, api=FakeApi(), download=lambda row: fetched.append(row["item"]), echo=lines.append)
    assert fetched == items


def test_prefetch_skips_cached_items(mirror, monkeypatch):
    monkeypatch.setattr(prefetch, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(prefetch, "offline_forced", lambda: False)
    fetched = []
    plan = prefetch.prefetch(prefetch.preset_items("paper"), api=FakeApi(), download=fetched.append, echo=lambda s: None)
    assert not fetched and all(r["bytes"] == 0 for r in plan)


def test_prefetch_without_network_is_one_sentence(monkeypatch, capsys):
    from txmerge import cli

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(prefetch, "hub_reachable", lambda *a, **k: False)
    assert cli.main(["prefetch", "--preset", "paper"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("txmerge: error: The Hugging Face Hub cannot be reached") and "\n" not in err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cli.main(["prefetch"]) == 2
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err
    assert cli.main(["prefetch", "--preset", "tiny"]) == 0
    assert "nothing from the Hugging Face Hub" in capsys.readouterr().out


def test_unreachable_hub_switches_the_libraries_to_offline_mode(mirror, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    assert hub.is_offline() and hf_constants.HF_HUB_OFFLINE
    start.require_online_for(tp.chapter_params("paper", "05_data_amount"))
