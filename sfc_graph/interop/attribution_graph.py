"""Attribution-graph JSON (Neuronpedia, circuit-tracer's local viewer), both ways.

The format (Neuronpedia publishes its JSON schema; circuit-tracer's ``create_graph_files`` writes it):
``{"metadata": {...}, "qParams": {...}, "nodes": [...], "links": [...]}``; a directory of graphs opens in
circuit-tracer's viewer when it also holds ``graph-metadata.json`` (``{"graphs": [metadata, ...]}``).

How a circuit of ours maps onto it (``docs/interop.md`` says the same for users):

- **Rows (``layer``).** The viewer stacks nodes by ``layer`` (a number as a string; ``"E"`` for input
  tokens). Our circuits have three sites per transformer block, so each site gets its own row in forward
  order: ``embed`` → 0, ``attn_L`` → 3L+1, ``mlp_L`` → 3L+2, ``resid_L`` → 3L+3, the output above the last.
  Input-token nodes are ``"E"``.
- **Columns (``ctx_idx``).** A circuit that keeps positions puts each node at its position, and the prompt
  tokens are the manifest's ``prompt_tokens`` when it has them (else ``pos 0``, ``pos 1``, …). A summed
  circuit (every node at position -1, our default) has no positions: its prompt is two pseudo-tokens,
  ``[<task>, "Σ positions"]``, and every node sits at ``ctx_idx`` 1. (One pseudo-token would not do: the
  viewer drops every feature that occurs at more than 2/3 of the prompt's positions.)
- **Kinds (``feature_type``).** Features of a transcoder dictionary are ``"cross layer transcoder"`` (the
  type the viewer gives feature details for; circuit-tracer uses it for per-layer transcoders too); SAE
  features are ``"sae feature"``; error nodes ``"<site> reconstruction error"`` (the viewer recognises
  ``"error"`` in the type); heads ``"attention head"``; tokens ``"embedding"``; the output and logit nodes
  ``"logit"`` (their ``clerp`` carries ``(p=…)``, which the viewer parses).
- **``feature``** is the latent index for features, the head index for heads, the vocabulary id for tokens
  and logits, -1 for error and output nodes. **``clerp``** is the node's label when it has one, else its
  node id.
- **``influence``** follows circuit-tracer exactly: take |adjacency| with each target's incoming weights
  normalised to sum to 1, propagate the output weights backwards through all path lengths
  (``w A + w A² + …``), and give each node the cumulative share of total influence of all nodes at least as
  influential as itself — so *smaller is more important*, and ``metadata.node_threshold`` prunes in the
  viewer by it. The output nodes' weights are their probabilities (1 for our single metric node).
- **``activation``** is null for our circuits (a circuit stores effects, not activations).
- Lossless round trip: each node also carries ``sfc_node_id``, ``sfc_position`` and ``sfc_effect``, and the
  metadata carries ``sfc_manifest``; :func:`import_graph` uses them when present, so
  bundle → JSON → bundle gives back the same nodes, edges and manifest fields.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import polars as pl
import scipy.sparse as sp

from .. import naming
from ..bundle import EDGE_COLUMNS, NODE_COLUMNS, Bundle, write_bundle
from ..errors import InteropError

GRAPH_METADATA = "graph-metadata.json"
SUMMED_PROMPT_LABEL = "Σ positions"
GENERATOR = "sfc-graph"
FEATURE_TYPE_TRANSCODER = "cross layer transcoder"
FEATURE_TYPE_SAE = "sae feature"
FEATURE_TYPE_HEAD = "attention head"
FEATURE_TYPE_TOKEN = "embedding"
FEATURE_TYPE_LOGIT = "logit"
_SITE_OFFSET = {"attn": 1, "mlp": 2, "resid": 3}


# ------------------------------------------------------------------------------------------------ export


def site_row(site: str, layer: int) -> int:
    """The viewer row of a site: embed 0, then attn/mlp/resid of each layer in forward order.

    >>> site_row("embed", -1), site_row("attn", 0), site_row("resid", 1)
    (0, 1, 6)
    """
    if site == "embed":
        return 0
    if site not in _SITE_OFFSET:
        raise InteropError(f"site {site!r} has no row in an attribution graph")
    return 3 * int(layer) + _SITE_OFFSET[site]


def slug_for(name: str) -> str:
    """A file-name-safe slug (the viewer fetches ``<slug>.json``).

    >>> slug_for("agreement_nounpp.ig.0123abcd")
    'agreement_nounpp.ig.0123abcd'
    >>> slug_for("a/b c")
    'a-b-c'
    """
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.")
    if not slug:
        raise InteropError(f"cannot make a file name (slug) from {name!r}; give one")
    return slug


def graph_to_attribution_json(
    graph: nx.DiGraph,
    manifest: dict[str, Any],
    *,
    slug: str | None = None,
    node_threshold: float = 1.0,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Circuit ``graph`` (from :func:`sfc_graph.export.bundle_to_networkx`, or any subgraph of it, e.g. a
    query's) as attribution-graph JSON. ``labels`` maps feature identities to labels (``clerp``).

    ``node_threshold`` goes to ``metadata.node_threshold``: the viewer's default pruning by ``influence``
    (1.0 shows every node).
    """
    if not 0.0 <= node_threshold <= 1.0:
        raise InteropError("node_threshold is a cumulative influence share and must lie in [0, 1]")
    labels = labels or {}
    dictionaries = manifest.get("dictionaries", {})
    model = str(manifest.get("model", ""))
    order = list(graph.nodes)
    positional = bool(graph.graph.get("positional"))
    max_position = max((int(graph.nodes[n]["position"]) for n in order), default=-1)
    prompt_tokens = _prompt_tokens(manifest, positional, max_position)
    influence = _influence(graph, order)
    max_row = max((site_row(d["site"], d["layer"]) for _, d in graph.nodes(data=True)
                   if d["kind"] not in (naming.OUTPUT, naming.TOKEN, naming.LOGIT)), default=0)

    json_ids: dict[Any, str] = {}
    nodes: list[dict[str, Any]] = []
    for key in order:
        data = graph.nodes[key]
        ctx = int(data["position"]) if positional else len(prompt_tokens) - 1
        kind, node = data["kind"], data["node_id"]
        layer, feature, feature_type = _layer_feature_type(data, dictionaries, max_row)
        jid = f"{layer}_{_feature_slot(kind, feature, node)}_{ctx}"
        json_ids[key] = jid
        label = labels.get(data.get("identity") or "", "") or labels.get(data.get("feature") or "", "")
        if kind in (naming.OUTPUT, naming.LOGIT):
            probability = float(data.get("probability", 1.0) if data.get("probability") is not None else 1.0)
            clerp = f'Output "{label or manifest.get("metric", node)}" (p={probability:.3f})'
        else:
            clerp = label or node
        nodes.append({
            "node_id": jid,
            "feature": feature,
            "layer": layer,
            "ctx_idx": ctx,
            "feature_type": feature_type,
            "jsNodeId": f"{layer}_{_feature_slot(kind, feature, node)}-{ctx}",
            "clerp": clerp,
            "influence": influence[key],
            "activation": _finite_or_none(data.get("activation")),
            "is_target_logit": kind in (naming.OUTPUT, naming.LOGIT),
            "sfc_node_id": node,
            "sfc_position": int(data["position"]),
            "sfc_effect": float(data["effect"]),
        })
    links = [{"source": json_ids[u], "target": json_ids[v], "weight": float(w)}
             for u, v, w in graph.edges(data="weight")]

    slug = slug_for(slug or str(manifest.get("circuit_id", "circuit")))
    from .. import __version__

    metadata: dict[str, Any] = {
        "slug": slug,
        "scan": model,
        "transcoder_list": [],
        "prompt_tokens": prompt_tokens,
        "prompt": str(manifest.get("prompt") or " ".join(prompt_tokens)),
        "node_threshold": float(node_threshold),
        "schema_version": 1,
        "info": {
            "description": f"{manifest.get('task', '')} circuit ({manifest.get('method', '')}, "
                           f"metric {manifest.get('metric', '')}) from sfc-graph",
            "generator": {"name": GENERATOR, "version": __version__},
        },
        "sfc_manifest": {k: v for k, v in manifest.items() if k != "files"},
    }
    return {
        "metadata": metadata,
        "qParams": {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "", "sg_pos": ""},
        "nodes": nodes,
        "links": links,
    }


