"""The seed zoo: pretraining a micro BERT on the real pretraining text for a few steps, determinism,
resumption after an interruption, name resolution, the offline Hub error, and the fine-tuning recipe's
shared head initialisation. Nothing is downloaded: the pinned archives must already be in a local
download folder, otherwise these tests skip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertForSequenceClassification

from conftest import offline_environment
from txmerge.base import hub
from txmerge.base.cache import file_sha256
from txmerge.base.errors import TxmergeError
from txmerge.core import models
from txmerge.experiments import pipeline
from txmerge.zoo import finetune
from txmerge.zoo import tiny as zoo

REPO = Path(__file__).resolve().parents[1]
MICRO = zoo.TinyRecipe(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, steps=4,
                       eval_every=2, eval_blocks=2, ckpt_every=2, batch_size=4)


# ------------------------------------------------------------------------------------ environment
@pytest.fixture(scope="module")
def zoo_env(downloads, shared_cache):
    """Module-wide: TXMERGE_CACHE in the pytest temp folder (shared with the other modules' micro models),
    the verified downloads, no Hub, and a guard that fails any attempt to download."""
    with pytest.MonkeyPatch.context() as mp:
        offline_environment(mp, downloads, shared_cache)
        yield shared_cache


def _roots(base: Path) -> tuple[Path, Path]:
    """(out_root with the zoo's tokenizer copied in, work_root): no tokenizer is retrained in tests."""
    out, work = base / "out", base / "work"
    tok = zoo.tokenizer_dir(out)
    if not (tok / "tokenizer.json").exists():
        zoo.load_tokenizer().save_pretrained(tok)
    return out, work


def _train(base: Path, seed: int, recipe: zoo.TinyRecipe = MICRO) -> tuple[dict, dict[str, torch.Tensor]]:
    out, work = _roots(base)
    entry = zoo.train_seed(seed, recipe, out_root=out, work_root=work, progress=False)
    return entry, load_file(zoo.checkpoint_path(seed, out) / "model.safetensors")


@pytest.fixture(scope="module")
def reference(zoo_env, tmp_path_factory):
    """Seed 3 trained uninterrupted with the micro recipe: (entry, weights, folder)."""
    base = tmp_path_factory.mktemp("zoo-ref")
    entry, weights = _train(base, 3)
    return entry, weights, base


def _assert_same(w1: dict, w2: dict) -> None:
    assert w1.keys() == w2.keys()
    for k in w1:
        assert torch.equal(w1[k], w2[k]), k


# ------------------------------------------------------------------------------------ training
def test_train_seed_writes_checkpoint_manifest_entry_and_curve(reference):
    entry, weights, base = reference
    folder = zoo.checkpoint_path(3, base / "out")
    assert (folder / "model.safetensors").exists() and (folder / "config.json").exists()
    saved = json.loads((folder / "training.json").read_text())
    assert saved == json.loads(json.dumps(entry))
    assert entry["steps"] == 4 and entry["tokens_seen"] == 4 * 4 * 128
    assert [p["step"] for p in entry["curve"]] == [2, 4]
    for point in entry["curve"]:
        assert 0 < point["heldout_loss"] < 20 and 0 < point["train_loss"] < 20
    assert entry["final_heldout_loss"] == entry["curve"][-1]["heldout_loss"]
    assert entry["sha256"] == file_sha256(folder / "model.safetensors")
    assert entry["config"]["hidden_size"] == 16 and entry["config"]["num_hidden_layers"] == 1
    assert all(v.dtype == torch.float16 for v in weights.values())  # fp16 storage
    model = models.load_model(folder)
    assert model.config.hidden_size == 16 and next(model.parameters()).dtype == torch.float32 and not model.training
    manifest = zoo.write_manifest(base / "out")
    assert [m["seed"] for m in manifest["models"]] == [3] and "curve" not in manifest["models"][0]


def test_same_seed_same_weights_other_seed_other_weights(reference, tmp_path):
    _, weights, _ = reference
    _, again = _train(tmp_path / "again", 3)
    _assert_same(weights, again)
    _, other = _train(tmp_path / "other", 4)
    assert any(not torch.equal(weights[k], other[k]) for k in weights)


def test_resume_after_interruption_gives_the_uninterrupted_weights(reference, tmp_path, monkeypatch):
    _, weights, _ = reference
    base = tmp_path / "interrupted"
    out, work = _roots(base)
    real, calls = zoo.heldout_loss, []

    def interrupt(*args, **kwargs):  # evaluations happen at steps 2 and 4; the step-2 checkpoint follows the first
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(zoo, "heldout_loss", interrupt)
    with pytest.raises(KeyboardInterrupt):
        zoo.train_seed(3, MICRO, out_root=out, work_root=work, progress=False)
    state = torch.load(work / "seed_3" / "state.pt", weights_only=False)
    assert state["step"] == 2
    assert not (zoo.checkpoint_path(3, out) / "model.safetensors").exists()
    monkeypatch.setattr(zoo, "heldout_loss", real)

    entry = zoo.train_seed(3, MICRO, out_root=out, work_root=work, progress=False)
    assert entry["steps"] == 4 and [p["step"] for p in entry["curve"]] == [2, 4]
    _assert_same(weights, load_file(zoo.checkpoint_path(3, out) / "model.safetensors"))


def test_resume_with_another_recipe_is_refused(zoo_env, tmp_path):
    out, work = _roots(tmp_path)
    zoo.train_seed(5, zoo.TinyRecipe(**{**MICRO.__dict__, "steps": 2}), out_root=out, work_root=work, progress=False)
    with pytest.raises(TxmergeError, match="another recipe"):
        zoo.train_seed(5, MICRO, out_root=out, work_root=work, progress=False)


# ------------------------------------------------------------------------------------ names, Hub
def test_hub_id_offline_is_one_clear_error(zoo_env, monkeypatch, tmp_path):
    monkeypatch.setattr(hub, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))  # an empty cache
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "datasets"))
    for call in (lambda: models.load_model("google/multiberts-seed_1"), lambda: zoo.load_tokenizer(zoo.PAPER_TOKENIZER),
                 lambda: pipeline.MLMExperiment("paper", n_sentences=8)):
        with pytest.raises(TxmergeError) as info:
            call()
        msg = str(info.value)
        assert "not in the Hugging Face cache" in msg and "txmerge prefetch --preset paper" in msg and "\n" not in msg
    assert zoo.model_id("paper", 3) == "google/multiberts-seed_3"
    assert models.resolve("google/multiberts-seed_3") == "google/multiberts-seed_3"


