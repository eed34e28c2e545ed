"""The student edition: solutions removed, outputs cleared, and it still runs top to bottom."""

from __future__ import annotations

import json
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
    assert all(not c.get("outputs") for c in student.cells if c.cell_type == "code")

    NotebookClient(student, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(student_nb.parent)}}).execute()
    printed = "".join(o.get("text", "") for c in student.cells if c.cell_type == "code"
                      for o in c.outputs)
    assert "not answered yet" in printed
    assert "✅" not in printed, "a check passed without an answer"
