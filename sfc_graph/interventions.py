"""Interventions and dictionary scores in the store (graph schema: ``Intervention``, ``DictionaryScore``).

A SHIFT run (``sfc shift``) is recorded as one ``Intervention`` node ``-[:INTERVENES_ON]->`` the classifier's
``Circuit`` and ``-[:ABLATES {judgement, reason, effect}]->`` every ``Feature`` it zeroed, carrying the
classifier's accuracies before and after (and the whole table as JSON), so that "which features did every
SHIFT run ablate" is the named query ``shift-ablations`` / ``shift-common-ablations``. SCR / TPP scores
(``sfc eval scr|tpp``) are ``(Dictionary)-[:HAS_SCORE]->(DictionaryScore)``, one node per run, metric and N.

Both are written by the statements in ``store/cypher`` through the store's transaction primitive, on either
backend, each record whole or not at all.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from .errors import StoreError
from .store.statements import statement, statements


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class AblatedFeature:
    feature: str  # global id <dictionary id>/<latent>
    dictionary: str
    latent: int
    site: str  # embed | attn | mlp | resid
    layer: int
    judgement: str = "spurious"
    reason: str = ""
    effect: float | None = None


@dataclass
class InterventionRecord:
    circuit: str
    task: str
    model: str
    judge: str
    ablated: Sequence[AblatedFeature]
    before: dict[str, float]  # profession, gender, worst_group
    after: dict[str, float]
    results: dict[str, Any] = field(default_factory=dict)
    kind: str = "shift"
    id: str = field(default_factory=lambda: f"shift-{uuid.uuid4().hex[:16]}")
    created_at: str = field(default_factory=now)


def write_intervention(store, record: InterventionRecord) -> str:
    """Write ``record``; the circuit must be in the store. Returns the intervention's id."""
    store.require_circuit(record.circuit)
    ids = sorted({a.feature for a in record.ablated})
    known = set(store.run(statement("features-in-store"), {"ids": ids})["id"].to_list()) if ids else set()
    new_features = [
        {"feature": a.feature, "dictionary": a.dictionary, "latent": a.latent, "site": a.site, "layer": a.layer}
        for a in {a.feature: a for a in record.ablated}.values() if a.feature not in known
    ]
    params = {
        "id": record.id, "kind": record.kind, "circuit": record.circuit, "task": record.task, "model": record.model,
        "judge": record.judge, "n_ablated": len(ids),
        "profession_before": record.before["profession"], "profession_after": record.after["profession"],
        "gender_before": record.before["gender"], "gender_after": record.after["gender"],
        "worst_group_before": record.before["worst_group"], "worst_group_after": record.after["worst_group"],
        "results": json.dumps(record.results, sort_keys=True), "created_at": record.created_at,
        "new_features": new_features,
        # Features with and without a measured effect go in two lists: a list whose effects are all null is
        # typed STRING by the embedded engine, and the portable Cypher has no cast to DOUBLE.
        "ablated": [{"feature": a.feature, "judgement": a.judgement, "reason": a.reason, "effect": float(a.effect)}
                    for a in record.ablated if a.effect is not None],
        "ablated_no_effect": [{"feature": a.feature, "judgement": a.judgement, "reason": a.reason}
                              for a in record.ablated if a.effect is None],
    }
    store._run_in_transaction(_without_empty_unwinds(statements("intervention-create"), params), params)
    return record.id


@dataclass(frozen=True)
class DictionaryEntry:
    id: str
    kind: str
    d_dict: int
    site: str
    layer: int
    sha256: str
    model: str


@dataclass(frozen=True)
class ScoreRow:
    dictionary: str
    metric: str  # scr | tpp
    top_n: int
    value: float
    dataset: str
    model: str
    details: dict[str, Any] = field(default_factory=dict)


def write_scores(store, dictionaries: Sequence[DictionaryEntry], scores: Sequence[ScoreRow], *,
                 run: str | None = None) -> str:
    """Write one run of scores, adding the dictionaries (and models) the store lacks. Returns the run id."""
    if not scores:
        raise StoreError("no scores to write")
    run = run or f"eval-{uuid.uuid4().hex[:12]}"
    created = now()
    ids = sorted({d.id for d in dictionaries})
    have = set(store.run(statement("dictionaries-known"), {"ids": ids})["id"].to_list())
    models = sorted({d.model for d in dictionaries if d.id not in have})
    have_models = set(store.run(statement("models-known"), {"ids": models})["id"].to_list()) if models else set()
    new = [{"id": d.id, "kind": d.kind, "d_dict": d.d_dict, "site": d.site, "layer": d.layer, "sha256": d.sha256,
            "model": d.model} for d in {d.id: d for d in dictionaries}.values() if d.id not in have]
    rows = [{"id": f"{run}/{s.dictionary}/{s.metric}/{s.top_n}", "dictionary": s.dictionary, "metric": s.metric,
             "top_n": int(s.top_n), "value": float(s.value), "dataset": s.dataset, "model": s.model, "run": run,
             "created_at": created, "details": json.dumps(s.details, sort_keys=True)} for s in scores]
    params = {"new_dictionaries": new, "new_models": [m for m in models if m not in have_models], "scores": rows}
    store._run_in_transaction(_without_empty_unwinds(statements("dictionary-scores-add"), params), params)
    return run


def _without_empty_unwinds(texts: Sequence[str], params: dict[str, Any]) -> list[str]:
    """Drop the statements that UNWIND an empty list: LadybugDB cannot type an empty list parameter."""
    kept = []
    for text in texts:
        match = re.search(r"UNWIND \$(\w+)", text)
        if match and not params.get(match.group(1)):
            continue
        kept.append(text)
    return kept


def read_scores(store, *, metric: str | None = None) -> pl.DataFrame:
    """Every stored score (latest runs included), as a table."""
    frame = store.run(statement("dictionary-scores"), {"metric": metric})
    return frame
