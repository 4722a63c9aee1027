"""Feature dashboards and labels, kept with the store (``FeatureInfo`` nodes, :mod:`sfc_graph.graph`).

A dashboard says what a dictionary latent does, from a corpus: its top-k activating contexts (tokens with
per-token activations), how often it fires (density), and which tokens its decoder direction promotes and
suppresses through the unembedding (logit lens, ``W_dec · W_U``). It is computed by
:mod:`sfc_graph.ingest.dashboards` and written here; this module needs no torch.

Layout: one ``FeatureInfo`` node per latent, keyed by the feature id (``<dictionary id>/<latent>``), holding the
columns queries filter and show (label, density, top tokens, logit-lens tokens) as properties and the
contexts as one JSON property. Why not properties of ``Feature``: a ``Feature`` node exists only while a
circuit uses it (deleting the last such circuit removes it, and its label with it), and loads write it with
``COPY``; a dashboard belongs to the latent, circuits or not. Why not ``Example`` nodes (one per context):
nobody queries single contexts in Cypher, a dashboard would cost a traversal and a reassembly instead of
one key lookup, and ten nodes per latent with their own keys take more room than one JSON text. The
engine is columnar, so scans of labels and densities never read the JSON.

Labels have a source: ``manual`` (``sfc label``), ``neuronpedia`` (an explanations export) or ``auto``
(drafted from the dashboard by :func:`draft_label`). Rebuilding dashboards redrafts ``auto`` labels and keeps
the others.

>>> draft_label({"examples": [{"tokens": ["the", "keys", "was"], "acts": [0, 0.1, 2.0], "at": 2},
...                           {"tokens": ["a", "keys", "was"], "acts": [0, 0, 1.5], "at": 2}]})
'"was" after "keys"'
>>> split_feature_id("toy-zoo-v1/resid_0/sae-256/17")
('toy-zoo-v1/resid_0/sae-256', 17)
"""

from __future__ import annotations

import datetime as _dt
import gzip
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import polars as pl

from .errors import FeatureError, SfcError
from .graph import ANNOTATION_LABELS, _polars_type
from .naming import feature_identity, parse_feature_identity
from .store.statements import statement

log = logging.getLogger(__name__)

LABEL_SOURCES = ("manual", "neuronpedia", "auto")
INFO = next(label for label in ANNOTATION_LABELS if label.name == "FeatureInfo")
INFO_SCHEMA: dict[str, Any] = {name: _polars_type(kind) for name, kind in INFO.properties}
MAX_LABEL = 200  # characters: a label is a short name, not an essay
BATCH_ROWS = 2000  # dashboards per write transaction
DOMINANT = 0.5  # share of the top contexts a token must hold to name the feature
COMMON = 0.05  # a token this frequent in the corpus says nothing as context (see draft_label)
CONTEXT_SHARE = 0.6  # share the preceding token (or the behaviour) must hold to be added


# --- ids ---------------------------------------------------------------------------------------------------
def split_feature_id(feature: str) -> tuple[str, int]:
    """``<dictionary id>/<latent>`` → (dictionary id, latent) (:mod:`sfc_graph.naming` owns the format)."""
    try:
        return parse_feature_identity(feature)
    except SfcError as exc:
        raise FeatureError(str(exc)) from None


def feature_id(dictionary: str, latent: int) -> str:
    return feature_identity(dictionary, latent)


