"""Static checks that run with the test suite (and so in .ci/run): the docstring examples of every module of
the library run as doctests, and mypy finds no error in sfc_graph/, queries/ and cli/.

Both import the library by its real names (``sfc_graph.queries``, ``sfc_graph.cli`` ...): the rooms
``ingest/``, ``queries/``, ``cli/`` and ``zoo/`` are mapped into the ``sfc_graph`` namespace (pyproject.toml,
setup.py), which pytest's ``--doctest-modules`` (it names modules after their folders) and mypy (it maps
module names to folders one to one) cannot follow on the source tree. So the doctests are collected here
from the imported modules, and mypy runs on a tree of links laid out as the installed package is.
"""

from __future__ import annotations

import doctest
import importlib
import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sfc_graph

ROOT = Path(__file__).resolve().parents[1]
ROOMS = {"ingest": "ingest", "queries": "queries", "cli": "cli", "zoo": "zoo"}  # sfc_graph.<name> -> folder
CHECKED = ("sfc_graph",)  # mypy's package; ingest and zoo are excluded by pyproject's [tool.mypy] overrides


def _library_modules() -> list[str]:
    """Every module of the package, the mapped rooms included (an editable install's sfc_graph/ folder does
    not hold them, so each room is walked from its own package)."""
    names = {m.name for m in pkgutil.walk_packages(sfc_graph.__path__, "sfc_graph.")}
    for room in ROOMS:
        package = importlib.import_module(f"sfc_graph.{room}")
        names.add(package.__name__)
        names |= {m.name for m in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")}
    return sorted(names)


@pytest.mark.parametrize("name", _library_modules())
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder(exclude_empty=True).find(module, name) if t.examples]
    if not tests:
        pytest.skip("no examples")
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name} (see stdout)"


def test_the_modules_with_examples_are_found():
    """The collection above sees the mapped rooms (a regression would silently run no doctests)."""
    names = _library_modules()
    assert {"sfc_graph.naming", "sfc_graph.queries.runner", "sfc_graph.cli.options", "sfc_graph.ingest.compute"} <= \
        set(names)


def _package_tree(tmp: Path) -> Path:
    """``tmp/sfc_graph``: links to every entry of sfc_graph/ plus one per mapped room, as the wheel lays out."""
    package = tmp / "sfc_graph"
    package.mkdir()
    for entry in (ROOT / "sfc_graph").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for name, folder in ROOMS.items():
        (package / name).symlink_to(ROOT / folder)
    return tmp


@pytest.mark.skipif(shutil.which("mypy", path=str(Path(sys.executable).parent)) is None
                    and importlib.util.find_spec("mypy") is None, reason="mypy is not installed (the test extra)")
def test_mypy_finds_no_errors(tmp_path):
    tree = _package_tree(tmp_path)
    cache = ROOT / ".mypy_cache"  # kept between runs: a warm check takes seconds
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), "--cache-dir", str(cache),
               *[arg for name in CHECKED for arg in ("-p", name)]]
    env = {**os.environ, "MYPYPATH": ""}
    result = subprocess.run(command, cwd=tree, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_every_exception_class_lives_in_errors_py():
    """One home for the exceptions (issue 8): every class deriving from an exception is defined in
    sfc_graph/errors.py, and nowhere else in the product's rooms."""
    import ast
    import builtins

    from sfc_graph import errors

    exception_names = {name for name, value in vars(builtins).items()
                       if isinstance(value, type) and issubclass(value, BaseException)}
    exception_names |= {name for name, value in vars(errors).items()
                        if isinstance(value, type) and issubclass(value, BaseException)}
    strays = []
    for folder in ("sfc_graph", *ROOMS.values()):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "sfc_graph" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases = {getattr(base, "id", getattr(base, "attr", "")) for base in node.bases}
                    if bases & exception_names:
                        strays.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not strays, strays


def test_pyflakes_rules_find_nothing():
    """ruff's pyflakes rules (F: unused imports and variables, undefined names, redefinitions) on every room,
    the benchmarks and the tests."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.fail("ruff is not installed: it is in the test extra (pip install -e .[test])")
    folders = ["sfc_graph", *ROOMS.values(), "benchmarks", "tests"]
    out = subprocess.run([ruff, "check", "--select", "F", "--output-format", "concise", *folders], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
