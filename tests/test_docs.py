"""docs/ is the specification inside the repository: its examples run, its schema lists every label and
relationship type of sfc_graph/graph.py, and nothing in the project points at files outside the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from sfc_graph import graph
from sfc_graph.bundle import read_bundle

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# Reads Neuronpedia's published schema when a copy lies beside the checkout, and skips otherwise.
OUTSIDE_ALLOWED = {"tests/test_interop_attribution_graph.py", "tests/test_docs.py"}


def _code_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.DOTALL)


def test_bundle_spec_example_writes_a_valid_bundle(tmp_path, monkeypatch):
    (example,) = _code_blocks((DOCS / "bundle.md").read_text(encoding="utf-8"), "python")
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "docs/bundle.md", "exec"), {})
    bundle = read_bundle(tmp_path / "bundles" / "my-circuit-1")
    assert bundle.nodes.height == 3 and bundle.edges.height == 2


def test_bundle_spec_names_every_required_column_and_field():
    from sfc_graph.bundle import EDGE_COLUMNS, NODE_COLUMNS, NODE_KINDS, REQUIRED_MANIFEST_FIELDS

    text = (DOCS / "bundle.md").read_text(encoding="utf-8")
    for name in [*NODE_COLUMNS, *EDGE_COLUMNS, *REQUIRED_MANIFEST_FIELDS, *NODE_KINDS]:
        assert f"`{name}`" in text or f"| {name} |" in text, name


def test_graph_doc_lists_the_whole_schema():
    text = (DOCS / "graph.md").read_text(encoding="utf-8")
    labels = [label.name for label in graph.NODE_LABELS + graph.ANNOTATION_LABELS]
    missing = [name for name in labels + [rel.name for rel in graph.REL_TYPES] if f"`{name}`" not in text]
    assert not missing, f"docs/graph.md does not list {missing}; add them to its reference tables"


def test_graph_doc_cypher_runs(tmp_path):
    from builders import build_circuit
    from sfc_graph.store import open_store

    blocks = _code_blocks((DOCS / "graph.md").read_text(encoding="utf-8"), "cypher")
    statements = [s.strip() for block in blocks for s in re.split(r"\n\s*\n", block) if s.strip()]
    assert len(statements) >= 2
    with open_store(tmp_path / "store") as store:
        store.load(build_circuit(tmp_path / "b", "c1", task="agreement_simple").path)
        for statement in statements:
            store.run(statement, {"circuit": "c1"} if "$circuit" in statement else {})


def test_readme_links_the_docs():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in DOCS.glob("*.md"):
        assert f"docs/{page.name}" in readme, page.name


def test_nothing_points_outside_the_repository():
    try:
        files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("needs a git checkout")
    offenders = []
    for name in files.splitlines():
        path = ROOT / name
        if name in OUTSIDE_ALLOWED or not path.is_file() or path.suffix not in (".py", ".md", ".cypher", ".toml", ".sh"):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "../shared" in text or "DESIGN.md" in text:
            offenders.append(name)
    assert not offenders, f"references to files outside the repository in {offenders}"