# --- drafting labels ---------------------------------------------------------------------------------------
def draft_label(dashboard: Mapping[str, Any], *, common: frozenset[str] | set[str] = frozenset()) -> str:
    """A short label from a dashboard's dominant token pattern (marked ``auto`` where stored).

    The token the top contexts peak on when one token holds at least half of them (or the few that
    together hold most), the token before it when that is shared too and is not one of the corpus's
    ``common`` tokens (a feature that fires after "the" in a corpus where every noun follows "the" says
    nothing about "the"), the planted behaviour when the corpus labels tokens (the zoo's stream), else the
    logit-lens tokens; ``dead`` when it never fired.
    """
    examples = list(dashboard.get("examples") or [])
    if not examples:
        return "dead on the corpus (never active)"
    n = len(examples)
    peak = Counter(ex["tokens"][ex["at"]] for ex in examples)
    before = Counter(ex["tokens"][ex["at"] - 1] for ex in examples if ex["at"] > 0)
    (top, count), *rest = peak.most_common()
    if count / n >= DOMINANT:
        head = f'"{top}"'
    else:
        leaders = peak.most_common(3)
        if sum(c for _, c in leaders) / n >= CONTEXT_SHARE:
            head = " / ".join(f'"{t}"' for t, _ in leaders)
        else:
            promoted = [str(t) for t, *_ in (dashboard.get("top_logits") or [])[:3]]
            head = f"mixed tokens, promotes {', '.join(promoted)}" if promoted else "mixed tokens"
    parts = [head]
    if before:
        prev, prev_count = before.most_common(1)[0]
        if prev_count / n >= CONTEXT_SHARE and prev not in common:
            parts.append(f'after "{prev}"')
    behaviours = Counter(ex.get("behaviour") for ex in examples if ex.get("behaviour") not in (None, "none"))
    if behaviours:
        behaviour, b_count = behaviours.most_common(1)[0]
        if b_count / n >= CONTEXT_SHARE:
            parts.append(f"[{behaviour}]")
    return " ".join(parts)[:MAX_LABEL]


def top_tokens(dashboard: Mapping[str, Any], k: int = 5) -> list[str]:
    """The commonest peak tokens of the top contexts (ties: stronger contexts first)."""
    order: dict[str, tuple[int, int]] = {}
    for rank, ex in enumerate(dashboard.get("examples") or []):
        token = ex["tokens"][ex["at"]]
        count, first = order.get(token, (0, rank))
        order[token] = (count + 1, first)
    return [t for t, _ in sorted(order.items(), key=lambda item: (-item[1][0], item[1][1]))[:k]]


# --- writing -------------------------------------------------------------------------------------------
def write_dashboards(store, rows: pl.DataFrame, *, relabel: bool = False, batch_rows: int = BATCH_ROWS,
                     progress: Callable[[int, int], None] | None = None) -> int:
    """Store dashboards (one row per latent, the ``FeatureInfo`` columns); returns the rows written.

    A latent's ``manual`` or ``neuronpedia`` label survives a rebuild (unless ``relabel``); ``auto`` ones are
    redrafted. Rows go in transactions of ``batch_rows`` (a real SAE suite has hundreds of thousands of latents:
    one parameter list of all their dashboards would not fit in memory twice); each batch is whole or absent,
    and a build that stops half way is finished by running it again.
    """
    rows = conform_info(rows)
    for start in range(0, rows.height, batch_rows):
        batch = rows.slice(start, batch_rows)
        if not relabel:
            kept = store.run(statement("feature-info-kept-labels"), {"ids": batch["id"].to_list()})
            if kept.height:
                batch = (
                    batch.join(kept.rename({"label": "_label", "label_source": "_source"}), on="id", how="left")
                    .with_columns(pl.coalesce("_label", "label").alias("label"),
                                  pl.coalesce("_source", "label_source").alias("label_source"))
                    .drop("_label", "_source")
                )
        store._run_in_transaction([statement("feature-info-upsert")], {"rows": batch.to_dicts()})
        if progress:
            progress(min(start + batch_rows, rows.height), rows.height)
    log.info("stored %d feature dashboards", rows.height)
    return rows.height


def set_labels(store, labels: pl.DataFrame, *, source: str) -> int:
    """Set labels (columns ``id``, ``label``) from ``source``; latents without a dashboard get a bare row."""
    if source not in LABEL_SOURCES:
        raise FeatureError(f"a label source is one of {', '.join(LABEL_SOURCES)}, not {source!r}")
    rows = []
    for row in labels.iter_rows(named=True):
        dictionary, latent = split_feature_id(row["id"])
        text = clean_label(row["label"])
        rows.append({"id": row["id"], "dictionary": dictionary, "latent": latent, "label": text, "label_source": source})
    if rows:
        store._run_in_transaction([statement("feature-label-set")], {"rows": rows})
    return len(rows)


def clean_label(text: Any) -> str:
    label = " ".join(str(text or "").split())
    if not label:
        raise FeatureError("a label cannot be empty")
    if len(label) > MAX_LABEL:
        raise FeatureError(f"a label is at most {MAX_LABEL} characters (got {len(label)}); keep it short")
    return label


