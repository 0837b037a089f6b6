"""Regenerate lib/txmerge/resources/bible/ (the World English Bible, part of the zoo's pretraining text).

    apt-get install diatheke sword-text-web    # Debian/Ubuntu (run `apt-get update` first)
    python tools/make_bible.py                 # rewrite the resource
    python tools/make_bible.py --check         # rebuild in memory, compare byte for byte, write nothing

The World English Bible (with the deuterocanon, SWORD module ``engWEB2015eb``) is public domain
(Debian's copyright file of ``sword-text-web``). ``diatheke`` prints it as ``Book c:v: text`` lines;
poetry continues on lines without a reference. A line without a reference right before an indented
verse line is a section heading, which this module repeats before every later verse (a Psalm title
is printed about 10,000 times): headings are dropped. Each chapter becomes one line of the output (verse
texts joined by spaces, whitespace collapsed), gzip level 9 with mtime 0, so a second run writes the
same bytes. The glossary the module appends to the last verse is dropped. MANIFEST.json records the
package version, the counts and the file's sha256. Only regenerating needs apt: readers of the book
use the committed file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "lib" / "txmerge" / "resources" / "bible"
MODULE = "engWEB2015eb"
RANGE = "Gen 1:1-Rev 22:21"
VERSE = re.compile(r"^(?P<book>\S.*?) (?P<chapter>\d+):(?P<verse>\d+): ?(?P<text>.*)$")


def diatheke_text() -> str:
    try:
        out = subprocess.run(["diatheke", "-b", MODULE, "-f", "plain", "-k", RANGE], check=True, capture_output=True, text=True)
    except (FileNotFoundError, subprocess.CalledProcessError) as exc:
        sys.exit(f"make_bible: diatheke could not print {MODULE} ({exc}); install it with "
                 "`apt-get update && apt-get install diatheke sword-text-web`.")
    return out.stdout


def chapters(text: str) -> list[tuple[str, str]]:
    """[(\"Book c\", chapter text)] in canonical order; continuation lines belong to the verse before."""
    out: list[tuple[str, list[str]]] = []
    raw = text.splitlines()
    for i, line in enumerate(raw):
        following = raw[i + 1] if i + 1 < len(raw) else ""
        line = line.strip()
        if not line or (not VERSE.match(line) and following.startswith("  ") and VERSE.match(following.strip())):
            continue  # blank, or a section heading
        m = VERSE.match(line)
        if m:
            key = f"{m['book']} {m['chapter']}"
            if not out or out[-1][0] != key:
                out.append((key, []))
            out[-1][1].append(m["text"])
            if m["book"].startswith("Revelation") and (m["chapter"], m["verse"]) == ("22", "21"):
                break  # the module appends a glossary to the last verse
        elif out:
            out[-1][1].append(line)
    return [(key, " ".join(" ".join(parts).split())) for key, parts in out]


def package_version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "sword-text-web"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def build() -> tuple[bytes, dict]:
    rows = chapters(diatheke_text())
    body = "\n".join(text for _, text in rows) + "\n"
    blob = gzip.compress(body.encode(), compresslevel=9, mtime=0)
    manifest = {
        "title": "World English Bible (with deuterocanon)",
        "source": f"Debian package sword-text-web {package_version()}, SWORD module {MODULE}, via diatheke",
        "licence": "public domain (Debian copyright file of sword-text-web)",
        "file": "web.txt.gz",
        "format": "one chapter per line, verses joined by spaces",
        "chapters": len(rows),
        "words": len(body.split()),
        "sha256": hashlib.sha256(blob).hexdigest(),
        "regenerate": "apt-get install diatheke sword-text-web && python tools/make_bible.py",
    }
    return blob, manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files, write nothing")
    args = ap.parse_args()
    blob, manifest = build()
    if args.check:
        committed = (OUT / "web.txt.gz").read_bytes()
        same = committed == blob
        print(f"web.txt.gz: {'identical' if same else 'DIFFERS'} ({manifest['chapters']} chapters, {manifest['words']:,} words)")
        sys.exit(0 if same else 1)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "web.txt.gz").write_bytes(blob)
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {OUT}: {manifest['chapters']} chapters, {manifest['words']:,} words, {len(blob) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
