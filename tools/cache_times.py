"""Where a build's time went, by cached step: entries and seconds per cache name (feature statistics,
curves, fine-tune evaluation, ...), read from the ``_seconds`` that ``txmerge.base.cache.cached``
records beside every entry. A step that computes another cached step inside (a curve that first
needs its pair's statistics) includes that time.

    python tools/cache_times.py [CACHE_DIR]     # default: $TXMERGE_CACHE or .cache/results
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def step_times(root: Path) -> list[tuple[str, int, float]]:
    """[(cache name, entries, seconds)] for every cache folder under ``root``, slowest first."""
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        seconds = [json.loads(f.read_text()).get("_seconds") for f in folder.glob("*.json")]
        timed = [s for s in seconds if isinstance(s, (int, float))]
        if timed:
            rows.append((folder.name, len(timed), float(sum(timed))))
    return sorted(rows, key=lambda r: -r[2])


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else os.environ.get("TXMERGE_CACHE", ".cache/results"))
    if not root.is_dir():
        print(f"error: no cache folder at {root}; build the book first or pass the folder.", file=sys.stderr)
        return 2
    rows = step_times(root)
    print("| step (cache) | entries | seconds | per entry |\n|---|---|---|---|")
    for name, n, s in rows:
        print(f"| {name} | {n} | {s:.0f} | {s / n:.1f} |")
    print(f"| total | {sum(r[1] for r in rows)} | {sum(r[2] for r in rows):.0f} | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
