"""GLUE fine-tunes of the zoo's seeds: the recipe, the runs and where each preset keeps them.

Recipe (``FinetuneRecipe``): ``BertForSequenceClassification`` on top of a zoo model, the same new
pooler/classifier for every seed (``head_seed``, as in the paper), AdamW with a linear decay, a
seeded cap on the training examples. A slice of the training split (``selection_examples``, never
trained on) is held out to choose the checkpoint: the model is scored on it every
``select_every`` steps and the state with the lowest loss there is kept. The validation split that
the GLUE chapter reports is never used for that choice, so over-confident endpoints do not hide the
curves. ``finetuned_id`` only looks a fine-tune up; ``ensure_finetuned`` trains what is missing.
"""

from __future__ import annotations

import copy
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import BertForSequenceClassification
from transformers.utils import logging as hf_logging

from txmerge import data
from txmerge.base.cache import atomic_write, atomic_write_bytes, file_sha256, zoo_dir
from txmerge.base.errors import TxmergeError
from txmerge.base.presets import check_preset
from txmerge.core.evaluate import task_loss
from txmerge.zoo import tiny as zoo


@dataclass
class FinetuneRecipe:
    """Fine-tuning of a zoo model on one GLUE analogue (the paper: 3 epochs, 5 for MRPC; seed 42 for every
    model, so the new pooler/classifier initialisation and the data order are the same across seeds)."""

    epochs: int = 3
    mrpc_epochs: int = 5
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.0
    max_length: int = 128
    max_train: int | None = 4000
    head_seed: int = 42
    threads: int = 1
    selection_examples: int = 0  # training examples held out to choose the checkpoint by loss, at most a fifth (0: keep the last)
    select_every: int = 50  # steps between two scorings on the held-out slice
    regression_head_at_mean: bool = False  # a regression head's bias starts at the training labels' mean (the prior)


#: The tiny zoo's recipe (issue 12): checkpoint chosen on 500 held-out training examples (a fifth of MRPC's).
TINY_FINETUNE = FinetuneRecipe(selection_examples=500, select_every=40, regression_head_at_mean=True)
SMOKE_FINETUNE = FinetuneRecipe(epochs=1, mrpc_epochs=1, batch_size=8, max_train=64)
#: The paper's recipe (paper-spec §3.9): lr 2e-5, batch 8, 3 epochs (MRPC 5), whole training sets, seed 42.
PAPER_FINETUNE = FinetuneRecipe(epochs=3, mrpc_epochs=5, batch_size=8, lr=2e-5, max_train=None, threads=0)
RECIPES = {"tiny": TINY_FINETUNE, "smoke": SMOKE_FINETUNE, "paper": PAPER_FINETUNE}


def finetuned_path(task: str, seed: int, root: Path | None = None) -> Path:
    return (root or zoo_dir() / "tiny-glue") / task / f"seed_{seed}"


def glue_root(preset: str) -> Path:
    """The folder of ``preset``'s fine-tunes (tiny: committed in the zoo; smoke: the results cache; paper: the zoo)."""
    return {"tiny": zoo_dir() / "tiny-glue", "smoke": zoo.smoke_root() / "glue", "paper": zoo_dir() / "paper-glue"}[preset]


