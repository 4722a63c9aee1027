#!/usr/bin/env bash
# Installs everything sfc-graph needs on a fresh machine (Debian/Ubuntu, Python >= 3.10, Node >= 20):
#   - a virtual environment in .venv with torch (CPU wheel, pinned first so nothing pulls a CUDA build),
#     then sfc-graph itself (editable) with its test extras;
#   - Graphviz's `dot` (Debian package) for `sfc viz` and the demo's diagrams;
#   - Chromium (Debian package), which Playwright drives in the browser tests of `sfc serve`;
#   - the official Neo4j Cypher linter (npm, pinned by its lockfile) used by the test suite.
# Safe to run again: each step is skipped or quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch first and pinned: an unpinned torch (asked for by transformer-lens) would download GBs of CUDA.
.venv/bin/python -m pip install --quiet "torch==${TORCH_VERSION}"
.venv/bin/python -m pip install --quiet -e ".[test,ray]"
# circuit-tracer's viewer models and local server, for the interop tests (tests/test_interop_attribution_graph.py);
# without its dependencies (torch/transformers/nnsight): the tests load only its standard-library and pydantic files.
.venv/bin/python -m pip install --quiet --no-deps "circuit-tracer==0.5.0"

if ! command -v dot >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing Graphviz (Debian package graphviz) for circuit diagrams"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq graphviz >/dev/null
fi

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "installing Chromium (Debian package chromium) for the browser tests of sfc serve"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null \
    || echo "chromium could not be installed: the browser tests will be skipped" >&2
fi

if command -v npm >/dev/null 2>&1; then
  (cd tools/cypher-lint && npm ci --silent --no-audit --no-fund)
else
  echo "npm not found: the Neo4j Cypher lint tests will be skipped" >&2
fi
echo "set-up done: .venv/bin/sfc is ready"