def write_attribution_graph(document: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write ``<slug>.json`` into directory ``out_dir`` and add its metadata to ``graph-metadata.json``
    (replacing an earlier entry of the same slug), as circuit-tracer's viewer expects. Returns the JSON path.

    Both files are written to a temporary name and renamed, so a reader never sees half a file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InteropError(f"{out} is a file; an attribution-graph export is a directory of graphs")
    out.mkdir(parents=True, exist_ok=True)
    slug = document["metadata"]["slug"]
    path = out / f"{slug}.json"
    index_path = out / GRAPH_METADATA
    index: dict[str, Any] = {"graphs": []}
    if index_path.exists():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            if not isinstance(index, dict) or not isinstance(index.get("graphs"), list):
                raise ValueError("no 'graphs' list")
        except (OSError, ValueError) as exc:
            raise InteropError(f"{index_path} exists but is not a graph index ({exc}); "
                               "choose another directory") from None
    entry = {k: v for k, v in document["metadata"].items() if k != "sfc_manifest"}
    index["graphs"] = [g for g in index["graphs"] if g.get("slug") != slug] + [entry]
    _atomic_write(path, json.dumps(document, allow_nan=False))
    _atomic_write(index_path, json.dumps(index, indent=2, allow_nan=False) + "\n")
    return path


def _atomic_write(path: Path, text: str) -> None:
    staging = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        staging.write_text(text, encoding="utf-8")
        os.replace(staging, path)
    except OSError as exc:
        staging.unlink(missing_ok=True)
        raise InteropError(f"cannot write {path} ({exc.strerror or exc})") from None


def _prompt_tokens(manifest: dict[str, Any], positional: bool, max_position: int) -> list[str]:
    if not positional:
        return [str(manifest.get("task", "circuit")), SUMMED_PROMPT_LABEL]
    tokens = manifest.get("prompt_tokens")
    if isinstance(tokens, list) and len(tokens) > max_position:
        return [str(t) for t in tokens]
    return [f"pos {i}" for i in range(max(max_position + 1, 2))]


def _layer_feature_type(data: dict[str, Any], dictionaries: dict[str, Any], max_row: int) -> tuple[str, int, str]:
    kind, site, layer = data["kind"], data["site"], int(data["layer"])
    index: Any = data.get("index")  # an int for every kind that reads it below; None for errors and outputs
    if kind in (naming.OUTPUT, naming.LOGIT):
        return str(max_row + 1), (-1 if index is None else int(index)), FEATURE_TYPE_LOGIT
    if kind == naming.TOKEN:
        return "E", int(index), FEATURE_TYPE_TOKEN
    row = str(site_row(site, layer))
    if kind == naming.ERROR:
        return row, -1, f"{site} reconstruction error"
    if kind == naming.HEAD:
        return row, int(index), FEATURE_TYPE_HEAD
    entry = dictionaries.get(naming.prefix_of(data["node_id"]), {})
    is_transcoder = str(entry.get("kind", "sae")) == "transcoder"
    return row, int(index), FEATURE_TYPE_TRANSCODER if is_transcoder else FEATURE_TYPE_SAE


def _feature_slot(kind: str, feature: int, node: str) -> str:
    # Unique within a row and position: error and output nodes have feature -1, so they get a word instead.
    if kind == naming.ERROR:
        return "err"
    if kind == naming.OUTPUT:
        return "out"
    if kind == naming.HEAD:
        return f"h{feature}"
    return str(feature)


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _over_all_paths(adjacency: sp.csr_matrix, weights: np.ndarray, *, what: str) -> np.ndarray:
    """``w A + w A² + …`` for ``adjacency[target, source]``: the output weights carried back over every path."""
    current = adjacency.T @ weights
    total = current.copy()
    for _ in range(adjacency.shape[0] + 1):  # a DAG has no path longer than n - 1 edges
        if not np.any(current):
            return total
        current = adjacency.T @ current
        total += current
    raise InteropError(f"the graph has a cycle, so {what} (a sum over all path lengths) does not converge")


def _influence(graph: nx.DiGraph, order: list[Any]) -> dict[Any, float]:
    """circuit-tracer's cumulative influence share of each node (see the module docstring)."""
    n = len(order)
    if n == 0:
        return {}
    index = {key: i for i, key in enumerate(order)}
    rows, cols, vals = [], [], []
    for u, v, w in graph.edges(data="weight"):
        rows.append(index[v])  # adjacency[target, source], as circuit-tracer stores it
        cols.append(index[u])
        vals.append(abs(float(w)))
    adjacency = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    row_sums = np.asarray(adjacency.sum(axis=1)).ravel()
    normalised = sp.diags(1.0 / np.maximum(row_sums, 1e-10)) @ adjacency
    weights = np.zeros(n)
    for key, data in graph.nodes(data=True):
        if data["kind"] in (naming.OUTPUT, naming.LOGIT):
            probability = data.get("probability")
            weights[index[key]] = 1.0 if probability is None else float(probability)
    total = _over_all_paths(normalised, weights, what="influence")
    order_desc = np.argsort(-total, kind="stable")
    grand = total.sum()
    cumulative = np.cumsum(total[order_desc]) / grand if grand > 0 else np.ones(n)
    share = np.empty(n)
    share[order_desc] = cumulative
    return {key: float(min(share[i], 1.0)) for key, i in index.items()}


# ------------------------------------------------------------------------------------------------ import


def read_attribution_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an attribution-graph JSON file, refusing anything that is not one with one sentence."""
    file = Path(path)
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InteropError(f"{file}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InteropError(f"{file}: not a readable JSON file ({exc})") from None
    if not isinstance(document, dict):
        raise InteropError(f"{file}: an attribution graph is a JSON object with metadata, nodes and links")
    for key, kind in (("metadata", dict), ("nodes", list), ("links", list)):
        if not isinstance(document.get(key), kind):
            raise InteropError(f"{file}: missing or malformed {key!r} (an attribution graph needs metadata, "
                               "nodes and links)")
    return document


def import_graph(
    document: dict[str, Any],
    *,
    source: str = "graph",
    model: str | None = None,
    task: str | None = None,
    file_sha256: str | None = None,
) -> tuple[dict[str, Any], pl.DataFrame, pl.DataFrame]:
    """An attribution graph as a bundle's ``(manifest, nodes, edges)``.

    Our own exports come back exactly (their ``sfc_*`` fields). Other graphs — circuit-tracer's, or
    Neuronpedia's — map as follows: transcoder features become ``feature`` nodes of site ``mlp_L`` (the
    latent index from the node id ``L_<latent>_<pos>``, since circuit-tracer's ``feature`` field is a Cantor
    pairing of layer and latent), error nodes ``mlp_L/err``, embedding nodes ``token/<vocab id>``, logit
    nodes ``logit/<vocab id>``; every node keeps its position (``ctx_idx``), so the circuit keeps positions
    (aggregation ``none``). ``influence``, ``activation``, ``clerp``, ``feature_type`` and, for logits,
    ``probability`` are kept as extra node columns; the prompt goes into the manifest.

    A node's ``effect`` is its total signed attribution to the output: the logit probabilities propagated
    backwards through every path of the signed adjacency (``w A + w A² + …``; direct attributions compose
    linearly in the replacement model), and a logit's own probability for logit nodes.
    """
    metadata = document["metadata"]
    raw_nodes, raw_links = document["nodes"], document["links"]
    if not raw_nodes:
        raise InteropError(f"{source}: the graph has no nodes")
    own = "sfc_manifest" in metadata and all("sfc_node_id" in n for n in raw_nodes)
    rows = [_own_node(n, source) if own else _foreign_node(n, metadata, source) for n in raw_nodes]
    by_json_id: dict[str, tuple[str, int]] = {}
    for raw, row in zip(raw_nodes, rows):
        jid = raw.get("node_id")
        if not isinstance(jid, str) or jid in by_json_id:
            raise InteropError(f"{source}: node ids must be unique strings (found {jid!r} twice or not a string)")
        by_json_id[jid] = (row["node_id"], row["position"])

    edges_rows = []
    for link in raw_links:
        try:
            (src, src_pos), (dst, dst_pos) = by_json_id[link["source"]], by_json_id[link["target"]]
            weight = float(link["weight"])
        except (KeyError, TypeError, ValueError):
            raise InteropError(f"{source}: link {link!r} does not join two nodes of the graph with a weight") from None
        if not math.isfinite(weight):
            raise InteropError(f"{source}: link {link['source']} -> {link['target']} has a non-finite weight")
        edges_rows.append({"src": src, "dst": dst, "src_position": src_pos, "dst_position": dst_pos,
                           "weight": weight})
    edges = pl.DataFrame(edges_rows, schema=EDGE_COLUMNS)
    if edges.height:
        edges = edges.group_by(["src", "src_position", "dst", "dst_position"], maintain_order=True).agg(
            pl.col("weight").sum())
        edges = edges.select(list(EDGE_COLUMNS))

    extra = {"influence": pl.Float64, "activation": pl.Float64, "clerp": pl.String, "feature_type": pl.String,
             "probability": pl.Float64}
    nodes = pl.DataFrame(rows, schema={**NODE_COLUMNS, **extra})
    if not own:
        nodes = nodes.with_columns(pl.Series("effect", _total_effects(nodes, edges), dtype=pl.Float64))
    nodes = nodes.unique(["node_id", "position"], keep="first", maintain_order=True)

    if own:
        manifest = dict(metadata["sfc_manifest"])
    else:
        manifest = _foreign_manifest(metadata, nodes, model=model, task=task, file_sha256=file_sha256)
    manifest["imported_from"] = {"format": "attribution-graph", "source": source,
                                 "slug": str(metadata.get("slug", ""))}
    return manifest, nodes, edges


def import_attribution_file(
    path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, model: str | None = None,
    task: str | None = None, overwrite: bool = False,
) -> Bundle:
    """Read an attribution-graph JSON file and write it as a bundle in ``out_dir``."""
    file = Path(path)
    document = read_attribution_json(file)
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    manifest, nodes, edges = import_graph(document, source=str(file), model=model, task=task, file_sha256=digest)
    return write_bundle(out_dir, manifest, nodes, edges, overwrite=overwrite)


def _own_node(raw: dict[str, Any], source: str) -> dict[str, Any]:
    try:
        name = naming.parse_node_id(str(raw["sfc_node_id"]))
        return {
            "node_id": str(raw["sfc_node_id"]), "kind": name.kind, "site": name.site, "layer": name.layer,
            "index": name.index, "position": int(raw["sfc_position"]), "effect": float(raw["sfc_effect"]),
            "influence": _finite_or_none(raw.get("influence")), "activation": _finite_or_none(raw.get("activation")),
            "clerp": str(raw.get("clerp", "")), "feature_type": str(raw.get("feature_type", "")),
            "probability": None,
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise InteropError(f"{source}: node {raw.get('node_id')!r} has malformed sfc fields ({exc})") from None


_LOGIT_P = re.compile(r"\(p=([0-9.eE+-]+)\)")


def _foreign_node(raw: dict[str, Any], metadata: dict[str, Any], source: str) -> dict[str, Any]:
    jid = raw.get("node_id")
    feature_type = str(raw.get("feature_type", ""))
    try:
        ctx = int(raw["ctx_idx"])
        layer_text = str(raw["layer"])
        parts = str(jid).split("_")
        if feature_type == FEATURE_TYPE_TOKEN:
            # circuit-tracer: node_id E_<vocab id>_<pos>
            vocab = int(parts[1])
            name = naming.NodeName(naming.TOKEN, "embed", -1, vocab)
        elif feature_type == FEATURE_TYPE_LOGIT:
            vocab = int(raw["feature"])
            name = naming.NodeName(naming.LOGIT, "output", -1, vocab)
        elif "error" in feature_type:
            # circuit-tracer: node_id 0_<layer>_<pos>, layer field = the layer
            name = naming.NodeName(naming.ERROR, "mlp", int(layer_text), None)
        else:
            # transcoder feature: node_id <layer>_<latent>_<pos>
            name = naming.NodeName(naming.FEATURE, "mlp", int(layer_text), int(parts[1]))
    except (KeyError, TypeError, ValueError, IndexError):
        raise InteropError(
            f"{source}: node {jid!r} ({feature_type or 'no feature_type'}) does not follow circuit-tracer's node "
            "layout (<layer>_<latent>_<pos>, E_<token>_<pos>, a logit with an integer feature)"
        ) from None
    probability = raw.get("token_prob")
    if feature_type == FEATURE_TYPE_LOGIT and probability is None:
        match = _LOGIT_P.search(str(raw.get("clerp", "")))
        probability = float(match.group(1)) if match else None
    return {
        "node_id": naming.node_id(name.kind, name.site, name.layer, name.index), "kind": name.kind,
        "site": name.site, "layer": name.layer, "index": name.index, "position": ctx, "effect": 0.0,
        "influence": _finite_or_none(raw.get("influence")), "activation": _finite_or_none(raw.get("activation")),
        "clerp": str(raw.get("clerp", "")), "feature_type": feature_type,
        "probability": _finite_or_none(probability) if feature_type == FEATURE_TYPE_LOGIT else None,
    }


def _total_effects(nodes: pl.DataFrame, edges: pl.DataFrame) -> np.ndarray:
    keys = list(zip(nodes["node_id"].to_list(), nodes["position"].to_list()))
    index = {key: i for i, key in enumerate(keys)}
    n = len(keys)
    weights = np.zeros(n)
    logits = (nodes["kind"] == naming.LOGIT).to_numpy()
    probabilities = nodes["probability"].fill_null(1.0).to_numpy()
    weights[logits] = probabilities[logits]
    if edges.height == 0:
        return weights
    rows = [index[(d, p)] for d, p in zip(edges["dst"].to_list(), edges["dst_position"].to_list())]
    cols = [index[(s, p)] for s, p in zip(edges["src"].to_list(), edges["src_position"].to_list())]
    adjacency = sp.csr_matrix((edges["weight"].to_numpy(), (rows, cols)), shape=(n, n))
    total = _over_all_paths(adjacency, weights, what="total effects")
    total[logits] = probabilities[logits]
    return total


def _foreign_manifest(metadata: dict[str, Any], nodes: pl.DataFrame, *, model: str | None, task: str | None,
                      file_sha256: str | None) -> dict[str, Any]:
    scan = str(model or metadata.get("scan") or "").strip()
    if not scan:
        raise InteropError("the graph's metadata names no model (scan); give one")
    transcoders = metadata.get("transcoder_list") or []
    layers = sorted(set(nodes.filter(pl.col("kind").is_in([naming.FEATURE, naming.ERROR]))["layer"].to_list()))
    dictionaries = {}
    for layer in layers:
        site = naming.site_name("mlp", layer)
        dict_id = (str(transcoders[layer]) if isinstance(transcoders, list) and layer < len(transcoders)
                   else f"{scan}/transcoder/{site}")
        dictionaries[site] = {"id": dict_id, "kind": "transcoder"}
    slug = str(metadata.get("slug", "graph"))
    digest = file_sha256 or hashlib.sha256(json.dumps(metadata, sort_keys=True).encode()).hexdigest()
    return {
        "circuit_id": f"{slug_for(slug)}.circuit-tracer.{digest[:16]}",
        "task": task or slug,
        "model": scan,
        "dictionaries": dictionaries,
        "method": "circuit-tracer",
        "metric": "logit",
        "aggregation": "none",
        "node_floor": 0.0,
        "edge_floor": 0.0,
        "n_examples": 1,
        "prompt": str(metadata.get("prompt", "")),
        "prompt_tokens": [str(t) for t in metadata.get("prompt_tokens", [])],
        "source_node_threshold": _finite_or_none(metadata.get("node_threshold")),
        "dataset_sha256": digest,
    }


__all__ = ["GRAPH_METADATA", "graph_to_attribution_json", "import_attribution_file", "import_graph",
           "read_attribution_json", "site_row", "slug_for", "write_attribution_graph"]
