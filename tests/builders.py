"""Hand-built circuits for tests: small, explicit, with known structure.

``build_circuit`` writes a bundle over the dictionaries of a 2-layer model. Features are drawn from
``feature_pool`` so that two circuits built with overlapping pools share features by construction.
"""

from __future__ import annotations

import random
from pathlib import Path

import polars as pl

from sfc_graph import naming
from sfc_graph.bundle import Bundle, write_bundle

SITES = ["embed", "attn_0", "mlp_0", "resid_0", "attn_1", "mlp_1", "resid_1"]


def dictionaries(model: str = "toy", d_dict: int = 64) -> dict:
    return {s: {"id": f"{model}/{s}/sae-{d_dict}", "kind": "sae", "d_dict": d_dict, "sha256": "0" * 64} for s in SITES}


def build_circuit(
    out: Path,
    circuit_id: str,
    *,
    task: str = "task",
    model: str = "toy",
    seed: int = 0,
    features_per_site: int = 4,
    feature_pool: range = range(16),
    errors: bool = True,
    edge_prob: float = 0.5,
    position: int = -1,
    **manifest_extra,
) -> Bundle:
    """A circuit whose edges follow the forward order of SITES (each node links to later sites only)."""
    rng = random.Random(seed)
    rows = []
    order: dict[str, int] = {}  # node id -> its site's place in SITES (the output last)
    for rank, site in enumerate(SITES):
        kind, layer = naming.parse_site_name(site)
        for index in sorted(rng.sample(list(feature_pool), features_per_site)):
            rows.append((naming.feature_id(site, index), "feature", kind, layer, index, position, rng.uniform(-1, 1)))
        if errors:
            rows.append((naming.error_id(site), "error", kind, layer, None, position, rng.uniform(-1, 1)))
        order.update((row[0], rank) for row in rows if row[0] not in order)
    rows.append((naming.OUTPUT_ID, "output", "output", -1, None, position, rng.uniform(0.5, 2)))
    order[naming.OUTPUT_ID] = len(SITES)
    nodes = pl.DataFrame(rows, schema=["node_id", "kind", "site", "layer", "index", "position", "effect"], orient="row")
    ids = nodes["node_id"].to_list()
    edges = []
    for src in ids:
        for dst in ids:
            if order[src] < order[dst] and order[dst] - order[src] <= 3:
                if rng.random() < edge_prob:
                    edges.append((src, dst, position, position, rng.uniform(-1, 1)))
    edge_frame = pl.DataFrame(edges, schema=["src", "dst", "src_position", "dst_position", "weight"], orient="row")
    manifest = {
        "circuit_id": circuit_id,
        "task": task,
        "model": model,
        "dictionaries": dictionaries(model),
        "method": "attrib",
        "metric": "logit_diff",
        "aggregation": "sum",
        "n_examples": 8,
        "evaluation": [{"node_threshold": 0.1, "n_nodes": nodes.height, "faithfulness": 0.8, "completeness": 0.1}],
        **manifest_extra,
    }
    return write_bundle(out, manifest, nodes, edge_frame)
