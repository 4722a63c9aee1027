"""The circuit bundle: the hand-off between computing a circuit and loading it (docs/bundle.md).

A bundle is a directory with ``manifest.json``, ``nodes.parquet`` and ``edges.parquet``. It is the source
of truth; the database is an index that can be rebuilt from bundles. Any producer that follows the contract
can write one; :func:`read_bundle` refuses anything else with one sentence naming the file and the problem.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from . import naming
from .errors import BundleError
from .safe_write import check_destination, non_finite_fields, staged_directory, strict_json, strict_loads
from .naming import HEAD as HEAD_KIND
from .naming import HEAD_SITE

if TYPE_CHECKING:  # pragma: no cover
    from polars._typing import PolarsDataType

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
NODES = "nodes.parquet"
EDGES = "edges.parquet"

NODE_COLUMNS: dict[str, PolarsDataType] = {
    "node_id": pl.String,
    "kind": pl.String,
    "site": pl.String,
    "layer": pl.Int64,
    "index": pl.Int64,
    "position": pl.Int64,
    "effect": pl.Float64,
}
EDGE_COLUMNS: dict[str, PolarsDataType] = {
    "src": pl.String,
    "dst": pl.String,
    "src_position": pl.Int64,
    "dst_position": pl.Int64,
    "weight": pl.Float64,
}
NODE_KINDS = ("feature", "error", "output", HEAD_KIND, naming.TOKEN, naming.LOGIT)  # head: attention head; token: an input token
NODE_SITES = ("embed", "attn", "mlp", "resid", "output")
REQUIRED_MANIFEST_FIELDS = ("schema_version", "circuit_id", "task", "model", "dictionaries", "method", "files")
OUTPUT_NODE = "output"


@dataclass(frozen=True)
class Bundle:
    """A validated circuit: its manifest and its node and edge tables."""

    manifest: dict[str, Any]
    nodes: pl.DataFrame
    edges: pl.DataFrame
    path: Path | None = None

    @property
    def circuit_id(self) -> str:
        return self.manifest["circuit_id"]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def model(self) -> str:
        return self.manifest["model"]

    def feature_identity(self) -> pl.Series:
        """Global identity of each node (``<dictionary id>/<index>``; null for error and output nodes)."""
        return _feature_identity(self.nodes, self.manifest["dictionaries"])

    def identity(self) -> pl.Series:
        """Id of the graph node each bundle node stands for, shared across circuits (:mod:`sfc_graph.naming`):
        ``<dictionary id>/<index>``, ``<dictionary id>/err``, ``<model>/output``, ``<model>/<node_id>``."""
        mapping = {site: entry["id"] for site, entry in self.manifest["dictionaries"].items()}
        dictionary = naming.dictionary_of_expr(pl.col("node_id"), mapping)
        return self.nodes.select(
            naming.identity_expr(pl.col("kind"), pl.col("node_id"), dictionary, pl.col("index"), model=self.model)
            .alias("identity")
        ).to_series()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate only a bundle's manifest (cheap: enough to know which circuit it holds)."""
    root = Path(path)
    if not root.exists():
        raise BundleError(f"{root}: no such bundle directory")
    if not root.is_dir():
        raise BundleError(f"{root}: a bundle is a directory holding {MANIFEST}, {NODES} and {EDGES}")
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{manifest_path}: missing; every bundle needs a manifest")
    try:
        manifest = strict_loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: not valid JSON ({exc})") from None
    validate_manifest(manifest, where=str(manifest_path))
    return manifest


def read_bundle(path: str | os.PathLike[str]) -> Bundle:
    """Read and fully validate the bundle in directory ``path``."""
    root = Path(path)
    manifest = read_manifest(root)
    manifest_path = root / MANIFEST
    for name in (NODES, EDGES):
        file = root / name
        if not file.is_file():
            raise BundleError(f"{file}: missing, although the manifest lists it")
        expected = manifest["files"].get(name)
        if not isinstance(expected, str):
            raise BundleError(f"{manifest_path}: 'files' has no sha256 for {name}")
        actual = sha256_file(file)
        if actual != expected:
            raise BundleError(
                f"{file}: sha256 is {actual[:12]}… but the manifest says {expected[:12]}…; "
                "the file was changed or corrupted after the bundle was written"
            )
    nodes = _read_parquet(root / NODES)
    edges = _read_parquet(root / EDGES)
    validate_tables(manifest, nodes, edges, where=str(root))
    return Bundle(manifest=manifest, nodes=nodes, edges=edges, path=root)


