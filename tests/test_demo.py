"""The quickstart notebook that ``tools/demo.py`` runs, as stored in the repository.

The demo itself runs in CI after the test suite. These checks keep the stored
notebook free of outputs, which could carry a token or a sign-in link.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

QUICKSTART = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"


def test_quickstart_is_valid() -> None:
    notebook = nbformat.read(QUICKSTART, as_version=4)

    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"


def test_quickstart_has_no_outputs() -> None:
    notebook = nbformat.read(QUICKSTART, as_version=4)
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]

    assert code_cells
    for cell in code_cells:
        assert cell.outputs == [], cell.id
        assert cell.execution_count is None, cell.id


def test_quickstart_logs_in_by_link() -> None:
    notebook = nbformat.read(QUICKSTART, as_version=4)
    sources = [cell.source for cell in notebook.cells if cell.cell_type == "code"]

    assert "%load_ext astro_jupyter" in sources
    assert "%astro_login localhost -e ada@example.com -l" in sources