def test_resolve_names_and_missing_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("TXMERGE_ZOO", str(tmp_path / "zoo"))
    with pytest.raises(TxmergeError, match="txmerge zoo train"):
        models.resolve("seed_1")
    with pytest.raises(TxmergeError, match="txmerge zoo train"):
        models.resolve(tmp_path / "nowhere")
    with pytest.raises(TxmergeError, match="txmerge zoo train --seed 7"):
        zoo.model_id("tiny", 7)
    with pytest.raises(TxmergeError, match="Unknown model kind"):
        models.load_model("seed_1", "regression")
    folder = tmp_path / "zoo" / "tiny" / "seed_1"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    assert models.resolve("seed_1") == str(folder) == models.resolve("tiny/seed_1") == models.resolve(folder)


# ------------------------------------------------------------------------------------ fine-tuning
def test_finetune_starts_every_seed_from_the_same_head(zoo_env, tmp_path, monkeypatch):
    """The paper keeps the new pooler/classifier initialisation identical across seeds (head_seed)."""
    zoo.ensure_smoke_model(1), zoo.ensure_smoke_model(2)
    real = BertForSequenceClassification.from_pretrained.__func__
    loaded = []

    def spy(cls, *args, **kwargs):
        model = real(cls, *args, **kwargs)
        loaded.append((model, {k: v.detach().clone() for k, v in model.state_dict().items()}))
        return model

    monkeypatch.setattr(finetune.BertForSequenceClassification, "from_pretrained", classmethod(spy))
    entries = [finetune.finetune_seed("stsb", s, finetune.SMOKE_FINETUNE, preset="smoke", base_root=zoo.smoke_root(),
                                 out_root=tmp_path / "glue", progress=False) for s in (1, 2)]
    assert len(loaded) == 2
    (m1, init1), (m2, init2) = loaded
    head = [k for k in init1 if k.startswith(("classifier.", "bert.pooler."))]
    assert {"classifier.weight", "classifier.bias", "bert.pooler.dense.weight"} <= set(head)
    for k in head:
        assert torch.equal(init1[k], init2[k]), k  # same new head for both seeds
    assert not torch.equal(init1["bert.embeddings.word_embeddings.weight"], init2["bert.embeddings.word_embeddings.weight"])
    assert not torch.equal(m1.classifier.weight, init1["classifier.weight"])  # and it was trained
    for s, e in zip((1, 2), entries):
        assert e["task"] == "stsb" and e["seed"] == s and "pearson" in e["validation"]
        assert e["selection_examples"] == 0 and e["chosen_step"] == e["steps"]  # the smoke recipe keeps the last state
        out = finetune.finetuned_path("stsb", s, tmp_path / "glue")
        assert json.loads((out / "finetune.json").read_text())["sha256"] == file_sha256(out / "model.safetensors")
        assert models.load_model(out, "seqcls").config.num_labels == 1


