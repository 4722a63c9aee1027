"""The graph schema (docs/graph.md) and the mapping from a bundle to the rows each backend writes.

Shared nodes — ``Model``, ``Dictionary``, ``Feature``, ``ErrorNode``, ``Output``, ``Head``, ``Task`` — exist once
however many circuits use them; a ``Feature`` is keyed by ``<dictionary id>/<index>``, so two circuits
over the same dictionary meet on the same node. Each circuit also gets its own ``CircuitNode`` instances
(one per bundle node and position) carrying the effect, linked to the shared node by ``INSTANCE_OF``;
the circuit's ``EDGE`` relationships join its own instances. Path queries therefore never leave one
circuit, however many circuits share a feature, and cross-circuit questions are one hop away through
``(Circuit)-[:CONTAINS {effect, position}]->(Feature|ErrorNode|Output)``.

One schema for both backends: the embedded store creates typed tables from it, Neo4j creates uniqueness
constraints and indexes from it, and both write the rows :func:`circuit_rows` computes.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl

from . import naming
from .bundle import Bundle
from .naming import HEAD as HEAD_KIND

if TYPE_CHECKING:  # pragma: no cover
    from polars._typing import PolarsDataType

# Cypher types as LadybugDB spells them; Neo4j is schema-free for properties.
STRING, INT64, DOUBLE = "STRING", "INT64", "DOUBLE"
STRING_LIST = "STRING[]"


@dataclass(frozen=True)
class NodeLabel:
    name: str
    key: str
    properties: tuple[tuple[str, str], ...]  # (name, type), key first
    shared: bool  # created once and reused by later circuits (vs. owned by one circuit)

    @property
    def columns(self) -> list[str]:
        return [name for name, _ in self.properties]


@dataclass(frozen=True)
class RelType:
    name: str
    endpoints: tuple[tuple[str, str], ...]  # (from label, to label) pairs
    properties: tuple[tuple[str, str], ...] = ()

    @property
    def columns(self) -> list[str]:
        return [name for name, _ in self.properties]


NODE_LABELS: tuple[NodeLabel, ...] = (
    NodeLabel("Model", "id", (("id", STRING),), shared=True),
    NodeLabel(
        "Dictionary",
        "id",
        (("id", STRING), ("kind", STRING), ("d_dict", INT64), ("site", STRING), ("layer", INT64), ("sha256", STRING)),
        shared=True,
    ),
    NodeLabel(
        "Feature",
        "id",
        (("id", STRING), ("dictionary", STRING), ("latent", INT64), ("site", STRING), ("layer", INT64)),
        shared=True,
    ),
    NodeLabel(
        "ErrorNode", "id", (("id", STRING), ("dictionary", STRING), ("site", STRING), ("layer", INT64)), shared=True
    ),
    NodeLabel("Output", "id", (("id", STRING), ("model", STRING)), shared=True),
    # An attention head of a model (id: naming.model_node_identity(model, naming.head_id(L, H))), shared by every circuit that uses it.
    NodeLabel("Head", "id", (("id", STRING), ("model", STRING), ("layer", INT64), ("head", INT64)), shared=True),
    # A vocabulary entry of a model (id: naming.model_node_identity(model, naming.token_id(t))): an input token of a
    # transcoder circuit, and the far end of de-embedding / logit-lens weights.
    NodeLabel("Token", "id", (("id", STRING), ("model", STRING), ("token", INT64), ("text", STRING)), shared=True),
    NodeLabel("Task", "name", (("name", STRING),), shared=True),
    NodeLabel(
        "Circuit",
        "id",
        (
            ("id", STRING),
            ("task", STRING),
            ("model", STRING),
            ("method", STRING),
            ("metric", STRING),
            ("aggregation", STRING),
            ("n_nodes", INT64),
            ("n_edges", INT64),
            ("n_examples", INT64),
            ("created_at", STRING),
            ("loaded_at", STRING),
            ("manifest", STRING),
        ),
        shared=False,
    ),
    NodeLabel(
        "CircuitNode",
        "uid",
        (
            ("uid", STRING),
            ("circuit", STRING),
            ("node_id", STRING),
            ("kind", STRING),
            ("site", STRING),
            ("layer", INT64),
            ("latent", INT64),  # the bundle's `index` (a reserved word in LadybugDB's Cypher)
            ("position", INT64),
            ("effect", DOUBLE),
            ("feature", STRING),  # global Feature id; null for error and output nodes
            ("identity", STRING),  # id of the shared Feature / ErrorNode / Output node
            ("activation", DOUBLE),  # the node's activation where the method records one (transcoder-paths); else null
        ),
        shared=False,
    ),
)

SHARED_TARGETS = (
    ("Circuit", "Feature"), ("Circuit", "ErrorNode"), ("Circuit", "Output"), ("Circuit", "Head"), ("Circuit", "Token")
)
REL_TYPES: tuple[RelType, ...] = (
    RelType("OF_MODEL", (("Dictionary", "Model"), ("Output", "Model"), ("Head", "Model"), ("Token", "Model"))),
    RelType("IN_DICTIONARY", (("Feature", "Dictionary"), ("ErrorNode", "Dictionary"))),
    RelType("FOR_TASK", (("Circuit", "Task"),)),
    RelType("ON_MODEL", (("Circuit", "Model"),)),
    RelType("USES", (("Circuit", "Dictionary"),), (("site", STRING),)),
    RelType("CONTAINS", SHARED_TARGETS, (("effect", DOUBLE), ("position", INT64))),
    RelType("HAS_NODE", (("Circuit", "CircuitNode"),)),
    RelType(
        "INSTANCE_OF",
        (("CircuitNode", "Feature"), ("CircuitNode", "ErrorNode"), ("CircuitNode", "Output"), ("CircuitNode", "Head"),
         ("CircuitNode", "Token")),
    ),
    # weight_invariant: the input-invariant factor of the weight where the method has one (transcoder-paths)
    # No `circuit` property: both endpoints are instances of one circuit already, and a string on each of a
    # circuit's edges was the largest single cost of loading one (benchmarks/bench_load.py).
    RelType("EDGE", (("CircuitNode", "CircuitNode"),), (("weight", DOUBLE), ("weight_invariant", DOUBLE))),
    # The weight graph of a model and its dictionaries (ingest/weights.py), between shared nodes and outside any
    # circuit: kind resid | ov (Feature -> Feature), embed | embed_ov (Token -> Feature), logit (Feature -> Token);
    # via is the Head id for ov / embed_ov (else null); graph is the WeightGraph id; rank_in / rank_out: 1 = the
    # strongest |weight| of its kind among the kept edges into the target / out of the source (embed_ov: per head;
    # logit: rank_out per sign, so the top and the bottom tokens both start at 1).
    RelType("WEIGHT", (("Feature", "Feature"), ("Token", "Feature"), ("Feature", "Token")),
            (("graph", STRING), ("kind", STRING), ("via", STRING), ("weight", DOUBLE), ("rank_in", INT64),
             ("rank_out", INT64))),
    # Records written outside circuit rows (ingest/shift.py, ingest/sae_scores.py; see RECORD_LABELS below).
    RelType("INTERVENES_ON", (("Intervention", "Circuit"),)),
    RelType("ABLATES", (("Intervention", "Feature"),), (("judgement", STRING), ("reason", STRING), ("effect", DOUBLE))),
    RelType("HAS_SCORE", (("Dictionary", "DictionaryScore"),)),
    # A behaviour discovered by clustering a corpus (ingest/discovery.py) and the circuit computed for it.
    RelType("HAS_CIRCUIT", (("Behaviour", "Circuit"),)),
)
# Annotations: what is known about a dictionary latent independently of any circuit (its dashboard and label,
# sfc_graph/features.py). Keyed by the Feature id and joined to Feature by that id, not by a relationship, so a
# latent has one whether or not a circuit uses it, loads never write it, and deleting the last circuit that
# uses a feature keeps its label. Not part of a circuit's rows.
ANNOTATION_LABELS: tuple[NodeLabel, ...] = (
    # One computed weight graph (ingest/weights.py): its manifest (settings, LayerNorm convention, dictionaries).
    NodeLabel(
        "WeightGraph",
        "id",
        (("id", STRING), ("model", STRING), ("n_feature_edges", INT64), ("n_token_edges", INT64),
         ("created_at", STRING), ("manifest", STRING)),
        shared=False,
    ),
    NodeLabel(
        "FeatureInfo",
        "id",
        (
            ("id", STRING),
            ("dictionary", STRING),
            ("latent", INT64),
            ("site", STRING),
            ("layer", INT64),
            ("label", STRING),
            ("label_source", STRING),  # manual | neuronpedia | auto
            ("density", DOUBLE),  # fraction of corpus tokens on which the latent is active
            ("max_activation", DOUBLE),
            ("mean_activation", DOUBLE),  # mean over the tokens where it is active
            ("top_tokens", STRING_LIST),  # the commonest activating tokens of the top contexts
            ("top_logits", STRING_LIST),  # logit lens (W_dec · W_U): most promoted tokens
            ("bottom_logits", STRING_LIST),  # ... most suppressed tokens
            ("dashboard", STRING),  # JSON: top contexts with per-token activations, logit values, histogram
            ("corpus", STRING),
            ("built_at", STRING),
        ),
        shared=True,
    ),
) + (
    # Records of what was done with circuits and dictionaries, also outside circuit rows and written by their own
    # statements, but linked by relationships: a SHIFT intervention (ingest/shift.py) -[:INTERVENES_ON]-> the
    # classifier's Circuit and -[:ABLATES {judgement, reason, effect}]-> every Feature it zeroed, with the
    # classifier's accuracies before and after; a dictionary quality score (SCR / TPP at one top-N, ingest/
    # sae_scores.py), (Dictionary)-[:HAS_SCORE]->(DictionaryScore), one node per (run, metric, N).
    NodeLabel(
        "Intervention",
        "id",
        (
            ("id", STRING),
            ("kind", STRING),  # shift
            ("circuit", STRING),
            ("task", STRING),
            ("model", STRING),
            ("judge", STRING),  # auto | query | file
            ("n_ablated", INT64),
            ("profession_before", DOUBLE),
            ("profession_after", DOUBLE),
            ("gender_before", DOUBLE),
            ("gender_after", DOUBLE),
            ("worst_group_before", DOUBLE),
            ("worst_group_after", DOUBLE),
            ("results", STRING),  # JSON: the whole table (every method's accuracies) and the settings
            ("created_at", STRING),
        ),
        shared=False,
    ),
    NodeLabel(
        "DictionaryScore",
        "id",
        (
            ("id", STRING),
            ("dictionary", STRING),
            ("metric", STRING),  # scr | tpp
            ("top_n", INT64),
            ("value", DOUBLE),
            ("dataset", STRING),
            ("model", STRING),
            ("run", STRING),
            ("created_at", STRING),
            ("details", STRING),  # JSON: the accuracies the score came from
        ),
        shared=False,
    ),
    # One cluster of contexts found by `sfc discover` (sfc_graph/behaviours.py), -[:HAS_CIRCUIT]-> its circuit, whose
    # task is the behaviour's name: queries and reports treat behaviours like tasks.
    NodeLabel(
        "Behaviour",
        "id",
        (
            ("id", STRING),  # = the circuit's task name: <discovery id>/c<rank>
            ("discovery", STRING),
            ("cluster", INT64),  # rank by size within its discovery, 0 = largest
            ("size", INT64),  # contexts in the cluster
            ("features", STRING),  # act | grad | both
            ("algorithm", STRING),  # spectral | kmeans
            ("corpus", STRING),
            ("model", STRING),
            ("examples", STRING),  # JSON: a few example contexts [{text, answer, label}]
            ("label_counts", STRING),  # JSON: planted labels of its contexts, when the corpus has them
            ("dominant_label", STRING),
            ("label_share", DOUBLE),  # fraction of its contexts with the dominant label
            ("created_at", STRING),
        ),
        shared=False,
    ),
)
LABELS = {label.name: label for label in NODE_LABELS + ANNOTATION_LABELS}
RELS = {rel.name: rel for rel in REL_TYPES}
KIND_LABEL = {"feature": "Feature", "error": "ErrorNode", "output": "Output", HEAD_KIND: "Head", naming.TOKEN: "Token",
              naming.LOGIT: "Output"}


@dataclass(frozen=True)
class CircuitRows:
    """Everything one circuit adds to the graph, as tables.

    ``nodes[label]`` has the label's columns in order; ``rels[(type, from, to)]`` has ``from``, ``to`` (the
    endpoints' keys) and the type's property columns. Shared nodes are listed whether or not the store has
    them already; the store drops those it has before writing.
    """

    circuit_id: str
    nodes: dict[str, pl.DataFrame]
    rels: dict[tuple[str, str, str], pl.DataFrame]

    @property
    def n_rows(self) -> int:
        return sum(f.height for f in self.nodes.values()) + sum(f.height for f in self.rels.values())


def circuit_rows(bundle: Bundle, *, loaded_at: str | None = None) -> CircuitRows:
    """The rows that loading ``bundle`` writes, for every label and relationship type."""
    manifest, cid, model = bundle.manifest, bundle.circuit_id, bundle.model
    dictionaries = manifest["dictionaries"]
    site_to_dict = {site: entry["id"] for site, entry in dictionaries.items()}

    dict_id = naming.dictionary_of_expr(pl.col("node_id"), site_to_dict)
    identity = naming.identity_expr(pl.col("kind"), pl.col("node_id"), pl.col("dictionary"), pl.col("index"),
                                    model=model)
    nodes = bundle.nodes.with_columns(dict_id.alias("dictionary")).with_columns(
        identity.alias("identity"),
        naming.instance_uid_expr(cid, pl.col("node_id"), pl.col("position")).alias("uid"),
        pl.lit(cid).alias("circuit"),
    )
    nodes = nodes.with_columns(
        pl.when(pl.col("kind") == "feature").then(pl.col("identity")).otherwise(None).alias("feature"),
        _optional(nodes, "activation", pl.Float64),
    )

    dict_rows = pl.DataFrame(
        {
            "id": [e["id"] for e in dictionaries.values()],
            "kind": [str(e.get("kind", "sae")) for e in dictionaries.values()],
            "d_dict": [_int_or_none(e.get("d_dict")) for e in dictionaries.values()],
            "site": [naming.site_of_key(s)[0] for s in dictionaries],
            "layer": [naming.site_of_key(s)[1] for s in dictionaries],
            "sha256": [e.get("sha256") for e in dictionaries.values()],
        },
        schema={"id": pl.String, "kind": pl.String, "d_dict": pl.Int64, "site": pl.String, "layer": pl.Int64,
                "sha256": pl.String},
    ).unique("id", keep="first", maintain_order=True)
    features = nodes.filter(pl.col("kind") == "feature")
    errors = nodes.filter(pl.col("kind") == "error")
    outputs = nodes.filter(pl.col("kind").is_in([k for k, label in KIND_LABEL.items() if label == "Output"]))
    heads = nodes.filter(pl.col("kind") == HEAD_KIND)
    tokens = nodes.filter(pl.col("kind") == naming.TOKEN)

    node_tables = {
        "Model": pl.DataFrame({"id": [model]}),
        "Dictionary": dict_rows,
        "Feature": features.select(
            pl.col("identity").alias("id"), "dictionary", pl.col("index").alias("latent"), "site", "layer"
        ).unique("id", maintain_order=True),
        "ErrorNode": errors.select(pl.col("identity").alias("id"), "dictionary", "site", "layer").unique(
            "id", maintain_order=True
        ),
        "Output": outputs.select(pl.col("identity").alias("id"), pl.lit(model).alias("model")).unique(
            "id", maintain_order=True
        ),
        "Head": heads.select(
            pl.col("identity").alias("id"), pl.lit(model).alias("model"), "layer", pl.col("index").alias("head")
        ).unique("id", maintain_order=True),
        "Token": tokens.select(
            pl.col("identity").alias("id"), pl.lit(model).alias("model"), pl.col("index").alias("token"),
            (pl.col("text") if "text" in tokens.columns else pl.lit(None, dtype=pl.String)).alias("text"),
        ).unique("id", maintain_order=True),
        "Task": pl.DataFrame({"name": [bundle.task]}),
        "Circuit": pl.DataFrame(
            [
                {
                    "id": cid,
                    "task": bundle.task,
                    "model": model,
                    "method": manifest["method"],
                    "metric": manifest.get("metric"),
                    "aggregation": manifest.get("aggregation"),
                    "n_nodes": bundle.nodes.height,
                    "n_edges": bundle.edges.height,
                    "n_examples": _int_or_none(manifest.get("n_examples")),
                    "created_at": manifest.get("created_at"),
                    "loaded_at": loaded_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "manifest": json.dumps(manifest, sort_keys=True),
                }
            ],
            schema={name: _polars_type(t) for name, t in LABELS["Circuit"].properties},
        ),
        "CircuitNode": nodes.rename({"index": "latent"}).select(LABELS["CircuitNode"].columns),
    }
    node_tables = {
        name: frame.select([pl.col(c).cast(_polars_type(t)) for c, t in LABELS[name].properties])
        for name, frame in node_tables.items()
    }

    uid = naming.instance_uid_expr(cid, pl.col("node_id"), pl.col("position"))
    edges = bundle.edges.select(
        naming.instance_uid_expr(cid, pl.col("src"), pl.col("src_position")).alias("from"),
        naming.instance_uid_expr(cid, pl.col("dst"), pl.col("dst_position")).alias("to"),
        pl.col("weight"),
        _optional(bundle.edges, "weight_invariant", pl.Float64),
    )
    # Several kinds may share a label (output and logit nodes are both Outputs): group by label.
    by_label = {
        label: nodes.filter(pl.col("kind").is_in([k for k, other in KIND_LABEL.items() if other == label]))
        for label in dict.fromkeys(KIND_LABEL.values())
    }
    rels: dict[tuple[str, str, str], pl.DataFrame] = {
        ("OF_MODEL", "Dictionary", "Model"): dict_rows.select(pl.col("id").alias("from"), pl.lit(model).alias("to")),
        ("OF_MODEL", "Output", "Model"): node_tables["Output"].select(pl.col("id").alias("from"), pl.col("model").alias("to")),
        ("OF_MODEL", "Head", "Model"): node_tables["Head"].select(pl.col("id").alias("from"), pl.col("model").alias("to")),
        ("OF_MODEL", "Token", "Model"): node_tables["Token"].select(pl.col("id").alias("from"), pl.col("model").alias("to")),
        ("IN_DICTIONARY", "Feature", "Dictionary"): node_tables["Feature"].select(
            pl.col("id").alias("from"), pl.col("dictionary").alias("to")
        ),
        ("IN_DICTIONARY", "ErrorNode", "Dictionary"): node_tables["ErrorNode"].select(
            pl.col("id").alias("from"), pl.col("dictionary").alias("to")
        ),
        ("FOR_TASK", "Circuit", "Task"): pl.DataFrame({"from": [cid], "to": [bundle.task]}),
        ("ON_MODEL", "Circuit", "Model"): pl.DataFrame({"from": [cid], "to": [model]}),
        ("USES", "Circuit", "Dictionary"): pl.DataFrame(
            {"from": [cid] * len(dictionaries), "to": [e["id"] for e in dictionaries.values()],
             "site": list(dictionaries)},
            schema={"from": pl.String, "to": pl.String, "site": pl.String},
        ),
        ("HAS_NODE", "Circuit", "CircuitNode"): nodes.select(pl.lit(cid).alias("from"), pl.col("uid").alias("to")),
        ("EDGE", "CircuitNode", "CircuitNode"): edges,
    }
    for label, frame in by_label.items():
        rels[("CONTAINS", "Circuit", label)] = frame.select(
            pl.lit(cid).alias("from"), pl.col("identity").alias("to"), "effect", "position"
        )
        rels[("INSTANCE_OF", "CircuitNode", label)] = frame.select(
            uid.alias("from"), pl.col("identity").alias("to")
        )
    # Shared-node relationships (OF_MODEL, IN_DICTIONARY) are only written together with the node they start from.
    return CircuitRows(circuit_id=cid, nodes=node_tables, rels=rels)


def merge_rows(parts: list[CircuitRows]) -> CircuitRows:
    """Several circuits' rows as one set, each shared node (and its OF_MODEL/IN_DICTIONARY link) once."""
    nodes = {}
    for label in NODE_LABELS:
        frame = pl.concat([part.nodes[label.name] for part in parts])
        nodes[label.name] = frame.unique(label.key, keep="first", maintain_order=True) if label.shared else frame
    rels = {}
    for key in parts[0].rels:
        frame = pl.concat([part.rels[key] for part in parts])
        rels[key] = frame.unique(["from", "to"], maintain_order=True) if shared_rel_owner(key) else frame
    return CircuitRows(",".join(part.circuit_id for part in parts), nodes, rels)


def shared_rel_owner(rel_key: tuple[str, str, str]) -> str | None:
    """The shared label whose new nodes a relationship belongs to (written only for new nodes), if any."""
    name, src, _ = rel_key
    return src if name in ("OF_MODEL", "IN_DICTIONARY") else None


def _polars_type(cypher_type: str) -> PolarsDataType:
    types: dict[str, PolarsDataType] = {STRING: pl.String, INT64: pl.Int64, DOUBLE: pl.Float64,
                                        STRING_LIST: pl.List(pl.String)}
    return types[cypher_type]


def _optional(frame: pl.DataFrame, column: str, dtype: PolarsDataType) -> pl.Expr:
    """An optional bundle column (the contract lets producers add columns), null where a bundle lacks it."""
    return (pl.col(column) if column in frame.columns else pl.lit(None)).cast(dtype).alias(column)


def _int_or_none(value) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
