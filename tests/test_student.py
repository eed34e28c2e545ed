"""The student edition: solutions removed, outputs cleared, and it still runs top to bottom."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from dlbook.book import student_edition, toc_notebooks, write_student_editions

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = toc_notebooks(ROOT)


def _solution_sources(nb: nbformat.NotebookNode) -> list[str]:
    return [c.source for c in nb.cells
            if c.cell_type == "code" and "solution" in c.metadata.get("tags", [])]


def test_student_edition_transform():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("```{exercise} Q\n:label: ex-q\nWhat?\n```"),
        nbformat.v4.new_code_cell("answer = ...\ncheck(answer)", execution_count=1,
                                  outputs=[nbformat.v4.new_output("stream", text="x")]),
        nbformat.v4.new_markdown_cell("```{solution-start} ex-q\n:class: dropdown\n```"),
        nbformat.v4.new_markdown_cell("The answer is 42 because..."),
        nbformat.v4.new_code_cell("answer = 42\ncheck(answer)"),
        nbformat.v4.new_markdown_cell("```{solution-end}\n```"),
        nbformat.v4.new_markdown_cell("```{solution} ex-q\nA plain solution.\n```"),
        nbformat.v4.new_code_cell("secret = 1", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("print('after')"),
    ]
    out = student_edition(nb)
    assert out.cells[0].source.startswith("**Student edition.**")
    sources = [c.source for c in out.cells[1:]]
    assert "answer = ...\ncheck(answer)" in sources and "print('after')" in sources
    assert not any("42" in s or "secret" in s or "solution" in s for s in sources)
    code = [c for c in out.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert len(nb.cells) == 9, "the original notebook is not modified"


def _md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text)


def _student_text(cells: list) -> str:
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return "\n".join(c.source for c in student_edition(nb).cells[1:])


@pytest.mark.parametrize("layout", [
    # the layout of the book's notebooks: the end of one solution and the next exercise share a cell
    ["```{solution-start} ex-a\n:class: dropdown\n```", "SECRET one",
     "```{solution-end}\n```\n\n```{exercise} Second\n:label: ex-b\nQUESTION two\n```"],
    # a {solution} directive that is not on the cell's first line
    ["```{exercise} First\n:label: ex-a\nQUESTION one\n```\n\nSome words.\n\n"
     "```{solution} ex-a\n:class: dropdown\nSECRET one\n```\nAfter. QUESTION two"],
    # an exercise and its gated solution in one cell, with ~~~ fences
    ["~~~{exercise} First\n:label: ex-a\nQUESTION one\n~~~\n~~~{solution-start} ex-a\n~~~\n"
     "SECRET one\n~~~{solution-end}\n~~~\nQUESTION two"],
    # colon fences, a longer fence with a nested code block, and a capitalised directive name
    [":::{exercise} First\nQUESTION one\n:::", "````{Solution} ex-a\n```python\nSECRET one\n"
     "```\n````", "QUESTION two"],
])
def test_student_edition_keeps_questions_and_drops_solutions(layout):
    text = _student_text([_md(c) for c in layout])
    assert "QUESTION one" in text or "QUESTION one" not in "".join(layout)
    assert "QUESTION two" in text
    assert "SECRET" not in text and "solution" not in text.lower()


@pytest.mark.parametrize("tag", ["solution", "Solution", " SOLUTION "])
def test_solution_code_is_dropped_whatever_the_tag_capitalisation(tag):
    text = _student_text([nbformat.v4.new_code_cell("secret = 1", metadata={"tags": [tag]}),
                          nbformat.v4.new_code_cell("kept = 2")])
    assert "secret" not in text and "kept = 2" in text


def test_code_inside_a_solution_region_is_dropped_untagged():
    text = _student_text([_md("```{solution-start} ex-a\n```"),
                          nbformat.v4.new_code_cell("secret = 1"),
                          _md("```{solution-end}\n```"), nbformat.v4.new_code_cell("kept = 2")])
    assert "secret" not in text and "kept = 2" in text


@pytest.mark.parametrize("cells, message", [
    (["```{solution-start} a\n```"], "never closed"),
    (["```{solution-end}\n```"], "no {solution-start}"),
    (["```{solution-start} a\n```", "```{solution-start} b\n```"], "before the previous"),
])
def test_student_edition_rejects_unbalanced_markers(cells, message):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s) for s in cells]
    with pytest.raises(ValueError, match=message):
        student_edition(nb)


_EXERCISE = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\{exercise(-start)?\}", re.M)
_GATED = re.compile(r"\{solution-start\}.*?\{solution-end\}[^\n]*\n(`{3,}|~{3,}|:{3,})", re.S)
_PLAIN = re.compile(r"^\s*(`{3,}|~{3,}|:{3,})\{solution\}.*?^\s*\1\s*$", re.S | re.M)


def _solution_only_lines(nb: nbformat.NotebookNode) -> set[str]:
    """Lines that stand only inside solutions, found by regular expressions over the whole
    notebook (independently of the code under test); tagged solution code counts too."""
    parts, inside = [], set()
    for c in nb.cells:
        if c.cell_type == "code" and "solution" in [t.lower() for t in c.metadata.get("tags", [])]:
            inside |= {line.strip() for line in c.source.splitlines()}
        else:
            parts.append(c.source)
    doc = "\n".join(parts)
    regions = [m.group(0) for m in _GATED.finditer(doc)] + [m.group(0) for m in _PLAIN.finditer(doc)]
    outside = doc
    for region in regions:
        outside = outside.replace(region, "")
    inside |= {line.strip() for region in regions for line in region.splitlines()}
    outside_lines = {line.strip() for line in outside.splitlines()}
    return {line for line in inside - outside_lines
            if len(line) >= 12 and "{solution" not in line}


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    written = write_student_editions(out, ROOT)
    assert len(written) == len(NOTEBOOKS)
    return out


@pytest.mark.parametrize("student_nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_notebook_has_no_solutions_and_runs(student_nb, student_dir):
    original = nbformat.read(student_nb, as_version=4)
    student = nbformat.read(student_dir / student_nb.relative_to(ROOT), as_version=4)
    text = json.dumps([c.source for c in student.cells])
    assert "{solution-start}" not in text and "{solution-end}" not in text
    student_code = {c.source for c in student.cells if c.cell_type == "code"}
    for source in _solution_sources(original):
        assert source not in student_code
    source_text = "\n".join(c.source for c in original.cells)
    student_text = "\n".join(c.source for c in student.cells)
    n_exercises = len(_EXERCISE.findall(source_text))
    assert n_exercises >= 3
    assert len(_EXERCISE.findall(student_text)) == n_exercises, "every exercise stays"
    secret = _solution_only_lines(original)
    assert secret, "the notebook's solutions were found"
    student_lines = {line.strip() for line in student_text.splitlines()}
    leaked = sorted(secret & student_lines)
    assert not leaked, f"solution text in the student edition: {leaked[:3]}"
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")

    NotebookClient(student, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(student_nb.parent)}}).execute()
    printed = "".join(o.get("text", "") for c in student.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "not answered yet" in printed
    assert "✅" not in printed, "a check passed without an answer"


def test_fold_solutions_folds_exactly_the_cells_inside_solutions():
    from dlbook.book import fold_solutions

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("```{exercise} Q\n:label: ex-q\nWhat?\n```"),
        nbformat.v4.new_code_cell("answer = ..."),
        nbformat.v4.new_markdown_cell("```{solution-start} ex-q\n:class: dropdown\n```"),
        nbformat.v4.new_markdown_cell("The answer is 42."),
        nbformat.v4.new_code_cell("answer = 42"),
        nbformat.v4.new_markdown_cell("```{solution-end}\n```"),
        nbformat.v4.new_code_cell("secret = 1", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("print('after')", metadata={"jupyter": {"source_hidden": True}}),
    ]
    assert fold_solutions(nb) == 3
    hidden = [bool(c.metadata.get("jupyter", {}).get("source_hidden")) for c in nb.cells]
    assert hidden == [False, False, False, True, True, False, True, False]
    assert nb.cells[4].metadata["jupyter"]["outputs_hidden"] is True
    assert "jupyter" not in student_edition(nb).cells[1].metadata
