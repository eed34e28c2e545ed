"""`make lab`: JupyterLab opens a notebook ready to run and renders the book's MyST markup.

JupyterLab is started on 127.0.0.1 with a random token, one notebook is opened in headless
Chromium, and the test checks what a reader sees: no "select a kernel" dialog, exercises drawn
as boxes, every solution folded, and none of the raw directive syntax on screen.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
NOTEBOOK = "chapters/part1/1_1_neuron.ipynb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI needs Chromium for the JupyterLab test: apt-get install chromium")
        pytest.skip("Chromium not installed (apt-get install chromium)")
    settings = tmp_path_factory.mktemp("lab-settings")
    # Render every cell at once (JupyterLab otherwise renders only the cells in view), and
    # do not ask about news.
    for plugin, values in {"notebook-extension/tracker": {"windowingMode": "none"},
                           "apputils-extension/notification": {"fetchNews": "false",
                                                               "checkForUpdates": False}}.items():
        target = settings / "@jupyterlab" / f"{plugin}.jupyterlab-settings"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    # Serve a copy, so that JupyterLab's autosave and checkpoints never touch the book.
    root = tmp_path_factory.mktemp("lab-root")
    (root / NOTEBOOK).parent.mkdir(parents=True)
    shutil.copy(ROOT / NOTEBOOK, root / NOTEBOOK)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTER_CONFIG_DIR=str(tmp_path_factory.mktemp("jupyter-config")))
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           f"--LabApp.user_settings_dir={settings}", "--allow-root"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail("JupyterLab did not start within 60 s")
        yield f"http://127.0.0.1:{port}", token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_lab_opens_a_notebook_ready_to_run_with_its_myst_rendered(lab):
    from playwright.sync_api import sync_playwright

    url, token = lab
    source = json.loads((ROOT / NOTEBOOK).read_text(encoding="utf-8"))
    markdown = "\n".join("".join(c["source"]) for c in source["cells"]
                         if c["cell_type"] == "markdown")
    n_exercises = markdown.count("```{exercise}")
    hidden = [c for c in source["cells"] if c.get("metadata", {}).get("jupyter", {}).get(
        "source_hidden")]
    # a line of a folded solution that appears nowhere else in the notebook
    secret = next(line.strip() for c in hidden if c["cell_type"] == "markdown"
                  for line in "".join(c["source"]).splitlines()
                  if len(line.strip()) > 25 and "$" not in line and markdown.count(line.strip()) == 1)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        tab = browser.new_page(viewport={"width": 1366, "height": 900})
        tab.goto(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
        tab.wait_for_selector(".jp-Notebook .jp-MarkdownCell", timeout=60_000)
        tab.wait_for_function(
            f"document.querySelectorAll('.jp-Notebook aside.myst-exercise').length >= {n_exercises}",
            timeout=60_000)
        info = tab.evaluate(r"""(secret) => {
          const md = [...document.querySelectorAll('.jp-MarkdownCell .myst, .jp-MarkdownCell .jp-MarkdownOutput')];
          return {
            kernel: document.querySelector('.jp-KernelName, .jp-Toolbar-kernelName')?.textContent,
            dialog: !!document.querySelector('.jp-Dialog'),
            exercises: document.querySelectorAll('.jp-Notebook aside.myst-exercise').length,
            folded: document.querySelectorAll('.jp-Notebook .jp-InputPlaceholder').length,
            secretShown: document.querySelector('.jp-Notebook').innerText.includes(secret),
            raw: md.filter(e => /:class: dropdown|\{solution-start\}|\{exercise\}|\{eq\}`/.test(e.textContent)).length,
            rendered: md.length,
            eqLinks: md.map(e => e.querySelectorAll('a[href^="#eq-"]').length).reduce((a, b) => a + b, 0),
          };
        }""", secret)
        browser.close()
    assert not info["dialog"], "JupyterLab asked for a kernel"
    assert "Python 3" in (info["kernel"] or ""), info
    assert info["exercises"] >= n_exercises, info
    assert info["folded"] >= len(hidden) and not info["secretShown"], "solutions are folded"
    assert info["rendered"] >= 20 and info["raw"] == 0, "MyST markup shown as raw text"
    assert info["eqLinks"] > 0, "equation references are links"
