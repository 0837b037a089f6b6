"""Loading checkpoints for every experiment: by path, zoo name or Hub id, in the class they were saved as.

- :func:`load_checkpoint` loads a checkpoint as the class its ``config.json`` names (``architectures``),
  so aligning and saving it never adds or drops a tensor: a ``BertModel`` stays a ``BertModel``.
- :func:`load_model` loads it for a given use (``mlm``, ``clm``, ``seqcls``, ``base``): the chapters'
  experiments, which need a particular head (MultiBERTs are saved as ``BertForPreTraining``).
- :func:`loss_kind` says which loss a loaded model's head supports.

A zoo checkpoint next to a ``training.json`` / ``finetune.json`` is checked against the sha256 recorded
there, so a corrupt or truncated file stops with the file's name and the command that regenerates it.
"""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch
import transformers
from transformers.utils import logging as hf_logging

from txmerge.base.cache import file_sha256, zoo_dir
from txmerge.base.errors import TxmergeError
from txmerge.core.spec import family_of

HUB_PREFIXES = ("google/",)
KINDS = {"mlm": "AutoModelForMaskedLM", "clm": "AutoModelForCausalLM", "seqcls": "AutoModelForSequenceClassification",
         "base": "AutoModel"}
RECORDS = {"training.json": "python -m txmerge zoo train --seed {seed}",
           "finetune.json": "python -m txmerge zoo finetune --task {task} --seed {seed}"}


def is_hub_id(name: str | os.PathLike) -> bool:
    return str(name).startswith(HUB_PREFIXES)


def resolve(name: str | os.PathLike) -> str:
    """A zoo name ("tiny/seed_1" or "seed_1"), a local folder, or a Hub id, as a path or id string."""
    s = str(name)
    if is_hub_id(s):
        return s
    for cand in (Path(s), zoo_dir() / s, zoo_dir() / "tiny" / s):
        if (cand / "config.json").exists():
            return str(cand)
    raise TxmergeError(
        f"No checkpoint found for {s!r} (looked in {s}, {zoo_dir() / s}); pass a folder written by save_pretrained, "
        "a Hub id like google/multiberts-seed_1, or regenerate the zoo with `python -m txmerge zoo train --seed N`."
    )


def check_weights(folder: str | os.PathLike) -> None:
    """Compare a zoo checkpoint's weights with the sha256 of its training record, if it has one."""
    folder = Path(folder)
    for record, command in RECORDS.items():
        path = folder / record
        if path.exists() and (folder / "model.safetensors").exists():
            entry = json.loads(path.read_text())
            if file_sha256(folder / "model.safetensors") != entry.get("sha256"):
                raise TxmergeError(
                    f"{folder / 'model.safetensors'} does not match the sha256 in {record} (corrupt or truncated); restore it "
                    f"with `git checkout -- {folder}` or regenerate it with `{command.format(**{'task': '?', **entry})}`."
                )


def _target(name: str | os.PathLike) -> str:
    target = resolve(name)
    if is_hub_id(target):
        from txmerge.base.hub import require_model

        require_model(target, "The model")
    else:
        check_weights(target)
    return target


def _from_pretrained(cls, target: str, **kwargs):
    hf_logging.disable_progress_bar()  # one "Loading weights" bar per model would clutter the book
    verbosity = hf_logging.get_verbosity()
    # MultiBERTs are saved as BertForPreTraining: loaded for one head, the unused pooler and next-sentence
    # weights would print a load report into every paper chapter
    hf_logging.set_verbosity_error()
    try:
        model = cls.from_pretrained(target, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise TxmergeError(f"Could not load {target} ({str(exc).splitlines()[0]}); pass a complete save_pretrained folder "
                           "or a Hub id that is in the local cache.") from None
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()
    family_of(model)  # an unsupported family is refused with the list of supported ones
    return model.eval()


def load_checkpoint(name: str | os.PathLike) -> torch.nn.Module:
    """The checkpoint in the class its config names (``architectures[0]``; the base model when none), float32, eval."""
    target = _target(name)
    config = transformers.AutoConfig.from_pretrained(target)
    family_of(config)
    names = getattr(config, "architectures", None) or []
    cls = getattr(transformers, names[0], None) if names else transformers.AutoModel
    if cls is None:
        raise TxmergeError(f"{target} names the class {names[0]!r}, which this transformers version lacks; "
                           "load it yourself and pass the model to the library.")
    return _from_pretrained(cls, target)


def load_model(name: str | os.PathLike, kind: str = "mlm", num_labels: int | None = None) -> torch.nn.Module:
    """Load a checkpoint for ``kind`` in {"mlm", "clm", "seqcls", "base"} (a head made for it if it has none)."""
    if kind not in KINDS:
        raise TxmergeError(f"Unknown model kind {kind!r}; choose one of {', '.join(KINDS)}.")
    target = _target(name)
    kwargs = {} if num_labels is None else {"num_labels": num_labels}
    return _from_pretrained(getattr(transformers, KINDS[kind]), target, **kwargs)


def model_sha256(path: str | os.PathLike) -> str:
    """sha256 of a checkpoint folder's weights file (the cache key of everything computed from it)."""
    p = Path(path)
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (p / name).exists():
            return file_sha256(p / name)
    return str(path)  # Hub ids: the id (and its revision) is the key


def loss_kind(model: torch.nn.Module) -> str | None:
    """The loss a model's head supports: "mlm", "clm", "task" (a classifier), or None (a base model)."""
    name = type(model).__name__
    if name.endswith(("ForMaskedLM", "ForPreTraining")):
        return "mlm"
    if name.endswith(("LMHeadModel", "ForCausalLM")):
        return "clm"
    if name.endswith("ForSequenceClassification"):
        return "task"
    return None


def model_inputs(model: torch.nn.Module, inputs: Mapping[str, Any]) -> dict[str, Any]:
    """The tensors of ``inputs`` that ``model.forward`` accepts (DistilBERT and GPT-2 take no token
    types, for instance), on the model's device."""
    accepted = inspect.signature(model.forward).parameters
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in accepted]
    device = next(model.parameters()).device
    return {k: torch.as_tensor(inputs[k]).to(device) for k in keys if k in inputs and inputs[k] is not None}
