"""The Hugging Face Hub paths of the paper preset, and a clear error when the Hub is out of reach."""

from __future__ import annotations

import os
import socket

from .errors import TxmergeError

HUB_HOST = "huggingface.co"


def hub_reachable(timeout: float = 3.0) -> bool:
    """True if the Hub answers on port 443 and offline mode is not forced (HF_HUB_OFFLINE)."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return False
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
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
