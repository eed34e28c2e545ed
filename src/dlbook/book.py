"""Tools that keep the book's notebooks honest: run them, and make the student edition.

Run as ``python -m dlbook.book execute [NOTEBOOK ...]`` (re-run notebooks in place so their
stored outputs come from one clean run) or ``python -m dlbook.book student [--out DIR]``
(write every notebook without its solutions, with outputs cleared). ``make execute`` and
``make student`` call these. Needs the ``book`` extra (nbformat, nbclient).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path.cwd()
#: Environment for every notebook run (``make execute`` and the tests): one thread per
#: kernel, so floating-point sums are added in the same order every time and two kernels
#: running side by side do not fight over the cores.
RUN_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
SOLUTION_TAG = "solution"
#: Every notebook names its kernel, so JupyterLab opens it without asking.
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
#: An opening fence of a solution directive: ```{solution} ..., ~~~{solution-start} ..., :::{solution-end}
_SOLUTION_FENCE = re.compile(r"^\s*(?P<fence>`{3,}|~{3,}|:{3,})\s*\{(?P<name>solution(?:-start|-end)?)\}",
                             re.IGNORECASE)


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    """The notebooks listed in ``_toc.yml``, in reading order."""
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    found: list[Path] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key in ("root", "file"):
                if key in node:
                    path = root / node[key]
                    if path.suffix == "":
                        path = path.with_suffix(".ipynb")
                    if path.suffix == ".ipynb" and path.exists():
                        found.append(path)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(toc)
    return found


def execute(paths: list[Path], timeout: int = 600) -> None:
    """Run each notebook top to bottom in a fresh kernel and store the outputs in place."""
    import os

    import nbformat
    from nbclient import NotebookClient

    os.environ.update(RUN_ENV)  # inherited by the kernels started below
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        nb.metadata.pop("widgets", None)
        nb.metadata.pop("jupytext", None)
        nb.metadata["kernelspec"] = dict(KERNELSPEC)
        fold_solutions(nb)
        start = time.perf_counter()
        # Widget state is not stored: widgets need a kernel, and the website shows each one's
        # static twin instead (a progress bar shows its last line of text).
        client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                store_widget_state=False,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, path)
        print(f"{time.perf_counter() - start:6.1f} s  {path}")


def _closes(line: str, fence: str) -> bool:
    """True when ``line`` closes a block opened with ``fence`` (same character, at least as long)."""
    stripped = line.strip()
    return (len(stripped) >= len(fence) and set(stripped) == {fence[0]})


def _strip_solutions(lines: list[str], inside: bool) -> tuple[list[str], bool]:
    """Remove solution text from one markdown cell's lines.

    ``inside`` says whether the cell starts inside a ``{solution-start}`` ... ``{solution-end}``
    region; the second value returned says whether it ends inside one.
    """
    kept: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        opening = _SOLUTION_FENCE.match(line)
        if opening:
            fence, name = opening["fence"], opening["name"].lower()
            i += 1  # skip the directive block itself, up to its closing fence
            while i < len(lines) and not _closes(lines[i], fence):
                i += 1
            i += 1
            if name == "solution-start":
                if inside:
                    raise ValueError("a {solution-start} opens before the previous one closed")
                inside = True
            elif name == "solution-end":
                if not inside:
                    raise ValueError("a {solution-end} has no {solution-start} before it")
                inside = False
            continue
        if not inside:
            kept.append(line)
        i += 1
    return kept, inside


def student_edition(nb: "nbformat.NotebookNode") -> "nbformat.NotebookNode":  # noqa: F821
    """Return a copy of a notebook without its solutions and with its outputs cleared.

    Removed: code cells tagged ``solution`` (in any capitalisation), every ``{solution}``
    directive, and everything from a ``{solution-start}`` directive to its ``{solution-end}``,
    wherever in a cell they stand and whichever fence (```, ~~~ or :::) they use. Text before
    and after them in the same cell stays, so an ``{exercise}`` that shares a cell with the
    end of the previous solution is kept. Exercise prompts and their starter cells (with their
    ``dlbook.check`` calls) stay.
    """
    import copy

    import nbformat

    out = copy.deepcopy(nb)
    cells, inside = [], False
    for cell in out.cells:
        if cell.cell_type == "markdown":
            had_text = bool(cell.source.strip())
            kept, inside = _strip_solutions(cell.source.splitlines(), inside)
            text = "\n".join(kept).strip("\n")
            if had_text and not text.strip():
                continue
            cell.source = text
            cells.append(cell)
            continue
        tags = {str(t).strip().lower() for t in cell.get("metadata", {}).get("tags", [])}
        if inside or SOLUTION_TAG in tags:
            continue
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    if inside:
        raise ValueError("a {solution-start} is never closed by {solution-end}")
    out.cells = [nbformat.v4.new_markdown_cell(
        "**Student edition.** The solutions are removed; each exercise's check cell tells you "
        "whether your answer is right (it prints *not answered yet* until you fill in the `...`)."
    )] + cells
    for cell in out.cells:
        cell.metadata.pop("jupyter", None)
    out.metadata.pop("widgets", None)
    return out


def fold_solutions(nb: "nbformat.NotebookNode") -> int:  # noqa: F821
    """Fold every solution cell in JupyterLab (``jupyter.source_hidden``/``outputs_hidden``).

    Cells wholly inside a ``{solution-start}`` ... ``{solution-end}`` region, and code cells
    tagged ``solution``, are collapsed until the reader clicks them open; the website ignores
    this metadata and folds solutions itself. Other cells are unfolded. Returns the number of
    folded cells.
    """
    folded, inside = 0, False
    for cell in nb.cells:
        tags = {str(t).strip().lower() for t in cell.get("metadata", {}).get("tags", [])}
        starts_inside = inside
        if cell.cell_type == "markdown":
            kept, inside = _strip_solutions(cell.source.splitlines(), inside)
            whole = starts_inside and inside and not "".join(kept).strip()
        else:
            whole = inside or SOLUTION_TAG in tags
        meta = cell.metadata.setdefault("jupyter", {})
        if whole:
            meta["source_hidden"] = True
            if cell.cell_type == "code":
                meta["outputs_hidden"] = True
            folded += 1
        else:
            meta.pop("source_hidden", None)
            meta.pop("outputs_hidden", None)
        if not meta:
            cell.metadata.pop("jupyter")
    return folded


def write_student_editions(out_dir: Path, root: Path = ROOT) -> list[Path]:
    """Write the student edition of every notebook in the table of contents to ``out_dir``."""
    import nbformat

    written = []
    for path in toc_notebooks(root):
        target = out_dir / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(student_edition(nbformat.read(path, as_version=4)), target)
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlbook.book", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("execute", help="re-run notebooks in place (all in the TOC by default)")
    ex.add_argument("notebooks", nargs="*", type=Path)
    st = sub.add_parser("student", help="write the student edition (solutions removed)")
    st.add_argument("--out", type=Path, default=Path("_build/student"))
    args = parser.parse_args(argv)
    if args.command == "execute":
        paths = args.notebooks or toc_notebooks()
        missing = [p for p in paths if not p.exists()]
        if missing:
            parser.error(f"no such notebook: {', '.join(map(str, missing))}")
        execute(paths)
    else:
        written = write_student_editions(args.out)
        print(f"wrote {len(written)} student notebooks under {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