def set_label(store, feature: str, text: str) -> None:
    """Label one feature by hand. The feature must be in a circuit of the store or have a dashboard."""
    split_feature_id(feature)
    if store.run(statement("feature-known"), {"feature": feature}).height == 0:
        raise FeatureError(f"no feature {feature!r} in the store (neither in a circuit nor with a dashboard)")
    set_labels(store, pl.DataFrame({"id": [feature], "label": [text]}), source="manual")


# --- reading -------------------------------------------------------------------------------------------
def get_info(store, feature: str) -> dict[str, Any] | None:
    """A feature's stored row (the dashboard JSON parsed into ``dashboard``), or None."""
    found = store.run(statement("feature-info-get"), {"feature": feature})
    if found.height == 0:
        return None
    row = found.row(0, named=True)
    row["dashboard"] = json.loads(row["dashboard"]) if row.get("dashboard") else None
    return row


def labels_for(store, features: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{feature id: {"label", "label_source", "top_tokens"}}`` for those of ``features`` that have any."""
    ids = sorted({f for f in features if f})
    if not ids:
        return {}
    try:
        found = store.run(statement("feature-labels"), {"ids": ids})
    except SfcError as exc:  # a store written before FeatureInfo existed, opened read-only
        log.info("no feature labels available: %s", exc)
        return {}
    return {r["id"]: r for r in found.iter_rows(named=True)}


def conform_info(rows: pl.DataFrame) -> pl.DataFrame:
    missing = [c for c in ("id", "dictionary", "latent") if c not in rows.columns]
    if missing:
        raise FeatureError(f"dashboard rows need the column {missing[0]!r}")
    return rows.select(
        [(pl.col(c) if c in rows.columns else pl.lit(None)).cast(t).alias(c) for c, t in INFO_SCHEMA.items()]
    )


# --- Neuronpedia explanations -------------------------------------------------------------------------
def read_neuronpedia_explanations(path: str | Path, *, mapping: Mapping[str, str] | None = None,
                                  dictionary: str | None = None) -> pl.DataFrame:
    """Labels (``id``, ``label``) from a Neuronpedia explanations export: a JSON array, or JSON lines (``.gz``
    too), of objects with ``modelId``, ``layer`` (the SAE's Neuronpedia id, e.g. ``6-res-jb``), ``index`` and
    ``description``.

    A feature's id is ``<modelId>/<layer>/<index>`` — the id our SAELens reader gives a dictionary whose
    ``cfg.json`` carries ``neuronpedia_id`` — unless ``mapping`` maps ``<modelId>/<layer>`` (or ``<layer>``) to
    one of our dictionary ids, or ``dictionary`` names the one dictionary the whole file is about. When a
    feature has several explanations the first is kept.
    """
    records = _read_json_records(Path(path))
    mapping = dict(mapping or {})
    out: dict[str, str] = {}
    for i, record in enumerate(records):
        if not isinstance(record, dict):
            raise FeatureError(f"{path}: entry {i + 1} is not a JSON object")
        description = record.get("description") or record.get("explanation")
        index = record.get("index", record.get("feature"))
        if description is None or index is None or not str(index).strip().isdigit():
            raise FeatureError(f"{path}: entry {i + 1} has no 'index' and 'description' (a Neuronpedia explanations export has both)")
        source = f"{record.get('modelId', '')}/{record.get('layer', '')}".strip("/")
        target = dictionary or mapping.get(source) or mapping.get(str(record.get("layer", "")))
        if target is None:
            if not record.get("modelId") or not record.get("layer"):
                raise FeatureError(f"{path}: entry {i + 1} has no modelId/layer; say which dictionary it is for (--dictionary)")
            target = source
        fid = feature_id(target, int(str(index).strip()))
        if fid not in out:
            out[fid] = " ".join(str(description).split())[:MAX_LABEL]
    return pl.DataFrame({"id": list(out), "label": list(out.values())}, schema={"id": pl.String, "label": pl.String})


def _read_json_records(path: Path) -> list[Any]:
    if not path.is_file():
        raise FeatureError(f"{path}: no such file")
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FeatureError(f"{path}: cannot read it as UTF-8 text ({exc})") from None
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise FeatureError(f"{path}: not JSON or JSON lines ({exc.msg} at line {exc.lineno})") from None


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


__all__ = ["draft_label", "top_tokens", "write_dashboards", "set_label", "set_labels", "get_info", "labels_for",
           "read_neuronpedia_explanations", "split_feature_id", "feature_id", "FeatureError", "LABEL_SOURCES"]
