"""environment.yml (conda) installs what pyproject.toml (pip) does: the same packages, the
same lower bounds, the test extra included, so both set-ups run the whole test suite."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"redis": "redis-py"}  # PyPI name -> conda-forge name, where they differ
CONDA_ONLY = {"python", "pip"}


def environment() -> tuple[list[str], list[str]]:
    """The conda and the pip dependency lines of environment.yml (a small, fixed layout:
    ``  - spec`` under ``dependencies:``, ``      - spec`` under ``  - pip:``)."""
    conda, pip, section = [], [], None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            section = line.split(":")[0]
        elif section == "dependencies" and line.strip() == "- pip:":
            section = "pip"
        elif section == "dependencies":
            conda.append(line.strip().removeprefix("- "))
        elif section == "pip":
            pip.append(line.strip().removeprefix("- "))
    return conda, pip


def test_environment_yml_lists_what_pyproject_requires():
    """Every requirement of pyproject.toml (runtime and test) is in environment.yml with the same
    bound and marker, nothing else is, and pip installs the project with its test extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["test"]]
    conda, pip = environment()
    assert pip[-1] == "-e .[test]", "the project itself, with the test extra, last"
    listed = {}
    for line in conda:
        name = line.split("=")[0].split(">")[0].split("<")[0].strip()
        if name not in CONDA_ONLY:
            listed[name] = Requirement(line)
    for line in pip[:-1]:
        req = Requirement(line)
        listed[req.name] = req
    needed = {}
    for req in wanted:
        needed[req.name if req.name in listed else CONDA_NAMES.get(req.name, req.name)] = req
        for extra in req.extras:  # redis[hiredis]: conda-forge packages hiredis on its own
            needed[extra] = Requirement(extra)
    assert sorted(listed) == sorted(needed), "environment.yml and pyproject.toml list different packages"
    for name, req in needed.items():
        assert listed[name].specifier == req.specifier, f"{name}: {listed[name].specifier} vs {req.specifier}"
        assert str(listed[name].marker) == str(req.marker), f"{name}: marker {listed[name].marker} vs {req.marker}"


def test_environment_python_meets_requires_python():
    """The conda environment's Python satisfies pyproject's requires-python."""
    from packaging.specifiers import SpecifierSet

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    conda, _ = environment()
    (python,) = [line for line in conda if line.startswith("python=")]
    assert python.removeprefix("python=") in SpecifierSet(project["requires-python"])
