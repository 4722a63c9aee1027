"""Reports over the store: cross-task comparison reports (:mod:`.compare`) and circuit diagrams (:mod:`.viz`).

Both are imported lazily so that ``import sfc_graph.report`` stays cheap (matplotlib, graphviz load on use).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from ..store.base import BaseStore


def build_comparison_report(store: "BaseStore", selectors: Sequence[str], out_dir: str | Path) -> Path:
    """Write ``report.md``, ``report.html`` and PNG plots comparing the circuits ``selectors`` name
    (circuit ids, or task names selecting all their circuits) into ``out_dir``; return the HTML path."""
    from .compare import build_comparison_report as build

    return build(store, selectors, out_dir).html


def render_circuit_diagram(
    store: "BaseStore", circuit_id: str, out_path: str | Path, *, node_threshold: float = 0.0,
    edge_threshold: float = 0.0, max_nodes: int | None = None,
) -> Path:
    """Draw circuit ``circuit_id`` as a layered diagram to ``out_path`` (``.svg`` or ``.png``)."""
    from .viz import MAX_NODES, render_circuit_diagram as render

    return render(store, circuit_id, out_path, node_threshold=node_threshold, edge_threshold=edge_threshold,
                  max_nodes=max_nodes or MAX_NODES)


__all__ = ["build_comparison_report", "render_circuit_diagram"]
