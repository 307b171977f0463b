"""The tutorial notebooks: each runs top to bottom unattended, and is stored clean.

The notebooks are their own source: edited in JupyterLab, committed without outputs. Every
numbered notebook in notebooks/ is checked and run, so a new one needs no change here.
Every notebook starts its own embedded Redis, so these tests need nothing running.
The kernel is this interpreter's (a kernelspec written to a temporary folder), so the
tests work from a fresh clone after ``pip install -e '.[test]'`` whatever kernels the
machine has registered.
"""

from __future__ import annotations

import ast
import json
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest

from conftest import tool_missing

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
CELL_TIMEOUT = 180  # seconds per cell; a whole notebook takes well under a minute
IMPORT_LINE = re.compile(r"^\s*(import\s+\w|from\s+[\w.]+\s+import\s)", re.M)
CLEAR = ("clear its outputs before committing: in JupyterLab, Edit > Clear Outputs of All Cells, then save; "
         "or .venv/bin/jupyter nbconvert --clear-output --inplace notebooks/{name}")


@pytest.fixture(scope="session")
def kernel_manager_factory(tmp_path_factory):
    """Builds kernel managers whose ``python3`` kernel is ``sys.executable``."""
    from ipykernel.kernelspec import write_kernel_spec  # noqa: PLC0415
    from jupyter_client.kernelspec import KernelSpecManager  # noqa: PLC0415
    from jupyter_client.manager import KernelManager  # noqa: PLC0415

    kernels = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(str(kernels / "python3"))
    spec = json.loads((kernels / "python3" / "kernel.json").read_text())
    assert spec["argv"][0] == sys.executable
    specs = KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)

    def make() -> KernelManager:
        return KernelManager(kernel_name="python3", kernel_spec_manager=specs)

    return make


def test_there_are_notebooks():
    """The series is there: at least eight notebooks, numbered 01, 02, ... with no gap or repeat,
    and no generator or other script standing in for them."""
    numbers = [p.name[:2] for p in PATHS]
    assert len(numbers) >= 8
    assert numbers == [f"{i:02d}" for i in range(1, len(numbers) + 1)]
    assert [p.name for p in NOTEBOOKS.glob("*.py")] == []


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_stored_clean_and_well_formed(path):
    """No outputs or counts; opens with what-you'll-do and a diagram; one import cell; ends by stopping."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), CLEAR.format(name=path.name)
    assert "widgets" not in nb.metadata, "saved widget state: " + CLEAR.format(name=path.name)
    first = nb.cells[0]
    assert first.cell_type == "markdown"
    for words in ("What you'll do", "What you'll learn", "What you'll need", "```mermaid"):
        assert words in first.source, f"the first cell lacks {words!r}"
    importing = [i for i, c in enumerate(code) if IMPORT_LINE.search(c.source)]
    assert importing == [0], f"import statements in code cells {importing}; only the first may import"
    assert "Try it yourself" in "".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "redis_server.stop()" in code[-1].source
    assert "6379" not in "".join(c.source for c in code)


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_exercise_checks_do_not_show_their_answers(path):
    """In "Try it yourself", each check compares with expected[...], whose values sit in one cell
    whose code is collapsed (the learner sees the exercise, not its answer); the solutions come after."""
    nb = nbformat.read(path, as_version=4)
    heads = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"
             and re.search(r"^## (Try it yourself|Solutions)", c.source, re.M)]
    assert len(heads) == 2 and "Try it yourself" in nb.cells[heads[0]].source, "a Try it yourself, then Solutions"
    section = [c for c in nb.cells[heads[0]:heads[1]] if c.cell_type == "code"]
    answers = [c for c in section if any(isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "expected" for t in node.targets) for node in ast.parse(c.source).body)]
    assert len(answers) == 1, "one cell sets expected = {...}"
    hidden = answers[0].metadata.get("jupyter", {}).get("source_hidden")
    assert hidden is True, "the expected answers' cell is collapsed"
    checks = [node for c in section if c is not answers[0] for node in ast.walk(ast.parse(c.source))
              if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check"]
    assert checks, "the exercises have check cells"
    for call in checks:
        shown = call.args[1]
        assert isinstance(shown, ast.Subscript) and getattr(shown.value, "id", None) == "expected", (
            f"check(...) shows its answer: {ast.unparse(shown)}")


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_top_to_bottom(path, kernel_manager_factory, monkeypatch):
    """The notebook executes without an error in a fresh kernel, cwd = notebooks/."""
    from nbclient import NotebookClient  # noqa: PLC0415

    monkeypatch.setenv("MPLBACKEND", "Agg")
    for name in ("REDIS_URL", "REDIS_HOST", "REDIS_PORT"):  # the notebooks start their own Redis
        monkeypatch.delenv(name, raising=False)
    nb = nbformat.read(path, as_version=4)
    if "nginx_available()" in "".join(c.source for c in nb.cells if c.cell_type == "code"):
        from simlib.balancer import nginx_available  # noqa: PLC0415

        if not nginx_available():  # the notebook runs, and leaves its nginx part out with a note
            tool_missing("nginx is not installed, so this notebook leaves its nginx part out (Debian: apt-get "
                         "install nginx-light)", skip=False)
    client = NotebookClient(nb, km=kernel_manager_factory(), timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    started = time.monotonic()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.monotonic() - started
    print(f"{path.name}: {seconds:.1f} s")
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    checks = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs
                     if o.output_type == "stream")
    assert "✅ Right" in checks  # the solutions ran their checks
