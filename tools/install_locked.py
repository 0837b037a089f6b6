"""Install the locked environment (uv.lock) into a virtual environment; `make venv` runs this.

    python tools/install_locked.py VENV/bin/python --extras book,test,classroom

1. ``uv export --frozen`` turns uv.lock into a requirements list with every package pinned and its
   SHA-256 hashes (uv.lock is universal: Linux, macOS and Windows).
2. On Linux, torch comes as its CPU build: the lock pins PyPI's torch, whose Linux wheels pull
   several GB of CUDA libraries. Its entry and the GPU-only ones (``nvidia-*``, ``triton``) are
   replaced by ``torch==<locked>+cpu`` with the CPU wheels' hashes below, installed from PyTorch's
   CPU index (``--extra-index-url``, when it answers) or from pip's ``find-links`` folders
   (``$PIP_FIND_LINKS``, where a machine keeps wheels locally). macOS and Windows keep the lock's
   own torch (PyPI's wheels there are CPU builds).
3. ``uv pip sync --require-hashes``: the environment holds exactly the locked packages (others are
   removed), nothing unpinned or unhashed gets in; then the project itself, editable, without
   dependencies.
4. The lock's hash goes to ``VENV/txmerge-lock.txt``; chapters' provenance cells show it.

Standard library only (runs with the interpreter of the virtual environment, before anything of
the project is installed); uv itself is installed into the environment by `make venv` first.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
GPU_ONLY = re.compile(r"(torch|triton|pytorch-triton|nvidia-[a-z0-9._-]+|cuda-[a-z0-9._-]+)")
# SHA-256 of the Linux wheels of torch 2.13.0+cpu as https://download.pytorch.org/whl/cpu/torch/
# lists them; the cp311 manylinux x86_64 digest was recomputed here from the wheel itself.
CPU_WHEELS = {
    "2.13.0": {
        "cp311-manylinux_2_28_x86_64": "6746dbcbeb526eb61330b76b41ff1b4eb848951103a892eeb080dfa2b264667b",
        "cp311-manylinux_2_28_aarch64": "84453b69508ec79902f899c5ed9495acb9e2bbe9fda5f1d5d6f19e3c3842e1a7",
        "cp312-manylinux_2_28_x86_64": "4ca4a9394b0c771238a4f73590fdbbc4debad85ed0fa63d026ae1b085da7d6e2",
        "cp312-manylinux_2_28_aarch64": "6f307c2c32d764ffc6ff6893b801fad6d4752f3e67966cb8abf1843427c02604",
        "cp313-manylinux_2_28_x86_64": "3fbf9c9d1f3c10c2d59d04aca426dee9ccc6ceb32d255c61e93acc3b4f75fae6",
        "cp313-manylinux_2_28_aarch64": "0b8f7d0423027ae8b90c7977c627f3379f325363a08224dffad9b4b2d684a83d",
        "cp314-manylinux_2_28_x86_64": "d20fa53ee744502fa4c69818a720b05ca0d37abd055d4f6e66cae155114bc691",
        "cp314-manylinux_2_28_aarch64": "ca021f9eb2f8345c83fa03e3a04587308afb8df71bd472670b3ece00df58621c",
    },
}
_ENTRY = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def lock_hash(lock: Path) -> str:
    """``sha256:<hex>`` of the lock file's bytes."""
    return "sha256:" + hashlib.sha256(lock.read_bytes()).hexdigest()


def cpu_torch(lines: list[str]) -> tuple[list[str], str | None]:
    """The exported requirement lines without torch and the GPU-only packages (each entry is its
    requirement line plus the indented ``--hash`` lines under it), and the locked torch version."""
    kept, torch, dropping = [], None, False
    for line in lines:
        if line[:1].isspace():
            if not dropping:
                kept.append(line)
            continue
        m = _ENTRY.match(line)
        name = re.sub(r"[-_.]+", "-", m.group(1)).lower() if m else None
        dropping = name is not None and GPU_ONLY.fullmatch(name) is not None
        if name == "torch":
            torch = m.group(2)
        if not dropping:
            kept.append(line)
    return kept, torch


def torch_requirement(version: str) -> str:
    """``torch==<version>+cpu`` with the recorded hashes of its Linux CPU wheels."""
    digests = CPU_WHEELS.get(version)
    if not digests:
        raise SystemExit(f"error: tools/install_locked.py records no CPU wheel hashes for torch {version}; add them from {CPU_INDEX}/torch/.")
    return " \\\n".join([f"torch=={version}+cpu"] + [f"    --hash=sha256:{d}" for d in digests.values()]) + "\n"


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=3).close()
        return True
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("python", type=Path, help="the virtual environment's python")
    parser.add_argument("--extras", default="book,test,classroom")
    parser.add_argument("--lock", type=Path, default=Path("uv.lock"))
    parser.add_argument("--torch-index", default="auto",
                        help="Linux: auto (CPU build; PyTorch's CPU index when reachable) | URL of a CPU index | none "
                        "(CPU build from find-links only) | pypi (the lock's own torch: the CUDA build)")
    args = parser.parse_args(argv)
    bindir = args.python.parent
    uv = bindir / ("uv.exe" if os.name == "nt" else "uv")
    if not uv.exists():
        raise SystemExit(f"error: {uv} is missing; `make venv` installs uv into the environment first.")
    if not args.lock.is_file():
        raise SystemExit(f"error: {args.lock} is missing; run `make lock` to create it.")
    extras = [f"--extra={e}" for e in args.extras.split(",") if e]
    with tempfile.TemporaryDirectory(prefix="txmerge-lock-") as tmp:
        req = Path(tmp) / "requirements.txt"
        subprocess.run([str(uv), "export", "--frozen", "--no-emit-project", "--no-header", "--format=requirements-txt",
                        "--quiet", *extras, "-o", str(req)], check=True)
        lines = req.read_text().splitlines(keepends=True)
        flags = ["--require-hashes"]
        if platform.system() == "Linux" and args.torch_index != "pypi":
            lines, version = cpu_torch(lines)
            lines.append(torch_requirement(version or "?"))
            index = args.torch_index
            if index == "auto":
                index = CPU_INDEX if _reachable(CPU_INDEX + "/torch/") else "none"
            if index != "none":
                flags += ["--extra-index-url", index]
        for folder in os.environ.get("PIP_FIND_LINKS", "").split():
            flags += ["--find-links", folder]
        req.write_text("".join(lines))
        env = {**os.environ, "VIRTUAL_ENV": str(bindir.parent)}
        subprocess.run([str(uv), "pip", "sync", "--python", str(args.python), *flags, str(req)], check=True, env=env)
    subprocess.run([str(uv), "pip", "install", "--python", str(args.python), "--no-deps", "-e", "."], check=True, env=env)
    (bindir.parent / "txmerge-lock.txt").write_text(f"uv.lock {lock_hash(args.lock)}\n")
    print(f"installed from uv.lock ({lock_hash(args.lock)[:19]}...) into {bindir.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
