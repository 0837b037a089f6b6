"""Regenerate lib/txmerge/resources/novels/ (the tiny preset's correlation text) from Debian's R packages.

    python tools/make_novels.py            # download the pinned .debs, rewrite the resources
    python tools/make_novels.py --check    # rebuild in memory, compare byte for byte, write nothing
    python tools/make_novels.py --debs DIR # use .deb files already downloaded into DIR

The ten public-domain novels (6 Austen novels, Moby Dick, Great Expectations, The War of the Worlds,
Twenty Thousand Leagues under the Sea) ship as R data inside three Debian bookworm packages. They are
read here WITHOUT R: the ``.deb`` is opened in Python (an ``ar`` archive holding ``data.tar.xz``), R's
lazy-load databases (``data/Rdata.rdx`` + ``data/Rdata.rdb``) are decoded by the small reader below,
and ``extdata/books.rda`` by the ``rdata`` package (``pip install rdata==1.1.0``: a tool-only
dependency, not one of the library's). Each book is written as gzip text (mtime 0, level 9), one
printed line of the novel per line, blank lines dropped, leading/trailing spaces stripped; the
tidytext copy of Pride and Prejudice is dropped (janeaustenr's is kept). MANIFEST.json records the
source packages (version, sha256), titles, line/word counts and the sha256 of every file, so a
second run reproduces the same bytes (given the same zlib).

Downloads: ``apt-get download pkg=version`` where apt exists (run ``apt-get update`` once first),
otherwise straight from the Debian pool over HTTP; either way the sha256 pins below are checked.
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import io
import json
import lzma
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import warnings
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "lib" / "txmerge" / "resources" / "novels"
POOL = "http://deb.debian.org/debian/pool/main/r"
SITE = "usr/lib/R/site-library"

# Debian bookworm packages: (version, architecture, sha256 of the .deb).
DEBS = {
    "r-cran-janeaustenr": ("1.0.0-1", "all", "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95"),
    "r-cran-tokenizers": ("0.3.0-1", "amd64", "6312f013ebfde5650235bfd7ba5c44d9e4cf9f2da9855337c9483fe778f0d8c7"),
    "r-cran-tidytext": ("0.4.1-1", "all", "8d693a8772b57e2dbdc907aa946fbeeefb03ba3eb2bbea86d5c888a4d15956ad"),
}

# (output stem, title, author, Debian package, how it is stored, R object / selector)
BOOKS = [
    ("austen_emma", "Emma", "Jane Austen", "r-cran-janeaustenr", "lazyload", "emma"),
    ("austen_mansfield_park", "Mansfield Park", "Jane Austen", "r-cran-janeaustenr", "lazyload", "mansfieldpark"),
    ("austen_northanger_abbey", "Northanger Abbey", "Jane Austen", "r-cran-janeaustenr", "lazyload", "northangerabbey"),
    ("austen_persuasion", "Persuasion", "Jane Austen", "r-cran-janeaustenr", "lazyload", "persuasion"),
    ("austen_pride_and_prejudice", "Pride and Prejudice", "Jane Austen", "r-cran-janeaustenr", "lazyload", "prideprejudice"),
    ("austen_sense_and_sensibility", "Sense and Sensibility", "Jane Austen", "r-cran-janeaustenr", "lazyload", "sensesensibility"),
    ("melville_moby_dick", "Moby Dick", "Herman Melville", "r-cran-tokenizers", "lazyload", "mobydick"),
    ("dickens_great_expectations", "Great Expectations", "Charles Dickens", "r-cran-tidytext", "rda", "Great Expectations"),
    ("wells_war_of_the_worlds", "The War of the Worlds", "H. G. Wells", "r-cran-tidytext", "rda", "The War of the Worlds"),
    ("verne_twenty_thousand_leagues", "Twenty Thousand Leagues under the Sea", "Jules Verne", "r-cran-tidytext", "rda",
     "Twenty Thousand Leagues under the Sea"),
]
R_PACKAGE = {"r-cran-janeaustenr": "janeaustenr", "r-cran-tokenizers": "tokenizers", "r-cran-tidytext": "tidytext"}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def deb_filename(pkg: str) -> str:
    version, arch, _ = DEBS[pkg]
    return f"{pkg}_{version}_{arch}.deb"


def get_deb(pkg: str, folder: Path) -> bytes:
    """Bytes of the pinned .deb: from ``folder`` if there, else apt-get download, else the Debian pool."""
    version, arch, digest = DEBS[pkg]
    path = folder / deb_filename(pkg)
    if not path.exists():
        if shutil.which("apt-get"):
            subprocess.run(["apt-get", "download", f"{pkg}:{arch}={version}" if arch != "all" else f"{pkg}={version}"],
                           cwd=folder, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not path.exists():
            url = f"{POOL}/{pkg}/{deb_filename(pkg)}"
            print(f"downloading {url}", file=sys.stderr)
            with urllib.request.urlopen(url, timeout=60) as resp:
                path.write_bytes(resp.read())
    data = path.read_bytes()
    if sha256(data) != digest:
        sys.exit(f"{path}: sha256 {sha256(data)} != pinned {digest}; delete it and retry.")
    return data


def deb_members(deb: bytes, wanted: set[str]) -> dict[str, bytes]:
    """Files of a .deb's data tarball (what ``dpkg -x`` would unpack), read in memory."""
    if deb[:8] != b"!<arch>\n":
        raise ValueError("not a Debian package (ar archive)")
    pos, data_tar = 8, None
    while pos + 60 <= len(deb):
        name, size = deb[pos : pos + 16].decode().strip().rstrip("/"), int(deb[pos + 48 : pos + 58])
        if name.startswith("data.tar"):
            data_tar = deb[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data_tar), mode="r:*") as tf:
        for m in tf.getmembers():
            name = m.name.lstrip("./")
            if name in wanted:
                out[name] = tf.extractfile(m).read()
    missing = wanted - set(out)
    if missing:
        raise ValueError(f"members not found: {sorted(missing)}")
    return out


