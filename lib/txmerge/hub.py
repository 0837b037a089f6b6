"""The Hugging Face Hub paths of the paper preset, and a clear error when the Hub is out of reach.

Every Hub dataset goes through :func:`load_dataset`. It first looks for a local copy saved with
``Dataset.save_to_disk`` under ``$TXMERGE_HUB_LOCAL/<owner>__<name>/<config>/<split>`` (config
``default`` when there is none); this lets an offline machine run the paper preset from copies
made elsewhere, and lets the tests drive the very same code path on small fixtures. Otherwise it
needs the Hub, and stops with one sentence suggesting the offline preset when the Hub is unreachable.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .errors import TxmergeError

HUB_HOST = "huggingface.co"
LOCAL_ENV = "TXMERGE_HUB_LOCAL"


def hub_reachable(timeout: float = 3.0, host: str = HUB_HOST, port: int = 443) -> bool:
    """True if the Hub answers on ``port`` and offline mode is not forced (HF_HUB_OFFLINE): the one
    reachability check of the package."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_online(what: str) -> None:
    """Stop with one sentence if ``what`` must come from the Hub and the Hub cannot be reached."""
    if not hub_reachable():
        raise TxmergeError(
            f"{what} must be downloaded from the Hugging Face Hub, which cannot be reached from this machine; "
            "use the offline preset instead (PRESET=tiny)."
        )


def local_copy(path: str, config: str | None = None, split: str | None = None) -> Path | None:
    """Folder of a ``save_to_disk`` copy of a Hub dataset under ``$TXMERGE_HUB_LOCAL``, if there is one."""
    root = os.environ.get(LOCAL_ENV)
    if not root:
        return None
    folder = Path(root).expanduser() / path.replace("/", "__") / (config or "default")
    if split:
        folder = folder / split
    return folder if folder.exists() else None


def load_dataset(path: str, config: str | None = None, split: str | None = None, *, what: str | None = None):
    """A Hub dataset (``datasets.load_dataset(path, config, split=split)``), or its local copy.

    ``what`` names the data in the error raised when neither a local copy nor the Hub is available.
    """
    import datasets

    local = local_copy(path, config, split)
    if local is not None:
        return datasets.load_from_disk(str(local))
    require_online(what or f"The dataset {path}" + (f" ({config})" if config else ""))
    return datasets.load_dataset(path, config, split=split)
