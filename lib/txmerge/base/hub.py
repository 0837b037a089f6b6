"""The Hugging Face Hub items of the paper preset, the standard Hugging Face caches, and offline runs.

GPU nodes often have no internet. The paper preset therefore works in two steps: ``txmerge prefetch
--preset paper`` (:mod:`txmerge.chapters.prefetch`) fills the standard caches on a machine with internet
(models in ``HF_HUB_CACHE``, datasets prepared in ``HF_DATASETS_CACHE``, both under ``HF_HOME``),
and the chapters then run with ``HF_HUB_OFFLINE=1`` through the ordinary ``from_pretrained`` and
``datasets.load_dataset`` calls, which read those caches.

Before any work a chapter checks its items (:func:`require_cached`): online there is nothing to check
(the libraries download what is missing); offline, the first item missing from the caches, or only
partly downloaded, stops the run with one sentence naming it and the prefetch command.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from txmerge.base.errors import TxmergeError

HUB_HOST = "huggingface.co"
PREFETCH_COMMAND = "txmerge prefetch --preset paper"
#: Files of a model repository that are never needed (other frameworks' weights, training states).
SKIP_SUFFIXES = (".h5", ".msgpack", ".ckpt.index", ".ckpt.data-00000-of-00001", ".ckpt.meta", ".onnx", ".ot", ".tflite")
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


@dataclass(frozen=True)
class HubItem:
    """One thing the paper preset takes from the Hub: a model repository, or one config of a dataset
    (with the splits the chapters read). ``what`` names it for people."""

    kind: str  # "model", "tokenizer" (a model repository's tokenizer files only) or "dataset"
    repo_id: str
    config: str | None = None
    splits: tuple[str, ...] = ()
    revision: str | None = None
    what: str = ""

    @property
    def ref(self) -> str:
        """``repo`` / ``repo (config)`` / ``repo@revision (config)``: how messages name the item."""
        rev = f"@{self.revision}" if self.revision else ""
        return f"{self.repo_id}{rev}" + (f" ({self.config})" if self.config else "")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def offline_forced() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for offline mode."""
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def hub_reachable(timeout: float = 3.0, host: str = HUB_HOST, port: int = 443) -> bool:
    """True if the Hub answers on ``port`` and offline mode is not forced (HF_HUB_OFFLINE): the one
    reachability check of the package."""
    if offline_forced():
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _enter_offline_mode() -> None:
    """Make the Hugging Face libraries read their caches without trying the network (as HF_HUB_OFFLINE=1
    would have done, had it been set before they were imported): no time-outs on a machine without internet."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    import huggingface_hub.constants as hf_constants

    hf_constants.HF_HUB_OFFLINE = True
    try:
        import datasets.config as ds_config

        ds_config.HF_HUB_OFFLINE = ds_config.HF_DATASETS_OFFLINE = True
    except ImportError:  # pragma: no cover
        pass


def is_offline() -> bool:
    """True when the run must rely on the caches (HF_HUB_OFFLINE, or the Hub out of reach: then offline
    mode is switched on for the rest of the process)."""
    if offline_forced():
        return True
    if not hub_reachable():
        _enter_offline_mode()
        return True
    return False


# ---------------------------------------------------------------------------------------------
# What the caches hold
# ---------------------------------------------------------------------------------------------
def hub_cache() -> Path:
    """The Hugging Face hub cache (``HF_HUB_CACHE``, default ``$HF_HOME/hub``)."""
    from huggingface_hub import constants

    return Path(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE).expanduser()


def datasets_cache() -> Path:
    """The prepared-datasets cache (``HF_DATASETS_CACHE``, default ``$HF_HOME/datasets``)."""
    import datasets

    return Path(os.environ.get("HF_DATASETS_CACHE") or datasets.config.HF_DATASETS_CACHE).expanduser()


def _cached_file(repo_id: str, filename: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(hub_cache()))
    return found if isinstance(found, str) and Path(found).is_file() else None


def missing_model(item: HubItem) -> str | None:
    """Why model ``item`` cannot be loaded from the hub cache (None when it can)."""
    folder = hub_cache() / ("models--" + item.repo_id.replace("/", "--"))
    partial = list((folder / "blobs").glob("*.incomplete")) if folder.exists() else []
    if not folder.exists() or _cached_file(item.repo_id, "config.json") is None:
        return "is not in the Hugging Face cache"
    if item.kind == "tokenizer":
        return None if any(_cached_file(item.repo_id, t) for t in TOKENIZER_FILES) else "is in the cache without its tokenizer files"
    if not any(_cached_file(item.repo_id, w) for w in WEIGHTS) or partial:
        return "is only partly downloaded (its weights are missing or incomplete)"
    return None


def dataset_folder(item: HubItem) -> Path:
    """``$HF_DATASETS_CACHE/<owner>___<name>/<config>``: where ``load_dataset`` prepares ``item``."""
    from datasets.naming import camelcase_to_snakecase

    owner, _, name = item.repo_id.rpartition("/")
    base = f"{owner}___{camelcase_to_snakecase(name)}" if owner else camelcase_to_snakecase(name)
    return datasets_cache() / base / (item.config or "default")


def missing_dataset(item: HubItem) -> str | None:
    """Why dataset ``item`` (its config and splits) cannot be loaded from the datasets cache (None when it can)."""
    from datasets.naming import camelcase_to_snakecase

    prefix = camelcase_to_snakecase(item.repo_id.rpartition("/")[2])  # arrow files are <name>-<split>[-NNNNN-of-NNNNN].arrow
    prepared = [p for p in sorted(dataset_folder(item).glob("*/*/dataset_info.json"))
                if not p.parent.name.endswith(".incomplete")]
    if not prepared:
        return "is not in the Hugging Face datasets cache"
    lacking: list[str] = []
    for info_path in prepared:  # any complete preparation will do
        splits = json.loads(info_path.read_text()).get("splits") or {}
        lacking = [s for s in item.splits if s not in splits
                   or not list(info_path.parent.glob(f"{prefix}-{s}.arrow")) + list(info_path.parent.glob(f"{prefix}-{s}-*.arrow"))]
        if not lacking:
            return None
    return f"is in the datasets cache without its split(s) {', '.join(lacking)}"


def missing(item: HubItem) -> str | None:
    """Why ``item`` cannot be used offline, or None."""
    return missing_dataset(item) if item.kind == "dataset" else missing_model(item)


def require_cached(items: list[HubItem]) -> None:
    """Stop with one sentence if the run is offline and an item is not (completely) in the caches.

    Online nothing is checked: ``from_pretrained`` and ``load_dataset`` download what is missing."""
    if not items or not is_offline():
        return
    for item in items:
        reason = missing(item)
        if reason:
            why = "HF_HUB_OFFLINE is set" if offline_forced() else "the Hub cannot be reached"
            raise TxmergeError(
                f"{item.what or 'The Hub item'} {item.ref} {reason} and {why}; fill the cache first with "
                f"`{PREFETCH_COMMAND}` (or `make prefetch PRESET=paper`) on a machine with internet and run with the same HF_HOME."
            )


def require_model(repo_id: str, what: str | None = None, tokenizer: bool = False) -> None:
    """:func:`require_cached` for one model repository (``tokenizer``: only its config and tokenizer files)."""
    require_cached([HubItem("tokenizer" if tokenizer else "model", repo_id, what=what or "The model")])


def load_dataset(path: str, config: str | None = None, split: str | None = None, *, revision: str | None = None,
                 what: str | None = None):
    """``datasets.load_dataset(path, config, split=split, revision=revision)`` from the cache when offline,
    with one-sentence errors for a missing item, config or split."""
    import datasets

    item = HubItem("dataset", path, config, (split,) if split else (), revision, what or "The dataset")
    require_cached([item])
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity_error()  # "Using the latest cached version ..." on every offline load
    try:
        return datasets.load_dataset(path, config, split=split, revision=revision)
    except (ValueError, FileNotFoundError, ConnectionError) as exc:
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TxmergeError(f"{item.what} {item.ref} could not be loaded ({detail}); check the config and split names, "
                           f"or fill the cache with `{PREFETCH_COMMAND}`.") from None
    finally:
        datasets.logging.set_verbosity(verbosity)
