"""The tutorial notebooks: each runs top to bottom unattended, and is stored clean.

Every notebook starts its own embedded Redis, so these tests need nothing running.
The kernel is this interpreter's (a kernelspec written to a temporary folder), so the
tests work from a fresh clone after ``pip install -e '.[test]'`` whatever kernels the
machine has registered.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("[0-9]*.ipynb"))
CELL_TIMEOUT = 180  # seconds per cell; a whole notebook takes well under a minute
IMPORT_LINE = re.compile(r"^\s*(import\s+\w|from\s+[\w.]+\s+import\s)", re.M)


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
    """The series is there: eight numbered notebooks."""
    assert [p.name[:2] for p in PATHS] == ["01", "02", "03", "04", "05", "06", "07", "08"]


def test_stored_notebooks_match_the_generator():
    """Every stored notebook is exactly what notebooks/_build.py writes."""
    done = subprocess.run([sys.executable, str(NOTEBOOKS / "_build.py"), "--check"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_stored_clean_and_well_formed(path):
    """No outputs or counts; opens with what-you'll-do and a diagram; one import cell; ends by stopping."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
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
def test_notebook_runs_top_to_bottom(path, kernel_manager_factory, monkeypatch):
    """The notebook executes without an error in a fresh kernel, cwd = notebooks/."""
    from nbclient import NotebookClient  # noqa: PLC0415

    monkeypatch.setenv("MPLBACKEND", "Agg")
    for name in ("REDIS_URL", "REDIS_HOST", "REDIS_PORT"):  # the notebooks start their own Redis
        monkeypatch.delenv(name, raising=False)
    nb = nbformat.read(path, as_version=4)
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
