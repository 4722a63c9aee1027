"""The wheel, not the source tree: build it, install it non-editable into a fresh virtual environment, and
use it there as a user would (every module imports, the data files are found, ``sfc`` loads, queries,
compares and draws a circuit).

The editable install of the checkout hides a module or data file missing from the wheel, so this test runs
from a directory outside the checkout, in an environment that sees the project's dependencies (the test
venv's site-packages, appended after the new environment's own) but not its editable finder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from builders import build_circuit

ROOT = Path(__file__).resolve().parents[1]
ROOMS = {"sfc_graph": "sfc_graph", "sfc_graph/ingest": "ingest", "sfc_graph/queries": "queries",
         "sfc_graph/cli": "cli", "sfc_graph/zoo": "zoo"}


def _tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs a git checkout to list the files the wheel must hold")
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return out.splitlines()


def _expected_in_wheel(tracked: list[str]) -> set[str]:
    """Every tracked file of a room, under its name in the installed package (computed from git, not setup.py)."""
    expected = set()
    for package, folder in ROOMS.items():
        for path in tracked:
            if not path.startswith(folder + "/"):
                continue
            rest = path[len(folder) + 1:]
            if folder == "sfc_graph" or not any(path.startswith(f + "/") for f in ROOMS.values() if f != folder):
                expected.add(f"{package}/{rest}")
    return expected


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy of the tracked files, as from a fresh clone: no stale build/ or stray files.
    clone = tmp_path_factory.mktemp("clone")
    for path in _tracked_files():
        if (ROOT / path).is_file():
            (clone / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / path, clone / path)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(out), str(clone)], check=True, capture_output=True, text=True)
    (found,) = out.glob("sfc_graph-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    env = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    python = env / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
                    "-q", str(wheel)], check=True, capture_output=True, text=True)
    # The dependencies come from the test environment's site-packages, appended *after* the new
    # environment's own, and without running its .pth files (so its editable finder stays out).
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "zz_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return env


def _run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SFC_STORE")}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    result = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


def test_wheel_holds_every_tracked_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_expected_in_wheel(_tracked_files()) - names)
    assert not missing, f"the wheel lacks {len(missing)} file(s), e.g. {missing[:5]}"


def test_installed_wheel_imports_every_module_from_itself(venv, tmp_path):
    script = (
        "import importlib, json, pkgutil, sfc_graph\n"
        "names = [m.name for m in pkgutil.walk_packages(sfc_graph.__path__, 'sfc_graph.')]\n"
        "files = {n: importlib.import_module(n).__file__ for n in names}\n"
        "print(json.dumps({'root': sfc_graph.__file__, 'files': files}))\n"
    )
    result = json.loads(_run(venv, str(venv / "bin" / "python"), "-c", script, cwd=tmp_path).stdout)
    assert result["root"].startswith(str(venv)), result["root"]
    outside = {n: f for n, f in result["files"].items() if not f.startswith(str(venv))}
    assert not outside, f"modules imported from outside the installed wheel: {outside}"
    # every room and a module of each is there (walk_packages found them in the installed tree)
    for module in ("sfc_graph.report.compare", "sfc_graph.ingest.compute", "sfc_graph.queries",
                   "sfc_graph.cli.app", "sfc_graph.zoo.model", "sfc_graph.store.ladybug", "sfc_graph.naming"):
        assert module in result["files"], module


def test_installed_sfc_loads_queries_compares_and_draws(venv, tmp_path):
    sfc = str(venv / "bin" / "sfc")
    assert "Usage" in _run(venv, sfc, "--help", cwd=tmp_path).stdout
    bundles = [build_circuit(tmp_path / f"b{i}", f"circuit-{i}", task=f"task{i}", seed=i).path for i in (1, 2)]
    store = str(tmp_path / "store")
    _run(venv, sfc, "load", *map(str, bundles), "--store", store, cwd=tmp_path)
    top = _run(venv, sfc, "query", "top-nodes", "-p", "circuit", "circuit-1", "-p", "k", "3", "--format", "json",
               "--store", store, cwd=tmp_path)
    assert len(json.loads(top.stdout)) == 3
    _run(venv, sfc, "compare", "circuit-1", "circuit-2", "--out", str(tmp_path / "report"), "--store", store,
         cwd=tmp_path)
    assert (tmp_path / "report" / "report.html").stat().st_size > 1000
    assert (tmp_path / "report" / "report.md").read_text().count("circuit-") >= 2
    if shutil.which("dot"):
        _run(venv, sfc, "viz", "circuit-1", "--out", str(tmp_path / "c.svg"), "--store", store, cwd=tmp_path)
        assert (tmp_path / "c.svg").read_text().lstrip().startswith("<")
    # the shipped zoo's artefacts are package data of the installed wheel
    info = _run(venv, sfc, "zoo", "info", "--format", "json", cwd=tmp_path)
    assert json.loads(info.stdout)["tasks"]