def test_finetune_chooses_its_checkpoint_on_held_out_training_rows(zoo_env, tmp_path):
    zoo.ensure_model("smoke", 1)
    recipe = finetune.FinetuneRecipe(epochs=2, mrpc_epochs=2, batch_size=8, max_train=48, selection_examples=40, select_every=2)
    entry = finetune.finetune_seed("stsb", 1, recipe, preset="smoke", base_root=zoo.smoke_root(), out_root=tmp_path, progress=False)
    ds = zoo.data.glue_task("stsb", "smoke")
    assert entry["selection_examples"] == min(40, len(ds["train"]) // 5) and entry["train_examples"] <= 48
    losses = [r["selection_loss"] for r in entry["curve"]]
    assert len(losses) >= 2 and entry["selection_loss"] == min(losses)
    assert entry["chosen_step"] == entry["curve"][losses.index(min(losses))]["step"]
    reloaded = models.load_model(finetune.finetuned_path("stsb", 1, tmp_path), "seqcls")
    assert reloaded.config.num_labels == 1


def test_a_regression_head_can_start_at_the_prior(zoo_env, tmp_path):
    """With lr 0 nothing moves: the model predicts what it was initialised to. At the labels' mean, its
    loss is about the prior's (the labels' variance); from a zero bias it is far above it."""
    zoo.ensure_model("smoke", 1)
    losses = {}
    for at_mean in (True, False):
        recipe = finetune.FinetuneRecipe(epochs=1, batch_size=32, max_train=None, lr=0.0, regression_head_at_mean=at_mean)
        entry = finetune.finetune_seed("stsb", 1, recipe, preset="smoke", base_root=zoo.smoke_root(),
                                       out_root=tmp_path / str(at_mean), progress=False)
        losses[at_mean] = entry["validation"]["loss"]
    ds = zoo.data.glue_task("stsb", "smoke")
    train, val = np.asarray(ds["train"]["label"]), np.asarray(ds["validation"]["label"])
    prior = float(((val - train.mean()) ** 2).mean())
    assert losses[True] == pytest.approx(prior, rel=0.15) and losses[False] > 2 * prior


def test_an_interrupted_finetune_leaves_nothing_a_later_run_would_trust(zoo_env, tmp_path, monkeypatch):
    zoo.ensure_model("smoke", 1)

    def crash(path):
        raise OSError("disk full")

    monkeypatch.setattr(finetune, "file_sha256", crash)  # fails after the weights are written, before the record
    with pytest.raises(OSError, match="disk full"):
        finetune.finetune_seed("stsb", 1, finetune.SMOKE_FINETUNE, preset="smoke", base_root=zoo.smoke_root(),
                               out_root=tmp_path, progress=False)
    assert not finetune.finetuned_path("stsb", 1, tmp_path).exists() and not list(tmp_path.rglob("*.safetensors"))


def test_lookups_never_train(zoo_env, tmp_path, monkeypatch):
    monkeypatch.setenv("TXMERGE_CACHE", str(tmp_path))  # an empty cache: nothing is trained yet
    with pytest.raises(TxmergeError, match="ensure_model"):
        zoo.model_id("smoke", 4)
    with pytest.raises(TxmergeError, match="zoo finetune --preset smoke --task stsb --seed 4"):
        finetune.finetuned_id("smoke", "stsb", 4)
    assert not any(tmp_path.rglob("model.safetensors"))


def test_training_points_leave_out_snapshots_the_zoo_does_not_keep(tmp_path, monkeypatch):
    import json

    from txmerge.experiments import along_training as progress
    from txmerge.zoo import tiny as zoo_module

    final = tmp_path / "seed_3"
    final.mkdir()
    (tmp_path / "progress" / "seed_3" / "step_00500").mkdir(parents=True)
    (tmp_path / "progress" / "seed_3" / "step_00500" / "model.safetensors").write_bytes(b"x")
    entries = [{"fraction": 0.05, "path": "progress/seed_3/step_00500"}, {"fraction": 0.2, "path": "progress/seed_3/step_02000"}]
    (final / "training.json").write_text(json.dumps({"progress": entries, "tokens_seen": 100}))
    monkeypatch.setattr(zoo_module, "ensure_model", lambda preset, seed: str(final))
    points = progress.training_points("tiny", 3)
    assert points == {0.05: str(tmp_path / "progress/seed_3/step_00500"), 1.0: str(final)}  # 20 % is listed, not kept
    (final / "training.json").unlink()
    with pytest.raises(TxmergeError, match="no training.json"):
        progress.training_points("tiny", 3)


def test_the_unigram_baseline_the_book_reads_is_the_one_the_recipe_recomputes(zoo_env):
    recorded = json.loads((zoo.zoo_dir() / "tiny" / "MANIFEST.json").read_text())["unigram_heldout_loss"]
    assert zoo.unigram_baseline("tiny") == recorded  # read, not recomputed (the models chapter's fast path)
    assert zoo.unigram_baseline("tiny", recompute=True) == pytest.approx(recorded, abs=1e-9)


def test_multiberts_ids_are_made_in_one_place_and_refuse_missing_seeds():
    from txmerge.base.errors import TxmergeError
    from txmerge.zoo import multiberts, tiny

    assert tiny.model_id("paper", 3) == multiberts.model_id(3) == "google/multiberts-seed_3"
    assert multiberts.snapshot_id(1, 400) == "google/multiberts-seed_1-step_400k"
    with pytest.raises(TxmergeError, match="seeds 0–24"):
        multiberts.model_id(25)
    with pytest.raises(TxmergeError, match="seeds 0–4 only"):
        multiberts.snapshot_id(7, 100)
