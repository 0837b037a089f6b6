"""Time a cold and a warm `make book` and compare them with the performance budget.

Cold = `make clean` then `make book` (empty result cache and executed notebooks; downloads and the
virtual environment kept). Warm = `make book` again with nothing changed. Budget for the default
`tiny` book on the 2-core reference machine: cold <= 20 min, warm <= 1 min.

    python bench/bench_book.py [--preset tiny] [--copy]

By default it runs in the repository itself, so `make clean` empties your executed/, _build/ and
.cache/results. `--copy` runs in a temporary copy of the working tree instead (its own result
cache; downloads shared). Results are printed and written to bench/out/bench_book_<preset>.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = {"tiny": (20 * 60, 60), "smoke": (5 * 60, 60), "paper": (None, None)}


def _copy_worktree(dest: Path) -> Path:
    spec = importlib.util.spec_from_file_location("copy_worktree", REPO / "tools" / "copy_worktree.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.copy_worktree(dest, REPO, skip=("tests", "bench", ".ci"))


def _make(root: Path, env: dict[str, str], *args: str, log: str | None = None) -> float:
    start = time.monotonic()
    proc = subprocess.run(["make", "--no-print-directory", *args], cwd=root, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.monotonic() - start
    if log:  # the per-chapter times ("chapter X done in N s") are in there
        (REPO / "bench" / "out").mkdir(parents=True, exist_ok=True)
        (REPO / "bench" / "out" / log).write_text(proc.stdout)
    if proc.returncode:
        sys.stdout.write(proc.stdout[-4000:])
        raise SystemExit(f"make {' '.join(args)} failed (exit {proc.returncode})")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="tiny", choices=sorted(BUDGET_S))
    ap.add_argument("--copy", action="store_true", help="run in a temporary copy of the working tree")
    args = ap.parse_args()

    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    make_args = [f"PRESET={args.preset}"]
    tmp = None
    root = REPO
    if args.copy:
        tmp = tempfile.TemporaryDirectory(prefix="bench-book-")
        root = _copy_worktree(Path(tmp.name) / "repo")
        env["PYTHONPATH"] = str(root / "lib")
        env["TXMERGE_CACHE"] = str(Path(tmp.name) / "cache")
        env.setdefault("TXMERGE_DOWNLOADS", str(REPO / ".cache" / "downloads"))
        make_args += ["INSTALL=0", f"PY={sys.executable}"]
    else:
        _make(root, env, "venv")  # an install is not part of the build time

    _make(root, env, "clean", *make_args)
    cold = _make(root, env, "book", *make_args, log=f"bench_book_{args.preset}_cold.log")
    warm = _make(root, env, "book", *make_args, log=f"bench_book_{args.preset}_warm.log")

    cold_budget, warm_budget = BUDGET_S[args.preset]
    result = {
        "preset": args.preset,
        "cold_s": round(cold, 1),
        "warm_s": round(warm, 1),
        "cold_budget_s": cold_budget,
        "warm_budget_s": warm_budget,
        "cold_ratio": round(cold / cold_budget, 3) if cold_budget else None,
        "warm_ratio": round(warm / warm_budget, 3) if warm_budget else None,
        "cpus": os.cpu_count(),
        "machine": platform.platform(),
        "in_copy": bool(args.copy),
    }
    print(f"preset {args.preset}: cold make book {cold:.1f} s, warm make book {warm:.1f} s")
    if cold_budget:
        print(f"  cold {cold:.1f} s / budget {cold_budget} s = {cold / cold_budget:.2f}"
              f"{'  OVER BUDGET' if cold > cold_budget else ''}")
        print(f"  warm {warm:.1f} s / budget {warm_budget} s = {warm / warm_budget:.2f}"
              f"{'  OVER BUDGET' if warm > warm_budget else ''}")
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench_book_{args.preset}.json").write_text(json.dumps(result, indent=1))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
