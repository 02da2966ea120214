"""The notebook runs top to bottom, unattended, on a generated warehouse and its lake."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[3] / "notebooks" / "warehouse_tour.ipynb"


def test_the_notebook_runs_top_to_bottom_and_draws_every_plot(generated, monkeypatch):
    monkeypatch.setenv("WAREHOUSE_DSN", generated.warehouse_dsn)
    monkeypatch.setenv("LAKE", str(generated.lake_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)

    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()  # raises CellExecutionError, naming the cell, if any cell fails

    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 8  # one figure per question, each shown once
    text = "".join(o.get("text", "") for o in outputs)
    assert "month-currency rows; 0 disagree" in text  # the lake section compared something
    assert "password" not in text
