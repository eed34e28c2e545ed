"""Serve the ipywidgets HTML manager and require.js from the site itself (no CDN).

`make book` installs both from npm into ``_build/assets/widgets`` before Sphinx runs. When
that folder is missing (no npm on the machine) the site falls back to the public script URLs
and says so in one line; everything else still works. Also: a small script between the two
(``web/book-widgets.js``) that lets the widget manager find its fonts and typeset with
MathJax 3; the book's small style sheet (``web/book.css``); and removal of inline scripts
that an extension adds to a page twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.util import logging

logger = logging.getLogger(__name__)
ASSETS = Path("_build") / "assets"
WEB = Path(__file__).parent / "web"
FILES = ("require.js", "embed-amd.js")
CDN = {
    "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.8/require.min.js": {},
    "book-widgets.js": {},
    "https://cdn.jsdelivr.net/npm/@jupyter-widgets/html-manager@1.0.15/dist/embed-amd.js": {
        "data-jupyter-widgets-cdn": "https://cdn.jsdelivr.net/npm/", "crossorigin": "anonymous"},
}


def _use_local_assets(app: Sphinx, config: Config) -> None:
    assets = Path(app.confdir) / ASSETS
    config.html_static_path = [*config.html_static_path, str(WEB)]
    if all((assets / "widgets" / name).exists() for name in FILES):
        config.html_static_path.append(str(assets))
        # Sphinx serves these from _static/, in this order.
        config.nb_ipywidgets_js = {"widgets/require.js": {}, "book-widgets.js": {},
                                   "widgets/embed-amd.js": {}}
    else:
        config.nb_ipywidgets_js = CDN
        logger.info("offline_assets: widget scripts not found in %s; pages with widgets will "
                    "load them from a public CDN (run `make assets` with npm installed)", ASSETS)


def _dedupe_scripts(app: Sphinx, pagename: str, templatename: str, context: dict[str, Any],
                    doctree: Any) -> None:
    seen: set[tuple] = set()
    unique = []
    for js in context.get("script_files", []):
        attrs = getattr(js, "attributes", {}) or {}
        name = str(getattr(js, "filename", js) or "")  # an inline script has None or ""
        key = (name, tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app: Sphinx) -> dict[str, object]:
    app.add_css_file("book.css")  # served from web/, which _use_local_assets adds
    app.connect("config-inited", _use_local_assets)
    app.connect("html-page-context", _dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
