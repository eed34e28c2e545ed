"""The website: it builds with warnings as errors, and every page works in a browser offline.

The browser part opens every built page in headless Chromium (Debian's package, driven by
Playwright) with every non-local request blocked, and checks that math is typeset, images load,
widgets render, nothing is logged as an error, and that every internal link and anchor exists.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest

from dlbook.book import toc_notebooks

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LOCAL_WIDGETS = (ROOT / "_build" / "assets" / "widgets" / "embed-amd.js").exists()
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


@pytest.fixture(scope="module")
def site() -> Path:
    """Build the book from its stored notebook outputs, treating warnings as errors."""
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(jb), "build", str(ROOT), "--warningiserror", "--keep-going",
                             "--quiet"], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, f"site build failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}"
    assert "WARNING" not in result.stderr, result.stderr[-5000:]
    return HTML


def pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.parts
                  and "_sources" not in p.parts)


class _LinksAndIds(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attrs = dict(attrs)
        for key in ("id", "name"):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def test_site_has_every_page(site):
    built = {p.relative_to(site).with_suffix("").as_posix() for p in pages(site)}
    for notebook in (ROOT / "chapters").rglob("*.ipynb"):
        assert notebook.relative_to(ROOT).with_suffix("").as_posix() in built
    for md in ["book/intro", "book/setup", "book/notation", "book/glossary", "book/teaching",
               "book/references"]:
        assert md in built
    assert (site / "_static" / "mathjax" / "tex-chtml.js").exists(), "MathJax is served locally"


def test_internal_links_and_anchors_resolve(site):
    parsed: dict[Path, _LinksAndIds] = {}

    def parse(path: Path) -> _LinksAndIds:
        if path not in parsed:
            parser = _LinksAndIds()
            parser.feed(path.read_text(encoding="utf-8"))
            parsed[path] = parser
        return parsed[path]

    broken = []
    for page in pages(site):
        for href in parse(page).links:
            if urlsplit(href).scheme or href.startswith(("//", "mailto:", "javascript:")):
                continue
            target, anchor = urldefrag(href)
            path = page if not target else (page.parent / unquote(target)).resolve()
            if path.is_dir():
                path = path / "index.html"
            if not path.exists():
                broken.append(f"{page.relative_to(site)}: {href} (no such file)")
            elif anchor and path.suffix == ".html" and unquote(anchor) not in parse(path).ids:
                broken.append(f"{page.relative_to(site)}: {href} (no such anchor)")
    assert not broken, "\n".join(broken[:30])


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs Chromium for the browser test: apt-get install chromium")
        pytest.skip("Chromium not installed (apt-get install chromium); browser test skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(site):
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


CHECK_PAGE = """async () => {
  const out = {};
  // Math: every math element typeset by MathJax, with no TeX errors.
  const math = document.querySelectorAll('.math, .math.notranslate');
  out.math = math.length;
  if (math.length) {
    await window.MathJax.startup.promise;
    await window.MathJax.typesetPromise();
  }
  out.typeset = document.querySelectorAll('mjx-container').length;
  out.mathErrors = document.querySelectorAll('mjx-merror').length;
  // Images: force lazy ones to load, then every image must have pixels.
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  out.images = imgs.length;
  out.brokenImages = imgs.filter(i => !(i.naturalWidth > 0)).map(i => i.src.slice(0, 80));
  // Widgets: every saved widget view is replaced by a rendered widget.
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  out.widgetViews = views.length;
  out.unrenderedWidgets = views.filter(v => !v.parentElement.querySelector('.jupyter-widgets')).length;
  return out;
}"""


def test_every_page_works_offline(site, server, browser):
    failures, widget_pages, math_pages = [], 0, 0
    for page in pages(site):
        rel = page.relative_to(site).as_posix()
        tab = browser.new_page()
        errors, external = [], []
        tab.on("console", lambda m, e=errors: m.type == "error" and e.append(m.text))
        tab.on("pageerror", lambda exc, e=errors: e.append(str(exc)))

        def route(r, ext=external):
            if r.request.url.startswith(server):
                r.continue_()
            else:
                ext.append(r.request.url)
                r.abort()

        tab.route("**/*", route)
        tab.goto(f"{server}/{rel}", wait_until="networkidle")
        if "widget-view+json" in page.read_text(encoding="utf-8"):
            tab.wait_for_selector(".jupyter-widgets", timeout=20_000)
            tab.wait_for_timeout(500)
        info = tab.evaluate(CHECK_PAGE)
        tab.close()
        problems = []
        if info["math"] and info["typeset"] < info["math"]:
            problems.append(f"only {info['typeset']} of {info['math']} math elements typeset")
        if info["mathErrors"]:
            problems.append(f"{info['mathErrors']} TeX errors")
        if info["brokenImages"]:
            problems.append(f"images that did not load: {info['brokenImages']}")
        if info["unrenderedWidgets"]:
            problems.append(f"{info['unrenderedWidgets']} of {info['widgetViews']} widgets "
                            "did not render")
        if errors:
            problems.append(f"console errors: {errors[:3]}")
        if external and LOCAL_WIDGETS:
            problems.append(f"requests to other hosts: {sorted(set(external))[:3]}")
        if problems:
            failures.append(f"{rel}: " + "; ".join(problems))
        widget_pages += bool(info["widgetViews"])
        math_pages += bool(info["math"])
    assert not failures, "\n".join(failures)
    notebooks_with_widgets = sum("widget-view+json" in p.read_text(encoding="utf-8")
                                 for p in toc_notebooks(ROOT))
    assert widget_pages == notebooks_with_widgets and math_pages > 0
