"""The tutorials run as written (reduced epochs and samples), and their plots are real PNGs."""
from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

pytestmark = pytest.mark.lava


def _execute(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    os.environ["LAVA_DEPLOY_QUICK"] = "1"
    try:
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        del os.environ["LAVA_DEPLOY_QUICK"]
    return notebook


def _outputs(notebook, output_type):
    return [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs
            if o.output_type == output_type]


def test_01_end_to_end(tmp_path):
    notebook = _execute("01_end_to_end.ipynb", tmp_path)
    text = "".join(o.get("text", "") for o in _outputs(notebook, "stream"))
    assert re.search(r"spike agreement\s+1\.000000", text), text
    images = [base64.b64decode(o["data"]["image/png"]) for o in _outputs(notebook, "display_data")
              if "image/png" in o.get("data", {})]
    assert len(images) == 3 and all(image.startswith(PNG_MAGIC) for image in images)


def test_02_bring_your_own_model(tmp_path):
    notebook = _execute("02_bring_your_own_model.ipynb", tmp_path)
    text = "".join(o.get("text", "") for o in _outputs(notebook, "stream"))
    assert "T = 3, integer reference test accuracy" in text
    assert re.search(r"prediction agreement\s+1\.0000", text), text
