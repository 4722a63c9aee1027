"""Every Cypher statement the Neo4j backend can send passes Neo4j's official linter (no error-level diagnostic).

The linter is ``@neo4j-cypher/language-support`` (pinned in tools/cypher-lint/package-lock.json), run by
``tools/cypher-lint/lint.mjs``; ``.ci/run`` installs it with ``npm ci --prefix tools/cypher-lint``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

LINT_DIR = Path(__file__).resolve().parents[1] / "tools" / "cypher-lint"
LINT = LINT_DIR / "lint.mjs"
DUMP = "import json; from sfc_graph.store.neo4j import lint_payload; print(json.dumps(lint_payload()))"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (LINT_DIR / "node_modules" / "@neo4j-cypher" / "language-support").is_dir(),
        reason="the Cypher linter is not installed: run `npm ci --prefix tools/cypher-lint`",
    ),
]


def _lint(payload: str) -> subprocess.CompletedProcess:
    return subprocess.run(["node", str(LINT), "--quiet"], input=payload, capture_output=True, text=True, timeout=600)


def test_every_neo4j_statement_passes_the_linter():
    dump = subprocess.run([sys.executable, "-c", DUMP], capture_output=True, text=True, check=True, timeout=120)
    payload = json.loads(dump.stdout)
    names = [s["name"] for s in payload["statements"]]
    # The lint covers every kind of statement the backend sends.
    for prefix in ("schema/constraint/", "schema/index/", "load/node/", "load/rel/", "store/delete-circuit",
                   "store/list-circuits", "store/stats", "admin/clear"):
        assert any(n.startswith(prefix) for n in names), prefix
    result = _lint(dump.stdout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"cypher-lint: {len(names)} statements, 0 errors" in result.stdout


def test_the_linter_flags_broken_statements():
    broken = [
        {"name": "syntax", "text": "MATCH (n:Feature) RETRN n", "params": []},
        {"name": "undeclared-param", "text": "MATCH (n:Feature {id: $feature}) RETURN n.id AS id", "params": []},
        {"name": "unbound-variable", "text": "MATCH (n:Feature) RETURN m.id AS id", "params": []},
        {"name": "type-error", "text": "MATCH p = (a)-[:EDGE*1..3]->(b) RETURN [r IN p | r.weight] AS w",
         "params": []},
        {"name": "fine", "text": "MATCH (n:Feature {id: $feature}) RETURN n.id AS id", "params": ["feature"]},
    ]
    result = _lint(json.dumps(broken))
    assert result.returncode == 1, result.stdout + result.stderr
    flagged = {line.split(":", 1)[0] for line in result.stdout.splitlines() if ": error: " in line}
    assert flagged == {"syntax", "undeclared-param", "unbound-variable", "type-error"}, result.stdout
    assert "cypher-lint: 5 statements, " in result.stdout
