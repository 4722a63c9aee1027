"""Package discovery for the mapped rooms (the rest of the metadata is in pyproject.toml).

The top-level folders name the rooms of the system (README "Where things are"); they are mapped into the
one import namespace ``sfc_graph`` so that ``import sfc_graph.ingest`` means the same thing wherever the code
runs from. setuptools' own discovery cannot prefix a folder's packages with ``sfc_graph.``, so this file
finds them: every package under each room (a folder with ``__init__.py``) and, as its data, every other file
in that package's folders that is not Python or a cache. A new module, sub-package, ``.cypher`` file or zoo
artefact is in the wheel without editing a list (tests/test_packaging.py installs the wheel to check).
"""

from __future__ import annotations

import os

from setuptools import find_packages, setup

ROOMS = {
    "sfc_graph": "sfc_graph",
    "sfc_graph.ingest": "ingest",
    "sfc_graph.queries": "queries",
    "sfc_graph.cli": "cli",
    "sfc_graph.zoo": "zoo",
}
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache"}
SKIP_SUFFIXES = (".py", ".pyc", ".pyo")


def _packages() -> tuple[list[str], dict[str, str]]:
    packages, package_dir = [], {}
    for package, folder in ROOMS.items():
        package_dir[package] = folder
        packages.append(package)
        for sub in find_packages(where=folder):
            packages.append(f"{package}.{sub}")
            package_dir[f"{package}.{sub}"] = os.path.join(folder, *sub.split("."))
    return packages, package_dir


def _package_data(packages: list[str], package_dir: dict[str, str]) -> dict[str, list[str]]:
    """Every non-Python file of each package, down to (not into) its sub-packages."""
    folders = {package_dir[p]: p for p in packages}
    data: dict[str, list[str]] = {}
    for folder, package in folders.items():
        for root, dirs, files in os.walk(folder):
            if root != folder and root in folders:
                dirs[:] = []  # a sub-package collects its own data
                continue
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
            rel = os.path.relpath(root, folder)
            for name in files:
                if not name.endswith(SKIP_SUFFIXES):
                    data.setdefault(package, []).append(os.path.normpath(os.path.join(rel, name)))
    return data


PACKAGES, PACKAGE_DIR = _packages()
setup(packages=PACKAGES, package_dir=PACKAGE_DIR, package_data=_package_data(PACKAGES, PACKAGE_DIR))
