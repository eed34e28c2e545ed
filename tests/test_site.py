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
        if ".ipynb_checkpoints" in notebook.parts:
            continue
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


CHECK_PAGE = r"""async () => {
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
  // Widgets are not rendered on the site (their static twins are): no widget scripts.
  out.widgetViews = document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]').length;
  out.widgetScripts = [...document.scripts].filter(s => /embed-amd|require\.js|html-manager/.test(s.src)).length;
  const article = document.querySelector('article.bd-article');
  // The content box of the article: its width without the padding.
  const box = article ? article.getBoundingClientRect() : null;
  const pad = article ? getComputedStyle(article) : null;
  const column = article ? {left: box.left + parseFloat(pad.paddingLeft),
                            right: box.right - parseFloat(pad.paddingRight),
                            width: box.width - parseFloat(pad.paddingLeft) - parseFloat(pad.paddingRight)} : null;
  // Every figure in the content has alt text (not a file name).
  const content = article ? [...article.querySelectorAll('img')] : [];
  out.noAlt = content.filter(i => !i.alt || /^[\w.\/-]+\.(png|svg|jpe?g)$/i.test(i.alt.trim()))
    .map(i => i.src.slice(-40));
  // Figures: at least half as wide as the column, at most the column, at most 2x their pixels.
  out.badSize = content.filter(i => i.closest('.cell_output, figure')).map(i => {
    const w = i.getBoundingClientRect().width;
    const ok = w <= column.width + 1 && w <= 2 * i.naturalWidth + 1 &&
               (window.innerWidth < 700 || w >= 0.5 * column.width - 1);
    return ok ? null : `${i.alt.slice(0, 30)}: ${Math.round(w)} px of ${Math.round(column.width)}`;
  }).filter(Boolean);
  // Display equations stay inside the column (a wide one scrolls), number on the right.
  out.overflowingMath = [...document.querySelectorAll('article div.math')].map(d => {
    const r = d.getBoundingClientRect();
    const mjx = d.querySelector('mjx-container');
    if (!mjx) return null;
    const scrolls = ['auto', 'scroll'].includes(getComputedStyle(mjx).overflowX);
    const fits = r.right <= column.right + 1 && (mjx.scrollWidth <= mjx.clientWidth + 1 || scrolls);
    const eqno = d.querySelector('.eqno');
    const beside = !eqno || eqno.getBoundingClientRect().left >= mjx.getBoundingClientRect().left;
    return fits && beside ? null : (d.id || d.textContent.slice(0, 40));
  }).filter(Boolean);
  // Every "Section X.Y" in the prose is a link.
  const walker = document.createTreeWalker(article || document.body, NodeFilter.SHOW_TEXT);
  out.unlinkedSections = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (/Section\s+\d+\.\d+/.test(n.textContent) &&
        !n.parentElement.closest('a, pre, code, .highlight, .cell_output, .math, mjx-container')) {
      out.unlinkedSections.push(n.textContent.trim().slice(0, 60));
    }
  }
  return out;
}"""


@pytest.mark.parametrize("viewport", [(1366, 900), (390, 844)], ids=["desktop", "phone"])
def test_every_page_works_offline(site, server, browser, viewport):
    failures, math_pages = [], 0
    for page in pages(site):
        rel = page.relative_to(site).as_posix()
        tab = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
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
        info = tab.evaluate(CHECK_PAGE)
        tab.close()
        problems = []
        if info["math"] and info["typeset"] < info["math"]:
            problems.append(f"only {info['typeset']} of {info['math']} math elements typeset")
        if info["mathErrors"]:
            problems.append(f"{info['mathErrors']} TeX errors")
        if info["brokenImages"]:
            problems.append(f"images that did not load: {info['brokenImages']}")
        if info["widgetViews"] or info["widgetScripts"]:
            problems.append("widgets or widget scripts on the page (the site shows static twins)")
        for key, label in [("noAlt", "images without alt text"),
                           ("badSize", "images too small or too large"),
                           ("overflowingMath", "display equations that overflow"),
                           ("unlinkedSections", "'Section X.Y' not linked")]:
            if info[key]:
                problems.append(f"{label}: {info[key][:3]}")
        if errors:
            problems.append(f"console errors: {errors[:3]}")
        if external:
            problems.append(f"requests to other hosts: {sorted(set(external))[:3]}")
        if problems:
            failures.append(f"{rel}: " + "; ".join(problems))
        math_pages += bool(info["math"])
    assert not failures, "\n".join(failures)
    assert math_pages > 0


def _chapter_pages() -> list[str]:
    return [p.relative_to(ROOT).with_suffix(".html").as_posix() for p in toc_notebooks(ROOT)]


def test_phone_navigation_drawer_opens_with_every_chapter(site, server, browser):
    tab = browser.new_page(viewport={"width": 390, "height": 844})
    tab.goto(f"{server}/{_chapter_pages()[2]}", wait_until="networkidle")
    toggles = tab.locator(".primary-toggle")
    assert toggles.count() == 1, "one primary-sidebar toggle (two make the theme bind the wrong one)"
    toggles.first.click()
    tab.wait_for_timeout(500)
    dialog = tab.locator("dialog#pst-primary-sidebar-modal")
    assert dialog.evaluate("d => d.open"), "the navigation drawer did not open"
    links = dialog.evaluate("d => [...d.querySelectorAll('a')].filter(a => a.offsetParent)"
                            ".map(a => a.textContent.trim())")
    for notebook in toc_notebooks(ROOT):
        number = notebook.stem.split("_")[0] + "." + notebook.stem.split("_")[1]
        assert any(text.startswith(number + " ") for text in links), f"{number} not in the drawer"
    tab.keyboard.press("Escape")
    tab.wait_for_timeout(300)
    assert not dialog.evaluate("d => d.open"), "the drawer closes again"
    tab.close()


def test_home_page_links_every_section(site):
    html = (site / "book" / "intro.html").read_text(encoding="utf-8")
    for chapter in _chapter_pages():
        assert f'href="../{chapter}"' in html, f"the home page does not link {chapter}"


def test_glossary_anchors_are_stable_names(site):
    html = (site / "book" / "glossary.html").read_text(encoding="utf-8")
    import re

    assert not re.search(r'id="term-\d+"', html), "a glossary term with a numbered anchor"
    assert 'id="term-neuron"' in html and 'id="term-neuron-zh"' in html
    assert 'href="../chapters/part1/1_1_neuron.html"' in html, "section numbers are links"


def test_search_results_show_text_without_tex(site, server, browser):
    tab = browser.new_page()
    tab.goto(f"{server}/search.html?q=learning+rate", wait_until="networkidle")
    tab.wait_for_selector("ul.search li p.context", timeout=20_000)
    snippets = tab.eval_on_selector_all("ul.search li p.context", "ps => ps.map(p => p.textContent)")
    tab.close()
    assert len(snippets) >= 3
    for text in snippets:
        assert "\\(" not in text and "\\frac" not in text and "\\mathbf" not in text, text[:120]
        assert "Contents" not in text[:40], text[:120]
