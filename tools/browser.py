"""Find or install the Chromium that the browser test drives; prints its path. `make test` runs this.

    python tools/browser.py        # stdout: the path of a Chromium executable; exit 1 if none

Tried in this order, stopping at the first that gives a working browser:

1. a Chromium or Chrome already on the machine (``$TXMERGE_CHROMIUM``, the usual names on PATH, the
   usual macOS and Windows install folders, or one that Playwright installed before);
2. as root on Debian or Ubuntu: Debian's ``chromium`` package (``apt-get install``);
3. elsewhere (macOS, Windows, a user without root), or if apt failed: Playwright's own browser
   (``python -m playwright install chromium``, a download from Playwright's CDN).

Fails with one sentence on stderr only when none of them works. ``TXMERGE_SKIP_BROWSER=1`` prints
nothing and exits 0 (the browser test then skips itself, saying so). Standard library only, apart
from Playwright (in the test extra) for step 3.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
FOLDERS = {
    "Darwin": ["/Applications/Chromium.app/Contents/MacOS/Chromium",
               "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"],
    "Windows": [r"C:\Program Files\Google\Chrome\Application\chrome.exe",
                r"C:\Program Files (x86)\Google\Chrome\Application\chrome.exe"],
}
APT = (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium", "fonts-dejavu-core"])


def log(message: str) -> None:
    print(f"browser: {message}", file=sys.stderr)


def run(cmd: list[str], timeout: float = 900) -> bool:
    """Run a provisioning command (output to stderr); True when it exits 0."""
    log("running " + " ".join(cmd))
    try:
        return subprocess.run(cmd, stdout=sys.stderr, stderr=sys.stderr, timeout=timeout,
                              env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}).returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        log(f"{cmd[0]} failed: {exc}")
        return False


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def is_debian() -> bool:
    """Debian, Ubuntu or a derivative (ID / ID_LIKE in /etc/os-release) with apt-get."""
    try:
        text = Path("/etc/os-release").read_text().lower()
    except OSError:
        return False
    ids = " ".join(line.split("=", 1)[1].strip('"') for line in text.splitlines() if line.startswith(("id=", "id_like=")))
    return any(name in ids.split() for name in ("debian", "ubuntu")) and shutil.which("apt-get") is not None


def playwright_chromium() -> str | None:
    """The executable of Playwright's own Chromium, if Playwright has installed it."""
    code = "from playwright.sync_api import sync_playwright\nwith sync_playwright() as p: print(p.chromium.executable_path)"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    path = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else ""
    return path if path and Path(path).exists() else None


def find_chromium() -> str | None:
    """A Chromium/Chrome already on this machine, or None."""
    wanted = os.environ.get("TXMERGE_CHROMIUM")
    if wanted and Path(wanted).exists():
        return wanted
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    for path in FOLDERS.get(platform.system(), []):
        if Path(path).exists():
            return path
    return playwright_chromium()


def provision() -> str | None:
    """Find a Chromium, installing one (apt as root on Debian/Ubuntu, else Playwright) if needed."""
    path = find_chromium()
    if path:
        return path
    if platform.system() == "Linux" and is_root() and is_debian():
        log("no Chromium found; installing Debian's chromium package")
        if all(run(cmd) for cmd in APT):
            path = find_chromium()
            if path:
                return path
    log("installing Playwright's Chromium (python -m playwright install chromium)")
    if run([sys.executable, "-m", "playwright", "install", "chromium"]):
        return playwright_chromium()
    return None


def main() -> int:
    if os.environ.get("TXMERGE_SKIP_BROWSER") == "1":
        log("TXMERGE_SKIP_BROWSER=1: no browser provisioned; the browser test will skip")
        return 0
    path = provision()
    if not path:
        how = "apt-get as root, then " if platform.system() == "Linux" else ""
        print(f"error: no Chromium for the browser test: none was found on this machine and installing one ({how}python -m playwright install chromium) failed; install Chromium or Chrome and set TXMERGE_CHROMIUM to its path, or set TXMERGE_SKIP_BROWSER=1 to skip that test.", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
