"""The book's own Sphinx extension: what the theme and the other extensions leave to do.

* **Navigation that works on phones.** pydata-sphinx-theme 0.17 renders a second top bar whose
  hidden ``.primary-toggle`` the theme's scripts bind instead of sphinx-book-theme's visible
  one, so the hamburger button did nothing. The extension empties that top bar (its search
  box is also in the sidebar), which leaves one toggle per sidebar.
* **Numbers within each section.** Figures, exercises and tables are numbered by section:
  Figure 1.4.2 is the second figure of Section 1.4, Exercise 2.1.3 the third exercise of 2.1.
  Sphinx numbers them through the whole book when the table of contents is not numbered.
* **No widget scripts.** Interactive widgets work in Jupyter and Colab; the website shows each
  one's static twin instead, so no page loads the 3.5 MB widget manager. Progress bars show
  their final text line.
* **Stable glossary anchors.** A glossary term's second name (its Chinese name) gets the
  anchor of the first plus ``-zh`` (``#term-neuron-zh``) instead of a running number.
* The book's style sheet and script (``web/book.css``, ``web/book.js``): figures scale with
  the column, wide equations scroll on a phone, search results show text without TeX.
* Removal of inline scripts that an extension adds to a page twice.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.config import Config
from sphinx.environment import BuildEnvironment

WEB = Path(__file__).parent / "web"
SECTION = re.compile(r"^\s*(\d+)\.(\d+)\s")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _configure(app: Sphinx, config: Config) -> None:
    config.html_static_path = [*config.html_static_path, str(WEB)]
    options = dict(config.html_theme_options or {})
    for slot in ("navbar_start", "navbar_center", "navbar_end", "navbar_persistent"):
        options[slot] = []
    config.html_theme_options = options
    # The site shows a widget's text form (a progress bar's last line); explore() cells carry
    # the remove-output tag, and their static twin follows them.
    config.nb_mime_priority_overrides = [*config.nb_mime_priority_overrides,
                                         ("html", WIDGET_VIEW, None)]
    config.nb_ipywidgets_js = {}


def _number_by_section(app: Sphinx, env: BuildEnvironment) -> list[str]:
    """Renumber figures, exercises, tables and code blocks as (part, section, k)."""
    changed = []
    for docname, by_type in env.toc_fignumbers.items():
        title = env.titles.get(docname)
        match = SECTION.match(title.astext()) if title is not None else None
        if not match:
            continue
        prefix = (int(match.group(1)), int(match.group(2)))
        for figtype, numbers in by_type.items():
            ordered = sorted(numbers, key=lambda node_id: numbers[node_id])
            for k, node_id in enumerate(ordered, start=1):
                numbers[node_id] = (*prefix, k)
        changed.append(docname)
    return changed


def _stable_glossary_ids(app: Sphinx, doctree: nodes.document) -> None:
    """Give a glossary entry's further names the first name's anchor plus ``-zh``."""
    env = app.env
    std = env.get_domain("std")
    renamed: dict[str, str] = {}
    for glossary in doctree.findall(addnodes.glossary):
        for item in glossary.findall(nodes.definition_list_item):
            terms = [t for t in item.children if isinstance(t, nodes.term)]
            if len(terms) < 2 or not terms[0]["ids"]:
                continue
            first = terms[0]["ids"][0]
            for n, term in enumerate(terms[1:], start=1):
                old = term["ids"][0] if term["ids"] else None
                if old is None or not re.fullmatch(r"term-\d+", old):
                    continue
                new = f"{first}-zh" if n == 1 else f"{first}-{n}"
                term["ids"] = [new]
                renamed[old] = new
                doctree.ids.pop(old, None)
                doctree.ids[new] = term
                text = term.astext()
                std.objects["term", text] = (env.docname, new)
                std._terms[text.lower()] = (env.docname, new)
    if not renamed:
        return

    def rename(entries: list) -> list:
        return [(kind, value, renamed.get(tid, tid), main, key)
                for kind, value, tid, main, key in entries]

    for index in doctree.findall(addnodes.index):
        index["entries"] = rename(index["entries"])
    index_domain = env.get_domain("index")  # it collected the entries before this event
    index_domain.entries[env.docname] = rename(index_domain.entries.get(env.docname, []))


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
    app.add_css_file("book.css")  # served from web/, which _configure adds
    app.add_js_file("book.js", loading_method="defer")
    app.connect("config-inited", _configure)
    app.connect("env-get-updated", _number_by_section, priority=900)  # after Sphinx's own
    app.connect("doctree-read", _stable_glossary_ids)
    app.connect("html-page-context", _dedupe_scripts)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
