"""The committed notebook: no outputs (they are made by running it), and reading views only."""

from __future__ import annotations

from pathlib import Path

import nbformat

from totes.pipeline.warehouse_views import REPORT_VIEWS

NOTEBOOK = Path(__file__).resolve().parents[3] / "notebooks" / "warehouse_tour.ipynb"


def code_cells() -> list:
    return [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]


def test_the_committed_notebook_has_no_outputs():
    for cell in code_cells():
        assert cell.outputs == [], cell.source[:60]
        assert cell.execution_count is None, cell.source[:60]


def test_the_notebook_plots_every_report_view():
    source = "\n".join(c.source for c in code_cells())
    for view in REPORT_VIEWS:
        assert f'"{view.name}"' in source, view.name
    assert "SELECT" not in source.upper().replace("SELECT_", "")  # queries live in the views
