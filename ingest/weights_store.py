"""The weight graph on disk and in a store.

On disk a weight graph is a directory, like a circuit bundle the source of truth: ``manifest.json`` (settings,
LayerNorm convention, dictionaries, file hashes), ``feature_edges.parquet``, ``token_edges.parquet`` and
``tokens.parquet`` (see :mod:`ingest.weights` for the columns). It is written beside its destination and
renamed, so it appears whole or not at all.

In a store it becomes ``WEIGHT`` relationships between the *shared* nodes every circuit also uses — ``Feature``
(``<dictionary id>/<index>``) and ``Token`` (``<model>/token/<t>``) — plus one ``WeightGraph`` record holding the
manifest. A circuit over the same dictionaries therefore meets the weight graph on its features: "what does
this feature read, regardless of input" is one hop from any circuit node (``weight-neighbors``,
``de-embedding``, ``explain-edge``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from sfc_graph import naming
from sfc_graph.bundle import sha256_file
from sfc_graph.errors import BundleError
from sfc_graph.graph import LABELS, NODE_LABELS, CircuitRows
from sfc_graph.store.statements import statement, statements

from .weights import FEATURE_EDGE_SCHEMA, TOKEN_EDGE_SCHEMA, WeightGraph

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FILES = {"feature_edges.parquet": FEATURE_EDGE_SCHEMA, "token_edges.parquet": TOKEN_EDGE_SCHEMA,
         "tokens.parquet": {"token": pl.Int32, "text": pl.String}}
REQUIRED = ("schema_version", "weight_graph_id", "model", "dictionaries", "settings", "layernorm", "files")


def write_weight_graph(graph: WeightGraph, out_dir: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise BundleError(f"{out}: already exists; choose another --out or remove it first")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tables = {"feature_edges.parquet": graph.feature_edges, "token_edges.parquet": graph.token_edges,
                  "tokens.parquet": graph.tokens}
        for name, frame in tables.items():
            frame.write_parquet(staging / name)
        manifest = dict(graph.manifest)
        manifest.setdefault("created_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
        manifest["files"] = {name: sha256_file(staging / name) for name in tables}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def read_weight_graph(path: str | os.PathLike[str]) -> WeightGraph:
    """Read and validate a weight-graph directory; one sentence naming the file for anything wrong."""
    root = Path(path)
    manifest_path = root / MANIFEST
    if not root.is_dir() or not manifest_path.is_file():
        raise BundleError(f"{root}: not a weight graph (a directory with {MANIFEST} and "
                          f"{', '.join(FILES)}; write one with `sfc weights build`)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path}: the manifest must be a JSON object")
    missing = [key for key in REQUIRED if key not in manifest]
    if missing:
        raise BundleError(f"{manifest_path}: missing required field(s) {', '.join(missing)}")
    tables = {}
    for name, schema in FILES.items():
        file = root / name
        if not file.is_file():
            raise BundleError(f"{file}: missing, although every weight graph has it")
        if sha256_file(file) != manifest["files"].get(name):
            raise BundleError(f"{file}: sha256 differs from the manifest's; the file was changed after it was written")
        try:
            frame = pl.read_parquet(file)
        except Exception as exc:  # polars/pyarrow raise many types for a damaged file
            raise BundleError(f"{file}: not a readable Parquet file ({str(exc).splitlines()[0][:160]})") from None
        for column, dtype in schema.items():
            if column not in frame.columns or frame.schema[column] != dtype:
                raise BundleError(f"{file}: column {column!r} missing or not {dtype}")
        if "weight" in frame.columns and frame.filter(~pl.col("weight").is_finite()).height:
            raise BundleError(f"{file}: column 'weight' has non-finite values")
        tables[name] = frame
    return WeightGraph(manifest=manifest, feature_edges=tables["feature_edges.parquet"],
                       token_edges=tables["token_edges.parquet"], tokens=tables["tokens.parquet"])


def weight_graph_rows(graph: WeightGraph) -> CircuitRows:
    """The rows loading ``graph`` writes: shared nodes (features, tokens, heads, dictionaries, the model) and
    the ``WEIGHT`` relationships, in the shape the stores write circuits in."""
    manifest = graph.manifest
    model, gid = manifest["model"], manifest["weight_graph_id"]
    dict_ids = {site: entry["id"] for site, entry in manifest["dictionaries"].items()}
    transcoder_ids = {int(naming.parse_site_name(site)[1]): entry_id for site, entry_id in dict_ids.items()
                      if naming.parse_site_name(site)[0] == "mlp"}

    def feature_id(layer_col: str, index_col: str) -> pl.Expr:
        dictionary = pl.col(layer_col).cast(pl.Int64).replace_strict(transcoder_ids, return_dtype=pl.String)
        return dictionary + "/" + pl.col(index_col).cast(pl.String)

    def via_id() -> pl.Expr:
        head = pl.lit(f"{model}/{naming.HEAD_SITE}_") + pl.col("via_layer").cast(pl.String) + \
            pl.lit(f"/{naming.HEAD_SUFFIX_PREFIX}") + pl.col("via_head").cast(pl.String)
        return pl.when(pl.col("via_layer") >= 0).then(head).otherwise(None)

    token_id = pl.lit(f"{model}/{naming.TOKEN_PREFIX}/") + pl.col("token").cast(pl.String)
    fe = graph.feature_edges.select(
        feature_id("src_layer", "src_index").alias("from"), feature_id("dst_layer", "dst_index").alias("to"),
        pl.lit(gid).alias("graph"), "kind", via_id().alias("via"), pl.col("weight").cast(pl.Float64),
        pl.col("rank").cast(pl.Int64).alias("rank_in"), _rank_over(["src_layer", "src_index", "kind"]).alias("rank_out"),
    )
    te = graph.token_edges.with_columns(
        (pl.col("site").replace_strict(dict_ids, return_dtype=pl.String) + "/" + pl.col("index").cast(pl.String))
        .alias("feature"), token_id.alias("token_node"),
    )
    into = te.filter(pl.col("kind") != "logit").select(
        pl.col("token_node").alias("from"), pl.col("feature").alias("to"), pl.lit(gid).alias("graph"), "kind",
        via_id().alias("via"), pl.col("weight").cast(pl.Float64), pl.col("rank").cast(pl.Int64).alias("rank_in"),
        _rank_over(["token", "kind", "via_layer", "via_head"]).alias("rank_out"))
    out = te.filter(pl.col("kind") == "logit").select(
        pl.col("feature").alias("from"), pl.col("token_node").alias("to"), pl.lit(gid).alias("graph"), "kind",
        pl.lit(None, dtype=pl.String).alias("via"), pl.col("weight").cast(pl.Float64),
        _rank_over(["token", "kind"]).alias("rank_in"), pl.col("rank").cast(pl.Int64).alias("rank_out"))

    features = pl.concat([
        graph.feature_edges.select(pl.col("src_layer").alias("layer"), pl.col("src_index").alias("latent")),
        graph.feature_edges.select(pl.col("dst_layer").alias("layer"), pl.col("dst_index").alias("latent")),
    ]).cast({"layer": pl.Int64, "latent": pl.Int64}).with_columns(
        pl.lit("mlp").alias("site"),
        pl.col("layer").replace_strict(transcoder_ids, return_dtype=pl.String).alias("dictionary"))
    lens_features = graph.token_edges.select(
        pl.col("site").replace_strict(dict_ids, return_dtype=pl.String).alias("dictionary"),
        pl.col("index").cast(pl.Int64).alias("latent"),
        naming.site_kind_expr(pl.col("site")).alias("site"), naming.site_layer_expr(pl.col("site")).alias("layer"))
    features = pl.concat([features.select("dictionary", "latent", "site", "layer"),
                          lens_features.select("dictionary", "latent", "site", "layer")]).unique(maintain_order=True)
    features = features.select((pl.col("dictionary") + "/" + pl.col("latent").cast(pl.String)).alias("id"),
                               "dictionary", "latent", "site", "layer").unique("id", maintain_order=True)
    heads = pl.DataFrame(
        {"layer": [layer for layer in range(int(manifest["n_layers"])) for _ in range(int(manifest["n_heads"]))],
         "head": [head for _ in range(int(manifest["n_layers"])) for head in range(int(manifest["n_heads"]))]},
        schema={"layer": pl.Int64, "head": pl.Int64},
    ).select(
        (pl.lit(f"{model}/{naming.HEAD_SITE}_") + pl.col("layer").cast(pl.String) + pl.lit(f"/{naming.HEAD_SUFFIX_PREFIX}")
         + pl.col("head").cast(pl.String)).alias("id"), pl.lit(model).alias("model"), "layer", "head")
    tokens = graph.tokens.select(token_id.alias("id"), pl.lit(model).alias("model"),
                                 pl.col("token").cast(pl.Int64), "text")
    dictionaries = pl.DataFrame(
        {"id": list(dict_ids.values()),
         "kind": [str(e.get("kind", "sae")) for e in manifest["dictionaries"].values()],
         "d_dict": [e.get("d_dict") for e in manifest["dictionaries"].values()],
         "site": [naming.parse_site_name(s)[0] for s in dict_ids],
         "layer": [naming.parse_site_name(s)[1] for s in dict_ids],
         "sha256": [e.get("sha256") for e in manifest["dictionaries"].values()]},
        schema={"id": pl.String, "kind": pl.String, "d_dict": pl.Int64, "site": pl.String, "layer": pl.Int64,
                "sha256": pl.String},
    )
    nodes = {label.name: _empty(label.name) for label in NODE_LABELS}
    nodes.update({"Model": pl.DataFrame({"id": [model]}), "Dictionary": dictionaries, "Feature": features,
                  "Head": heads, "Token": tokens})
    nodes = {name: frame.select([pl.col(c).cast(_dtype(t)) for c, t in LABELS[name].properties])
             for name, frame in nodes.items()}
    rels = {
        ("OF_MODEL", "Dictionary", "Model"): dictionaries.select(pl.col("id").alias("from"), pl.lit(model).alias("to")),
        ("OF_MODEL", "Head", "Model"): heads.select(pl.col("id").alias("from"), pl.lit(model).alias("to")),
        ("OF_MODEL", "Token", "Model"): tokens.select(pl.col("id").alias("from"), pl.lit(model).alias("to")),
        ("IN_DICTIONARY", "Feature", "Dictionary"): features.select(pl.col("id").alias("from"),
                                                                    pl.col("dictionary").alias("to")),
        ("WEIGHT", "Feature", "Feature"): fe,
        ("WEIGHT", "Token", "Feature"): into,
        ("WEIGHT", "Feature", "Token"): out,
    }
    return CircuitRows(circuit_id=gid, nodes=nodes, rels=rels)


def _rank_over(group: list[str]) -> pl.Expr:
    """1 for the strongest |weight| within ``group`` (ties in table order)."""
    return pl.col("weight").abs().rank("ordinal", descending=True).over(group).cast(pl.Int64)


def _empty(label: str) -> pl.DataFrame:
    return pl.DataFrame(schema={c: _dtype(t) for c, t in LABELS[label].properties})


def _dtype(cypher_type: str) -> pl.DataType:
    return {"STRING": pl.String, "INT64": pl.Int64, "DOUBLE": pl.Float64}[cypher_type]


def has_weight_graph(store, graph_id: str) -> bool:
    return store.run(statement("weight-graph-exists"), {"graph": graph_id}).height > 0


def load_weight_graph(store, graph: WeightGraph, *, progress=None) -> bool:
    """Write ``graph`` into ``store``; False (and nothing written) when the store already has it.

    The relationships go in one transaction, the ``WeightGraph`` record after them: a load interrupted between
    the two leaves relationships without a record, which the next load removes before writing again.
    """
    gid = graph.manifest["weight_graph_id"]
    if has_weight_graph(store, gid):
        log.info("weight graph %s already in the store; skipped", gid)
        return False
    store._run_in_transaction(statements("weight-graph-delete"), {"graph": gid})  # leftovers of an interrupted load
    rows = weight_graph_rows(graph)
    store._write_rows(store._only_new_shared_nodes(rows), progress)
    manifest = graph.manifest
    store._run_in_transaction(statements("weight-graph-create"), {
        "graph": gid, "model": manifest["model"], "n_feature_edges": graph.feature_edges.height,
        "n_token_edges": graph.token_edges.height, "created_at": manifest.get("created_at"),
        "manifest": json.dumps(manifest, sort_keys=True),
    })
    log.info("loaded weight graph %s (%d feature edges, %d token edges)", gid, graph.feature_edges.height,
             graph.token_edges.height)
    return True


def weight_graphs(store) -> pl.DataFrame:
    return store.run(statement("weight-graph-list"))


def delete_weight_graph(store, graph_id: str) -> None:
    from sfc_graph.errors import QueryError

    if not has_weight_graph(store, graph_id):
        raise QueryError(f"no weight graph {graph_id!r} in the store (see `sfc weights list`)")
    store._run_in_transaction(statements("weight-graph-delete"), {"graph": graph_id})


def manifest_of(store, graph_id: str) -> dict[str, Any]:
    found = store.run(statement("weight-graph-exists"), {"graph": graph_id})
    return json.loads(found["manifest"][0]) if found.height else {}
