"""Every page of the smoke-built book in a real browser (Debian's Chromium driven by Playwright).

Checks per page: HTTP 200, every image loaded, math rendered by MathJax, no cell output with a
traceback or warning text, and no request leaving 127.0.0.1. Every chapter must be reachable from
the navigation. A screenshot of each page goes to ``_build/screenshots/`` in the repository
(``$TXMERGE_SCREENSHOTS`` overrides). Never runs ``playwright install``: Chromium comes from apt
(``make test`` finds or installs Chromium first with ``tools/browser.py`` and passes its path in
``$TXMERGE_CHROMIUM``). Set ``TXMERGE_SKIP_BROWSER=1`` to skip where no Chromium can be had.
"""

from __future__ import annotations

import functools
import http.server
import os
import re
import threading
from pathlib import Path
from urllib.parse import urljoin, urlparse

import pytest

REPO = Path(__file__).resolve().parents[1]
pytest_plugins = ["book_fixtures"]

pytestmark = pytest.mark.slow

def _chromium() -> str | None:
    from tools.browser import find_chromium  # $TXMERGE_CHROMIUM, PATH, usual folders, Playwright's

    return find_chromium()
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BAD_OUTPUT = re.compile(r"traceback|warn", re.I)
#: tables of cell outputs: none wider than the content column, no cell cut short with "..." (pandas' truncation)
TABLE_CHECK = """() => {
  const column = document.querySelector('.bd-article') || document.querySelector('main');
  const width = column.getBoundingClientRect().width;
  const out = [];
  document.querySelectorAll('.cell_output table').forEach((t, i) => {
    const w = t.getBoundingClientRect().width;
    if (w > width + 1) out.push(`output table ${i + 1} is ${Math.round(w)} px wide, the text column ${Math.round(width)} px`);
    t.querySelectorAll('td, th').forEach(c => {
      const s = c.innerText.trim();
      if (s.endsWith('...') || s.endsWith('\u2026')) out.push(`output table ${i + 1} cuts a cell short: "${s.slice(-50)}"`);
    });
  });
  return out;
}"""

#: no code block, table, figure or image wider than the text column, unless inside a visible scroll box
OVERFLOW_CHECK = """() => {
  const column = document.querySelector('.bd-article') || document.querySelector('main');
  const right = column.getBoundingClientRect().right;
  const scrolls = e => {
    for (let a = e; a && a !== column.parentElement; a = a.parentElement) {
      const o = getComputedStyle(a).overflowX;
      if ((o === 'auto' || o === 'scroll') && a.getBoundingClientRect().right <= right + 1) return true;
    }
    return false;
  };
  const out = [];
  column.querySelectorAll('pre, table, figure, img').forEach((e, i) => {
    const r = e.getBoundingClientRect();
    if (r.width === 0 || scrolls(e)) return;
    const what = `${e.tagName.toLowerCase()} ${i + 1} ("${(e.innerText || e.getAttribute('src') || '').trim().slice(0, 40)}")`;
    if (r.right > right + 1) out.push(`${what} ends ${Math.round(r.right - right)} px past the text column`);
    else if (e.scrollWidth > e.clientWidth + 1) out.push(`${what} cuts ${e.scrollWidth - e.clientWidth} px of its content`);
  });
  return out;
}"""


@pytest.fixture(scope="module")
def browser_ready():
    if os.environ.get("TXMERGE_SKIP_BROWSER") == "1":
        pytest.skip("TXMERGE_SKIP_BROWSER=1 is set")
    if not _chromium():
        pytest.fail(
            "no Chromium found: run `make test` (it installs one) or `python tools/browser.py`, "
            "or set TXMERGE_SKIP_BROWSER=1 to skip the browser test explicitly."
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.fail("playwright is missing: run `make venv` (it is in the test extra).")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture(scope="module")
def served_book(browser_ready, smoke_book):
    assert smoke_book.returncode == 0, f"the smoke book did not build:\n{smoke_book.tail()}"
    handler = functools.partial(_QuietHandler, directory=str(smoke_book.html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", smoke_book
    finally:
        server.shutdown()
        server.server_close()


def test_every_page_in_the_browser(served_book, book_tools, tmp_path):
    from playwright.sync_api import sync_playwright

    base, book = served_book
    shots = Path(os.environ.get("TXMERGE_SCREENSHOTS", REPO / "_build" / "screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    for old in shots.glob("*.png"):  # screenshots of pages that no longer exist would mislead
        old.unlink()
    pages = book_tools.toc_files(book.root)
    offsite: list[str] = []
    problems: list[str] = []

    def route(r):
        host = urlparse(r.request.url).hostname
        if r.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            offsite.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=_chromium(), headless=True, args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            ctx.route("**/*", route)
            page = ctx.new_page()

            # index.html redirects to the root page; every toc page is linked from its sidebar
            resp = page.goto(base, wait_until="load")
            assert resp is not None and resp.status == 200
            page.wait_for_url(f"**/{pages[0]}.html")
            page.wait_for_load_state("load")
            hrefs = page.eval_on_selector_all(
                "nav.bd-docs-nav a, .bd-sidebar-primary a", "els => els.map(e => e.href)"
            )
            linked = {urlparse(h).path.lstrip("/") for h in hrefs}
            linked.add(urlparse(page.url).path.lstrip("/"))
            for name in pages:
                if f"{name}.html" not in linked:
                    problems.append(f"{name}: not reachable from the navigation")

            for name in pages:
                url = urljoin(base, f"{name}.html")
                resp = page.goto(url, wait_until="load")
                if resp is None or resp.status != 200:
                    problems.append(f"{name}: HTTP {resp.status if resp else 'no response'}")
                    continue
                page.wait_for_load_state("networkidle")
                n_math = page.locator(".math").count()
                if n_math:
                    try:
                        page.wait_for_function(
                            "() => [...document.querySelectorAll('.math')].every(e => e.querySelector('mjx-container'))",
                            timeout=20_000,
                        )
                    except Exception:
                        rendered = page.locator(".math mjx-container").count()
                        problems.append(f"{name}: math not rendered ({rendered} of {n_math} formulas)")
                images = page.eval_on_selector_all(
                    "main img, article img, .bd-article img",
                    "els => els.map(e => ({src: e.getAttribute('src'), ok: e.complete && e.naturalWidth > 0}))",
                )
                for img in images:
                    if not img["ok"]:
                        problems.append(f"{name}: image not loaded: {img['src']}")
                for text in page.locator(".cell_output").all_inner_texts():
                    m = BAD_OUTPUT.search(text)
                    if m:
                        snippet = text[max(0, m.start() - 80) : m.end() + 120].replace("\n", " ")
                        problems.append(f"{name}: cell output contains {m.group(0)!r}: ...{snippet}...")
                for issue in page.evaluate(TABLE_CHECK) + page.evaluate(OVERFLOW_CHECK):
                    problems.append(f"{name}: {issue}")
                page.screenshot(path=str(shots / f"{name.replace('/', '__')}.png"), full_page=True)
        finally:
            ctx.close()

    assert not offsite, f"requests left localhost: {sorted(set(offsite))[:10]}"
    assert not problems, "\n".join(problems)
    print(f"screenshots: {shots}")
