"""Discovered behaviours in the store (graph schema: ``Behaviour``).

``sfc discover`` clusters a corpus's contexts and computes one circuit per cluster (ingest/discovery.py); each
cluster is recorded as a ``Behaviour`` node ``-[:HAS_CIRCUIT]->`` its ``Circuit``. The circuit's task is the
behaviour's id, so every task-level query and report works on behaviours unchanged; the named query
``behaviours`` lists them with their size, planted-label agreement and circuit.

Written by the statements in ``store/cypher`` through the store's transaction primitive, on either backend,
each record whole or not at all, and at most once (a re-run of the same discovery adds nothing).
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

from .store.statements import statement, statements


@dataclass(frozen=True)
class BehaviourRecord:
    id: str  # the circuit's task name
    discovery: str
    cluster: int
    size: int
    features: str
    algorithm: str
    corpus: str
    model: str
    circuit: str
    examples: list[dict[str, Any]] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def dominant_label(self) -> str | None:
        return max(self.label_counts, key=lambda k: self.label_counts[k]) if self.label_counts else None

    @property
    def label_share(self) -> float | None:
        total = sum(self.label_counts.values())
        return self.label_counts[self.dominant_label] / total if total and self.dominant_label else None


def write_behaviour(store, record: BehaviourRecord) -> bool:
    """Record ``record`` unless it is already there; its circuit must be in the store. True if written."""
    store.require_circuit(record.circuit)
    if store.run(statement("behaviour-exists"), {"id": record.id}).height:
        return False
    params = {
        "id": record.id, "discovery": record.discovery, "cluster": record.cluster, "size": record.size,
        "features": record.features, "algorithm": record.algorithm, "corpus": record.corpus, "model": record.model,
        "examples": json.dumps(record.examples, ensure_ascii=False), "circuit": record.circuit,
        "label_counts": json.dumps(record.label_counts, sort_keys=True), "dominant_label": record.dominant_label,
        "label_share": record.label_share, "created_at": record.created_at,
    }
    store._run_in_transaction(statements("behaviour-create"), params)
    return True


__all__ = ["BehaviourRecord", "write_behaviour"]