def _r_object(serialized: bytes):
    from rdata import conversion, parser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return conversion.convert(parser.parse_data(serialized))


def lazyload(rdx: bytes, rdb: bytes) -> dict:
    """Decode an R lazy-load database (``Rdata.rdx`` index + ``Rdata.rdb`` blocks) into {name: object}."""
    index = _r_object(rdx)  # gzip-compressed serialised list: variables = {name: (offset, length)}
    objects = {}
    for name, (offset, length) in index["variables"].items():
        block = rdb[int(offset) : int(offset) + int(length)]
        size, body = struct.unpack(">I", block[:4])[0], block[4:]
        kind = body[:1]
        if kind == b"Z":  # raw LZMA2 stream, xz preset 9e
            raw = lzma.decompress(body[1:], format=lzma.FORMAT_RAW,
                                  filters=[{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}])
        elif kind == b"2":
            raw = bz2.decompress(body[1:])
        elif kind == b"1":
            raw = zlib.decompress(body[1:])
        elif kind == b"0":
            raw = body[1:]
        else:  # gzip lazy-data compression: zlib stream straight after the length
            raw = zlib.decompress(body)
        if len(raw) != size:
            raise ValueError(f"{name}: decompressed {len(raw)} bytes, header says {size}")
        objects[str(name)] = _r_object(raw)
    return objects


GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THIS|THE) PROJECT GUTENBERG")
GUTENBERG_END = re.compile(r"^(\*\*\* ?END OF (THIS|THE) PROJECT GUTENBERG|End of (the )?Project Gutenberg)")


def clean_lines(values) -> list[str]:
    """Printed lines of a book: NA dropped, multi-line strings split, BOM and Project Gutenberg
    header/licence (outside the START/END markers, plus the "Produced by" credit) removed, each
    line stripped, blank lines dropped."""
    lines = []
    for v in values:
        if v is None or v != v:
            continue
        lines.extend(str(v).replace("\ufeff", "").splitlines())
    start = next((i + 1 for i, s in enumerate(lines) if GUTENBERG_START.match(s.strip())), 0)
    end = next((i for i, s in enumerate(lines) if i >= start and GUTENBERG_END.match(s.strip())), len(lines))
    body = (s.strip() for s in lines[start:end])
    return [s for s in body if s and not (start and s.startswith("Produced by"))]


