"""The notebooks themselves: listed in the table of contents, one clean run, tidy outputs,
the book's section anatomy. (nbval re-runs each notebook and compares its outputs.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from dlbook.book import toc_notebooks

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = toc_notebooks(ROOT)
IDS = [p.stem for p in NOTEBOOKS]
LEAKY = re.compile(r"(/root/|/tmp/|/home/\w+|/work/|/Users/|[A-Z]:\\\\|at 0x[0-9a-f]{6,}|"
                   r"ipykernel_\d+)")
IGNORE_TAGS = {"nbval-ignore-output", "nbval-skip"}


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def code_cells(nb: dict) -> list[dict]:
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def tags(cell: dict) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def output_text(out: dict) -> str:
    return "".join(out.get("text", "")) + "".join(out.get("data", {}).get("text/plain", ""))


def test_every_chapter_notebook_is_in_the_toc():
    on_disk = {p.resolve() for p in (ROOT / "chapters").rglob("*.ipynb")
               if ".ipynb_checkpoints" not in p.parts}
    listed = {p.resolve() for p in NOTEBOOKS}
    assert on_disk - listed == set(), "add these notebooks to _toc.yml"
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    for entry in re.findall(r"file:\s*(\S+)", toc):
        assert any((ROOT / entry).with_suffix(s).exists() for s in (".ipynb", ".md")), entry


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_outputs_come_from_one_clean_run(path):
    counts = [c["execution_count"] for c in code_cells(load(path))]
    assert counts == list(range(1, len(counts) + 1)), "run `make execute` on this notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_outputs_are_clean(path):
    for i, cell in enumerate(code_cells(load(path))):
        for out in cell["outputs"]:
            if out["output_type"] == "error":
                assert tags(cell) & {"raises-exception"}, f"code cell {i} stored an error"
            if out["output_type"] == "stream":
                assert out["name"] == "stdout", f"code cell {i} wrote to stderr: {output_text(out)}"
            match = LEAKY.search(output_text(out))
            assert not match, f"code cell {i} shows a machine-specific {match.group(0)!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_small(path):
    assert path.stat().st_size <= 2_000_000, "keep figures small (dpi <= 100, few frames)"


def test_few_cells_are_excluded_from_comparison():
    cells = [c for p in NOTEBOOKS for c in code_cells(load(p))]
    ignored = [c for c in cells if tags(c) & IGNORE_TAGS]
    assert len(ignored) <= 0.05 * len(cells), f"{len(ignored)} of {len(cells)} cells ignored"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_setup_cell(path):
    """The first code cell installs dlbook on Colab from the book's repository and seeds."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    repo = config["repository"]["url"]
    first = "".join(code_cells(load(path))[0]["source"])
    assert f'%pip install -q "dlbook @ git+{repo}"' in first
    assert '"google.colab" in sys.modules' in first
    assert "dlbook.seed_everything(" in first and "dlbook.device()" in first


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_section_anatomy(path):
    """Objectives, summary, and at least three exercises, each with a check and a solution."""
    nb = load(path)
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert re.search(r"learning objectives", markdown, re.I), "state the learning objectives"
    assert re.search(r"^## Summary", markdown, re.M), "end with a summary"
    exercises = re.findall(r"```\{exercise\}[^\n]*\n:label: (\S+)", markdown)
    solutions = re.findall(r"```\{solution-start\} (\S+)", markdown)
    assert len(exercises) >= 3, "at least three exercises"
    assert sorted(exercises) == sorted(solutions), "each exercise needs one solution"
    solution_code = [c for c in code_cells(nb) if "solution" in tags(c)]
    assert len(solution_code) >= len(exercises), "each solution has worked code (tag: solution)"
    for cell in solution_code:
        assert "✅" in "".join(output_text(o) for o in cell["outputs"]), (
            "a solution cell should run its check and pass: " + "".join(cell["source"])[:80])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_every_notebook_names_its_kernel(path):
    """JupyterLab opens the notebook ready to run instead of asking for a kernel."""
    spec = load(path)["metadata"].get("kernelspec", {})
    assert spec.get("name") == "python3" and spec.get("language") == "python", (
        "run `make execute` on this notebook: it stores the kernelspec")


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PROGRESS_LINE = re.compile(r"^[^\n]*: +\d+%\|[^|\n]*\| \d+/\d+$")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_widgets_live_in_jupyter_and_their_static_twins_on_the_site(path):
    """No widget state is stored; an explore() cell's output is removed on the site; any other
    widget output is a progress bar whose text (what the site shows) is its last line, with no
    timings (a run stopped early shows where it stopped, e.g. 40/100)."""
    nb = load(path)
    assert "widgets" not in nb["metadata"], "widget state is not stored: run `make execute`"
    for i, cell in enumerate(code_cells(nb)):
        source = "".join(cell["source"])
        if re.search(r"\bexplore\(", source):
            assert "remove-output" in tags(cell), f"code cell {i}: tag the explore() cell remove-output"
        if "remove-output" in tags(cell):
            continue
        for out in cell["outputs"]:
            if WIDGET_VIEW in out.get("data", {}):
                text = "".join(out["data"].get("text/plain", "")).strip()
                assert PROGRESS_LINE.match(text), f"code cell {i}: a widget the site cannot show: {text[:60]!r}"


