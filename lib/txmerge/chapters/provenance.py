"""Where a chapter's numbers came from: preset, parameters, versions, machine, wall time.

Every chapter starts its clock in the validation cell and ends with a provenance cell::

    import time; _started = time.time()          # in the validation cell
    ...
    from txmerge.chapters.provenance import provenance
    provenance(P, _started)                       # last cell: a small two-column table
"""

from __future__ import annotations

import os
import platform
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import pandas as pd

_PACKAGES = ("txmerge", "torch", "transformers", "datasets", "numpy", "scipy")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def environment_lock() -> str:
    """The hash of the uv.lock the running environment was installed from (``make venv`` writes it to
    ``<sys.prefix>/txmerge-lock.txt``): two builds with the same value used the same packages."""
    try:
        with open(os.path.join(sys.prefix, "txmerge-lock.txt")) as fh:
            name, _, digest = fh.read().strip().partition(" ")
        return f"{name} {digest[:19]}" if digest.startswith("sha256:") else "unknown (unreadable txmerge-lock.txt)"
    except OSError:
        return "not installed from uv.lock"


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _device(params: Any) -> str:
    import torch

    wanted = getattr(params, "device", "auto")
    if torch.cuda.is_available() and wanted in ("auto", "cuda"):
        return f"cuda ({torch.cuda.get_device_name(0)})"
    return wanted if wanted != "auto" else "cpu"


def provenance_dict(params: Any, started_at: float | None = None) -> dict[str, str]:
    """The provenance record as an ordered ``{item: value}`` of strings."""
    import torch

    data = params.model_dump(mode="json") if hasattr(params, "model_dump") else dict(params)
    common = {"preset", "seed", "device", "threads"}
    chapter_params = ", ".join(f"{k}={v}" for k, v in data.items() if k not in common)
    rec: dict[str, str] = {
        "preset": str(data.get("preset", "?")),
        "seed": str(data.get("seed", "?")),
        "parameters": chapter_params or "(none)",
        "device": _device(params),
        "torch threads": str(torch.get_num_threads()),
    }
    for pkg in _PACKAGES:
        rec[pkg] = _version(pkg)
    rec["environment"] = environment_lock()
    rec["python"] = platform.python_version()
    rec["machine"] = f"{platform.system()} {platform.machine()}, {_cpu_name()}, {os.cpu_count()} cores"
    rec["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if started_at is not None:
        rec["wall time"] = f"{time.time() - started_at:.1f} s"
    return rec


def provenance(params: Any, started_at: float | None = None) -> "pd.io.formats.style.Styler":
    """A two-column table (item, value) to display as a chapter's last output (styled: no cell is cut short)."""
    rec = provenance_dict(params, started_at)
    return pd.DataFrame({"item": list(rec), "value": list(rec.values())}).set_index("item").style