def build(debs: dict[str, bytes]) -> tuple[dict[str, bytes], dict]:
    """{file name: gzip bytes} and the manifest, from the three .deb files' bytes."""
    lazy, rda = {}, None
    for pkg, deb in debs.items():
        rpkg = R_PACKAGE[pkg]
        if pkg == "r-cran-tidytext":
            member = f"{SITE}/{rpkg}/extdata/books.rda"
            rda = _r_object(deb_members(deb, {member})[member])["books"]
        else:
            names = {f"{SITE}/{rpkg}/data/Rdata.rdx", f"{SITE}/{rpkg}/data/Rdata.rdb"}
            m = deb_members(deb, names)
            lazy.update(lazyload(m[f"{SITE}/{rpkg}/data/Rdata.rdx"], m[f"{SITE}/{rpkg}/data/Rdata.rdb"]))
    files, books = {}, []
    for stem, title, author, pkg, kind, key in BOOKS:
        values = lazy[key] if kind == "lazyload" else rda.loc[rda["title"] == key, "text"].tolist()
        lines = clean_lines(values)
        text = ("\n".join(lines) + "\n").encode("utf-8")
        gz = gzip.compress(text, compresslevel=9, mtime=0)
        files[f"{stem}.txt.gz"] = gz
        books.append({
            "file": f"{stem}.txt.gz", "title": title, "author": author, "source_package": pkg,
            "r_object": f"{R_PACKAGE[pkg]}::{key}" if kind == "lazyload" else f"tidytext extdata/books.rda, title == {key!r}",
            "lines": len(lines), "words": sum(len(s.split()) for s in lines),
            "sha256_text": sha256(text), "sha256_gz": sha256(gz),
        })
    manifest = {
        "description": "Public-domain novels, the tiny preset's stand-in for the paper's BookCorpus sample "
                       "(txmerge.data.correlation_text). One printed line of the novel per line; blank lines "
                       "dropped; leading/trailing whitespace stripped; Project Gutenberg header and licence "
                       "(Moby Dick only) removed; UTF-8; gzip level 9, mtime 0.",
        "recipe": "pip install rdata==1.1.0 && python tools/make_novels.py  (apt-get update first on Debian)",
        "licence": {"text": "public domain (Project Gutenberg editions of novels published before 1900)",
                    "packages": "janeaustenr, tokenizers, tidytext: MIT (R packages, Debian bookworm)"},
        "dropped": "tidytext's copy of Pride and Prejudice (the same novel as janeaustenr::prideprejudice)",
        "sources": [{"package": pkg, "version": v, "architecture": a, "file": deb_filename(pkg), "sha256": h,
                     "url": f"{POOL}/{pkg}/{deb_filename(pkg)}"} for pkg, (v, a, h) in DEBS.items()],
        "books": books,
        "totals": {"books": len(books), "lines": sum(b["lines"] for b in books),
                   "words": sum(b["words"] for b in books)},
    }
    return files, manifest


def manifest_bytes(manifest: dict) -> bytes:
    return (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--debs", type=Path, help="folder holding (or receiving) the pinned .deb files")
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--check", action="store_true", help="compare with the files in --out; write nothing")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.debs or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        files, manifest = build({pkg: get_deb(pkg, folder) for pkg in DEBS})
    files["MANIFEST.json"] = manifest_bytes(manifest)
    if args.check:
        bad = [n for n, b in files.items() if not (args.out / n).exists() or (args.out / n).read_bytes() != b]
        extra = sorted(p.name for p in args.out.glob("*") if p.name not in files)
        for n in bad:
            print(f"differs: {n}")
        for n in extra:
            print(f"unexpected: {n}")
        print("OK: byte-identical" if not bad and not extra else "MISMATCH")
        return 1 if bad or extra else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, blob in files.items():
        (args.out / name).write_bytes(blob)
    t = manifest["totals"]
    print(f"wrote {len(files)} files to {args.out}: {t['books']} books, {t['lines']:,} lines, {t['words']:,} words")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