def _split(train, recipe: FinetuneRecipe):
    """(training rows, held-out selection rows or None): a seeded cut, then the cap on training rows."""
    train = train.shuffle(seed=0)
    held = None
    n_held = min(recipe.selection_examples, len(train) // 5)
    if n_held:
        held = train.select(range(n_held))
        train = train.select(range(n_held, len(train)))
    if recipe.max_train is not None and len(train) > recipe.max_train:
        train = train.select(range(recipe.max_train))
    return train, held


def finetune_seed(task: str, seed: int, recipe: FinetuneRecipe | None = None, preset: str = "tiny",
                  base_root: Path | None = None, out_root: Path | None = None, progress: bool = True,
                  device: str = "cpu") -> dict:
    """Fine-tune zoo seed ``seed`` on ``task``; saves the chosen model (fp16) and returns its manifest entry."""
    recipe = recipe or RECIPES[check_preset(preset)]
    threads = torch.get_num_threads()
    if recipe.threads:
        torch.set_num_threads(recipe.threads)
    info = data.task_info(task, preset)
    ds = data.glue_task(task, preset)
    train, held = _split(ds["train"], recipe)
    tokenizer = zoo.tokenizer_for(preset)
    base = zoo.model_id(preset, seed) if base_root is None else str(zoo.checkpoint_path(seed, base_root))
    torch.manual_seed(recipe.head_seed)  # same pooler/classifier initialisation for every seed
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the new pooler/classifier are expected; no load report
    try:
        model = BertForSequenceClassification.from_pretrained(base, num_labels=1 if info.is_regression else info.num_labels,
                                                              dtype=torch.float32)
    finally:
        hf_logging.set_verbosity(verbosity)
    if info.is_regression:
        model.config.problem_type = "regression"
        if recipe.regression_head_at_mean:  # start from the prior's prediction, not from 0 on a 0-5 scale
            with torch.no_grad():
                model.classifier.bias.fill_(float(np.mean(train["label"])))
    model.to(device)

    def score(rows) -> dict[str, float]:
        return task_loss(model, data.task_batches(rows, tokenizer, batch_size=64, max_length=recipe.max_length), info.is_regression)

    epochs = recipe.mrpc_epochs if task == "mrpc" else recipe.epochs
    total = epochs * math.ceil(len(train) / recipe.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / total))
    t0, step, log = time.time(), 0, []
    best = {"loss": math.inf, "step": 0, "state": None}
    bar = tqdm(total=total, desc=f"{task} seed {seed}", disable=not progress, mininterval=5)
    for epoch in range(epochs):
        model.train()
        for batch in data.task_batches(train.shuffle(seed=recipe.head_seed + epoch), tokenizer,
                                       batch_size=recipe.batch_size, max_length=recipe.max_length):
            out = model(**{k: v.to(device) for k, v in batch.items()})
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            bar.update(1)
            if held is not None and (step % recipe.select_every == 0 or step == total):
                selection = score(held)
                log.append({"step": step, "epoch": epoch + 1, "selection_loss": selection["loss"], "seconds": time.time() - t0})
                if selection["loss"] < best["loss"]:
                    best = {"loss": selection["loss"], "step": step, "state": copy.deepcopy(model.state_dict())}
                model.train()
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    validation = score(ds["validation"])
    out_dir = finetuned_path(task, seed, out_root)
    model.eval()
    try:  # record a zoo model relative to the zoo (a Hub id or an outside folder as given)
        base_rel = Path(base).resolve().relative_to(zoo_dir().resolve()).as_posix()
    except ValueError:
        base_rel = base
    entry = {"task": task, "seed": seed, "base": base_rel, "recipe": asdict(recipe), "epochs": epochs, "steps": total,
             "chosen_step": best["step"] if best["state"] is not None else total,
             "selection_loss": None if held is None else best["loss"],
             "train_examples": len(train), "selection_examples": 0 if held is None else len(held),
             "validation_examples": len(ds["validation"]), "validation": validation, "curve": log,
             "wall_seconds": round(time.time() - t0, 1),
             "machine": f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}, {recipe.threads} thread(s), {device}"}

    def write(tmp: Path) -> None:  # model and record appear together or not at all: no half-written fine-tune is trusted
        model.cpu().half().save_pretrained(tmp)
        entry["sha256"] = file_sha256(tmp / "model.safetensors")
        (tmp / "finetune.json").write_text(json.dumps(entry, indent=1))

    atomic_write(out_dir, write, directory=True)
    torch.set_num_threads(threads)
    return entry


def write_glue_manifest(root: Path | None = None) -> dict:
    root = root or zoo_dir() / "tiny-glue"
    entries = [json.loads(p.read_text()) for p in sorted(root.glob("*/seed_*/finetune.json"))]
    manifest = {"description": "Zoo seeds fine-tuned on the GLUE analogues by txmerge.zoo.finetune.finetune_seed.",
                "regenerate": "python -m txmerge zoo finetune --task TASK --seed N",
                "models": [{k: v for k, v in e.items() if k != "curve"} for e in entries]}
    atomic_write_bytes(root / "MANIFEST.json", json.dumps(manifest, indent=1).encode())
    return manifest


def finetuned_id(preset: str, task: str, seed: int) -> str:
    """Where the fine-tuned model of (task, seed) lives under ``preset``; a lookup that never trains."""
    path = finetuned_path(task, seed, glue_root(check_preset(preset)))
    if not (path / "model.safetensors").exists():
        raise TxmergeError(f"No fine-tuned model for task {task!r}, seed {seed} at {path}; create it with "
                           f"`python -m txmerge zoo finetune --preset {preset} --task {task} --seed {seed}`.")
    return str(path)


def ensure_finetuned(preset: str, task: str, seed: int, device: str = "cpu", progress: bool = False) -> str:
    """The fine-tuned model of (task, seed), trained first where the preset trains its own (smoke: seconds;
    paper: the paper's recipe on the GPU, resumable per task and seed). The tiny fine-tunes are committed."""
    check_preset(preset)
    path = finetuned_path(task, seed, glue_root(preset))
    if preset != "tiny" and not (path / "model.safetensors").exists():
        if preset == "smoke":
            zoo.ensure_model("smoke", seed)
            finetune_seed(task, seed, SMOKE_FINETUNE, preset="smoke", base_root=zoo.smoke_root(), out_root=glue_root("smoke"),
                          progress=False)
        else:
            finetune_seed(task, seed, PAPER_FINETUNE, preset="paper", out_root=glue_root("paper"), device=device, progress=progress)
    return finetuned_id(preset, task, seed)