def write_bundle(
    out_dir: str | os.PathLike[str],
    manifest: dict[str, Any],
    nodes: pl.DataFrame,
    edges: pl.DataFrame,
    *,
    overwrite: bool = False,
) -> Bundle:
    """Validate and write a bundle; fills ``schema_version``, ``files``, ``created_at`` and ``producer``.

    The directory appears complete or not at all: it is written beside its destination and renamed.
    With ``overwrite`` an existing *bundle* is replaced; anything else at ``out_dir`` is refused
    (:func:`check_bundle_destination`), as is any number in the manifest that is not finite.
    """
    from . import __version__

    out = Path(out_dir)
    manifest = dict(manifest)
    manifest.setdefault("schema_version", SCHEMA_VERSION)
    manifest.setdefault("created_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    manifest.setdefault("producer", f"sfc-graph {__version__}")
    manifest["files"] = {NODES: "", EDGES: ""}
    nodes = nodes.select([pl.col(c).cast(t) for c, t in NODE_COLUMNS.items()] + _extra(nodes, NODE_COLUMNS))
    edges = edges.select([pl.col(c).cast(t) for c, t in EDGE_COLUMNS.items()] + _extra(edges, EDGE_COLUMNS))
    validate_manifest(manifest, where=str(out / MANIFEST))
    validate_tables(manifest, nodes, edges, where=str(out))
    check_bundle_destination(out, overwrite=overwrite)
    with staged_directory(out, replace=overwrite) as staging:
        nodes.write_parquet(staging / NODES)
        edges.write_parquet(staging / EDGES)
        manifest["files"] = {NODES: sha256_file(staging / NODES), EDGES: sha256_file(staging / EDGES)}
        text = strict_json(manifest, where=str(out / MANIFEST), indent=2, sort_keys=False)
        (staging / MANIFEST).write_text(text + "\n", encoding="utf-8")
    return Bundle(manifest=manifest, nodes=nodes, edges=edges, path=out)


def check_bundle_destination(out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Refuse a bundle destination that cannot be written or must not be replaced; call it before computing.

    ``overwrite`` replaces only a bundle (a directory holding a manifest and nothing but files), never
    the current directory, one of its parents, or any other directory.
    """
    return check_destination(out, overwrite=overwrite, replaceable=_not_a_bundle, what="bundle")


def _not_a_bundle(path: Path) -> str | None:
    """None when ``path`` looks like a bundle written by a producer, else why it does not."""
    if not (path / MANIFEST).is_file():
        return f"it has no {MANIFEST}"
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return f"its {MANIFEST} is not JSON"
    if not isinstance(manifest, dict) or "circuit_id" not in manifest or "files" not in manifest:
        return f"its {MANIFEST} is not a bundle manifest"
    subdirs = [p.name for p in path.iterdir() if p.is_dir() and not p.is_symlink()]
    if subdirs:
        return f"it holds the directory {subdirs[0]!r}; a bundle holds only files"
    return None


def validate_manifest(manifest: Any, *, where: str) -> None:
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: the manifest must be a JSON object")
    missing = [key for key in REQUIRED_MANIFEST_FIELDS if key not in manifest]
    if missing:
        raise BundleError(f"{where}: missing required field(s) {', '.join(missing)}")
    version = manifest["schema_version"]
    if version != SCHEMA_VERSION:
        raise BundleError(
            f"{where}: schema_version {version!r} is not supported (this sfc-graph reads version {SCHEMA_VERSION})"
        )
    for key in ("circuit_id", "task", "model", "method"):
        if not isinstance(manifest[key], str) or not manifest[key].strip():
            raise BundleError(f"{where}: {key} must be a non-empty string")
    dictionaries = manifest["dictionaries"]
    if not isinstance(dictionaries, dict):
        raise BundleError(f"{where}: dictionaries must be an object mapping site names to dictionaries")
    for site, entry in dictionaries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("id"), str) or not entry["id"]:
            raise BundleError(f"{where}: dictionaries[{site!r}] needs a string 'id'")
    if not isinstance(manifest["files"], dict):
        raise BundleError(f"{where}: files must map file names to sha256 digests")
    for key in ("evaluation",):
        if key in manifest and not isinstance(manifest[key], list):
            raise BundleError(f"{where}: {key} must be a list")
    bad = non_finite_fields(manifest)
    if bad:
        raise BundleError(f"{where}: {', '.join(bad[:5])} {'is' if len(bad) == 1 else 'are'} not a finite number")


def validate_tables(manifest: dict[str, Any], nodes: pl.DataFrame, edges: pl.DataFrame, *, where: str) -> None:
    """Check the node and edge tables against the contract and against each other."""
    nodes_file, edges_file = f"{where}/{NODES}", f"{where}/{EDGES}"
    _check_columns(nodes, NODE_COLUMNS, nodes_file)
    _check_columns(edges, EDGE_COLUMNS, edges_file)
    _check_not_null(nodes, [c for c in NODE_COLUMNS if c != "index"], nodes_file)
    _check_not_null(edges, list(EDGE_COLUMNS), edges_file)
    _check_finite(nodes, "effect", nodes_file)
    _check_finite(edges, "weight", edges_file)

    bad_kind = nodes.filter(~pl.col("kind").is_in(NODE_KINDS))
    if bad_kind.height:
        raise BundleError(f"{nodes_file}: kind {bad_kind['kind'][0]!r} is not one of {', '.join(NODE_KINDS)}")
    bad_site = nodes.filter(~pl.col("site").is_in(NODE_SITES))
    if bad_site.height:
        raise BundleError(f"{nodes_file}: site {bad_site['site'][0]!r} is not one of {', '.join(NODE_SITES)}")
    _check_node_ids(nodes, manifest["dictionaries"], nodes_file)

    duplicated = nodes.select("node_id", "position").filter(pl.struct("node_id", "position").is_duplicated())
    if duplicated.height:
        row = duplicated.row(0)
        raise BundleError(f"{nodes_file}: node {row[0]!r} at position {row[1]} appears more than once")

    keys = nodes.select(pl.col("node_id"), pl.col("position"))
    for end in ("src", "dst"):
        ends = edges.select(pl.col(end).alias("node_id"), pl.col(f"{end}_position").alias("position"))
        dangling = ends.join(keys, on=["node_id", "position"], how="anti")
        if dangling.height:
            node_id, position = dangling.row(0)
            raise BundleError(
                f"{edges_file}: edge {end} {node_id!r} at position {position} is not a node of {NODES} "
                f"({dangling.height} dangling endpoint(s))"
            )
    dup_edges = edges.filter(pl.struct("src", "src_position", "dst", "dst_position").is_duplicated())
    if dup_edges.height:
        raise BundleError(f"{edges_file}: edge {dup_edges['src'][0]!r} -> {dup_edges['dst'][0]!r} appears more than once")


def _feature_identity(nodes: pl.DataFrame, dictionaries: dict[str, Any]) -> pl.Series:
    mapping = {site: entry["id"] for site, entry in dictionaries.items()}
    dictionary = naming.dictionary_of_expr(pl.col("node_id"), mapping)
    return nodes.select(
        naming.feature_identity_expr(pl.col("kind"), dictionary, pl.col("index")).alias("feature")
    ).to_series()


def _check_node_ids(nodes: pl.DataFrame, dictionaries: dict[str, Any], file: str) -> None:
    """Each node id must agree with its kind/site/layer/index columns and name a known dictionary."""
    expected = naming.node_id_expr(pl.col("kind"), pl.col("site"), pl.col("layer"), pl.col("index"))
    table = nodes.select("node_id", "kind", "site", "layer", "index").with_columns(
        naming.prefix_expr(pl.col("node_id")).alias("prefix"), expected.alias("expected_id")
    )
    checks = [
        (
            (pl.col("kind") == "output")
            & ((pl.col("node_id") != OUTPUT_NODE) | (pl.col("site") != "output") | (pl.col("layer") != -1)),
            "an output node must have node_id 'output', site 'output' and layer -1",
        ),
        (~pl.col("kind").is_in(["output", naming.LOGIT]) & (pl.col("site") == "output"),
         "only output and logit nodes may have site 'output'"),
        ((pl.col("kind") == naming.LOGIT) & ((pl.col("site") != "output") | (pl.col("layer") != -1)),
         "a logit node has site 'output' and layer -1"),
        ((pl.col("kind") == naming.LOGIT) & (pl.col("index").is_null() | (pl.col("index") < 0)),
         "a logit node needs an index >= 0 (the token id)"),
        ((pl.col("kind") == "feature") & pl.col("index").is_null(), "a feature node needs an index"),
        ((pl.col("kind") == "feature") & (pl.col("index") < 0), "a feature index must be >= 0"),
        ((pl.col("kind") == HEAD_KIND) & (pl.col("site") != HEAD_SITE), f"a head node has site {HEAD_SITE!r}"),
        ((pl.col("kind") == HEAD_KIND) & pl.col("index").is_null(), "a head node needs an index (the head number)"),
        ((pl.col("kind") == HEAD_KIND) & (pl.col("index") < 0), "a head index must be >= 0"),
        ((pl.col("kind") == naming.TOKEN) & (pl.col("site") != "embed"), "a token node has site 'embed'"),
        ((pl.col("kind") == naming.TOKEN) & pl.col("index").is_null(), "a token node needs an index (the token id)"),
        ((pl.col("kind") == naming.TOKEN) & (pl.col("index") < 0), "a token index must be >= 0"),
        (~pl.col("kind").is_in(["feature", HEAD_KIND, naming.TOKEN, naming.LOGIT]) & pl.col("index").is_not_null(),
         "error and output nodes have a null index"),
        ((pl.col("site") == "embed") & (pl.col("layer") != -1), "embed nodes have layer -1"),
        (
            pl.col("site").is_in(["attn", "mlp", "resid"]) & (pl.col("layer") < 0),
            "attn, mlp and resid nodes need a layer >= 0",
        ),
        (
            (pl.col("kind") != "output") & (pl.col("node_id") != pl.col("expected_id")),
            "node_id must be '<site>_<layer>/<index>' for features, '<site>_<layer>/err' for errors or "
            "'attn_<layer>/h<head>' for heads, 'token/<id>' for tokens or 'logit/<id>' for logits, matching the site, layer and index columns (docs/bundle.md)",
        ),
    ]
    for condition, message in checks:
        bad = table.filter(condition.fill_null(True))
        if bad.height:
            raise BundleError(f"{file}: node {bad['node_id'][0]!r}: {message}")
    # Heads are parts of the model, not latents of a dictionary: they need no manifest entry.
    in_dictionary = [name for name, kind in naming.NODE_KINDS.items() if kind.in_dictionary]
    unknown = table.filter(pl.col("kind").is_in(in_dictionary) & ~pl.col("prefix").is_in(list(dictionaries)))
    if unknown.height:
        raise BundleError(
            f"{file}: node {unknown['node_id'][0]!r} names site {unknown['prefix'][0]!r}, "
            "which has no entry in the manifest's dictionaries"
        )


def _read_parquet(path: Path) -> pl.DataFrame:
    try:
        return pl.read_parquet(path)
    except Exception as exc:  # polars/pyarrow raise many types for a damaged file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BundleError(f"{path}: not a readable Parquet file ({reason[:160]})") from None


def _check_columns(frame: pl.DataFrame, columns: dict[str, PolarsDataType], file: str) -> None:
    for name, dtype in columns.items():
        if name not in frame.columns:
            raise BundleError(f"{file}: missing column {name!r}")
        if frame.schema[name] != dtype:
            raise BundleError(f"{file}: column {name!r} has dtype {frame.schema[name]}, expected {dtype}")


def _check_not_null(frame: pl.DataFrame, columns: list[str], file: str) -> None:
    for name in columns:
        count = frame[name].null_count()
        if count:
            raise BundleError(f"{file}: column {name!r} has {count} null value(s)")


def _check_finite(frame: pl.DataFrame, column: str, file: str) -> None:
    bad = frame.filter(~pl.col(column).is_finite())
    if bad.height:
        value = bad[column][0]
        label = "NaN" if isinstance(value, float) and math.isnan(value) else repr(value)
        raise BundleError(f"{file}: column {column!r} has {bad.height} non-finite value(s) (first: {label})")


def _extra(frame: pl.DataFrame, columns: dict[str, PolarsDataType]) -> list[pl.Expr]:
    return [pl.col(c) for c in frame.columns if c not in columns]