def _images(cell: dict) -> int:
    return sum("image/png" in out.get("data", {}) or "image/svg+xml" in out.get("data", {})
               for out in cell["outputs"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_figures_have_alt_text_and_numbered_ones_are_referenced(path):
    nb = load(path)
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    names = []
    for i, cell in enumerate(code_cells(nb)):
        options = cell.get("metadata", {}).get("mystnb", {})
        if _images(cell):
            alt = options.get("image", {}).get("alt", "")
            assert len(alt) >= 15, f"code cell {i}: give its figure alt text (mystnb.image.alt)"
        figure = options.get("figure")
        if figure:
            assert figure.get("name", "").startswith("fig-"), f"code cell {i}: name it fig-..."
            assert len(figure.get("caption", "")) >= 15, f"code cell {i}: give it a caption"
            shown = [o for o in cell["outputs"] if o["output_type"] in ("display_data",
                                                                         "execute_result")]
            assert len(shown) == 1, f"code cell {i}: a numbered figure cell shows one output"
            names.append(figure["name"])
    assert len(names) == len(set(names)), "figure names are unique"
    for name in names:
        assert f"{{numref}}`{name}`" in markdown or re.search(
            rf"\{{numref\}}`[^`<]*<{re.escape(name)}>`", markdown), f"refer to {name} with {{numref}}"


_SOLUTION_FENCE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\s*\{(solution-start|solution-end)\}", re.M)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_solutions_stand_in_cells_of_their_own_folded_in_jupyterlab(path):
    """A {solution-start} directive ends its cell and a {solution-end} starts one, so that the
    cells between hold only the solution; `make execute` folds those cells in JupyterLab."""
    inside = False
    for i, cell in enumerate(load(path)["cells"]):
        source = "".join(cell["source"])
        hidden = cell.get("metadata", {}).get("jupyter", {}).get("source_hidden", False)
        if cell["cell_type"] == "markdown" and _SOLUTION_FENCE.search(source):
            for match in _SOLUTION_FENCE.finditer(source):
                fence, name = match.group(1), match.group(2)
                rest = source[match.end():].split("\n", 1)[1] if "\n" in source[match.end():] else ""
                block_end = rest.find(fence)
                after = rest[block_end + len(fence):] if block_end >= 0 else ""
                if name == "solution-start":
                    assert not after.strip(), f"cell {i}: put the solution text in a cell of its own"
                    inside = True
                else:
                    assert not source[:match.start()].strip(), (
                        f"cell {i}: start a new cell with the {{solution-end}}")
                    inside = False
            assert not hidden, f"cell {i}: a directive cell stays visible"
            continue
        tagged = "solution" in {t.lower() for t in tags(cell)}
        if inside or tagged:
            assert hidden, f"cell {i}: a solution cell is folded (run `make execute`)"
        else:
            assert not hidden, f"cell {i} is folded but is not a solution"
