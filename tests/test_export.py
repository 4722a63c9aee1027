"""NetworkX export: every format reads back with the nodes, edges and attributes the bundle's Parquet says.

Expected graphs are computed here from ``nodes.parquet``/``edges.parquet`` with plain Python (thresholds
applied by hand), independently of :mod:`sfc_graph.export`.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import networkx as nx
import polars as pl
import pytest
from click.testing import CliRunner

from builders import build_circuit
from sfc_graph.cli import main
from sfc_graph.export import FORMATS, ExportError, subgraph_from_result, subgraph_of, write_graph
from sfc_graph.store import open_store

CIRCUITS = {"agg-a": dict(task="agreement", seed=1), "agg-b": dict(task="ioi", seed=2),
            "pos-c": dict(task="agreement", seed=3, position=4)}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {cid: build_circuit(root / cid, cid, **kw).path for cid, kw in CIRCUITS.items()}


@pytest.fixture(scope="module")
def store_path(bundles, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("export") / "store")
    with open_store(path) as store:
        for bundle in bundles.values():
            store.load(bundle)
    return path


@pytest.fixture
def store(store_path):
    with open_store(store_path, read_only=True) as opened:
        yield opened


def expected_graph(bundle: Path, node_threshold: float, edge_threshold: float):
    """(nodes: key -> attributes, edges: (u, v) -> weight, positional) straight from the Parquet files."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    nodes = pl.read_parquet(bundle / "nodes.parquet").to_dicts()
    edges = pl.read_parquet(bundle / "edges.parquet").to_dicts()
    positional = any(n["position"] != -1 for n in nodes)
    key = (lambda node_id, pos: f"{node_id}@{pos}") if positional else (lambda node_id, pos: node_id)
    kept = {}
    for n in nodes:
        if abs(n["effect"]) >= node_threshold or n["kind"] == "output":
            site = n["site"] if n["site"] in ("embed", "output") else f"{n['site']}_{n['layer']}"
            dictionary = manifest["dictionaries"].get(site, {}).get("id")
            kept[key(n["node_id"], n["position"])] = {
                "node_id": n["node_id"], "kind": n["kind"], "site": n["site"], "layer": n["layer"],
                "index": n["index"], "position": n["position"], "effect": n["effect"],
                "feature": f"{dictionary}/{n['index']}" if n["kind"] == "feature" else "",
            }
    kept_edges = {}
    for e in edges:
        u, v = key(e["src"], e["src_position"]), key(e["dst"], e["dst_position"])
        if abs(e["weight"]) >= edge_threshold and u in kept and v in kept:
            kept_edges[(u, v)] = e["weight"]
    return kept, kept_edges, positional


def read_back(path: Path, fmt: str) -> nx.DiGraph:
    if fmt == "graphml":
        return nx.read_graphml(path)
    if fmt == "gexf":
        return nx.read_gexf(path)
    if fmt == "json":
        return nx.node_link_graph(json.loads(path.read_text()), edges="links")
    with open(path, "rb") as handle:
        return pickle.load(handle)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("circuit_id,node_threshold,edge_threshold",
                         [("agg-a", 0.0, 0.0), ("agg-a", 0.4, 0.3), ("pos-c", 0.25, 0.5)])
def test_round_trip(store, bundles, tmp_path, fmt, circuit_id, node_threshold, edge_threshold):
    graph = store.to_networkx(circuit_id, node_threshold=node_threshold, edge_threshold=edge_threshold)
    path = write_graph(graph, tmp_path / f"circuit.{fmt}", fmt)
    back = read_back(path, fmt)
    nodes, edges, positional = expected_graph(bundles[circuit_id], node_threshold, edge_threshold)

    assert back.is_directed()
    assert set(back.nodes) == set(nodes)
    assert set(back.edges) == set(edges)
    if edge_threshold:  # the thresholds must have bitten, or the test proves little
        assert 0 < len(edges) < pl.read_parquet(bundles[circuit_id] / "edges.parquet").height
    for key, attributes in nodes.items():
        got = back.nodes[key]
        for name, value in attributes.items():
            if value is None:  # GraphML/GEXF cannot hold None: the attribute is left out there
                assert got.get(name) is None
            elif isinstance(value, float):
                assert math.isclose(got[name], value, rel_tol=1e-12), (key, name)
            else:
                assert got[name] == value, (key, name)
    for (u, v), weight in edges.items():
        assert math.isclose(back.edges[u, v]["weight"], weight, rel_tol=1e-12)
    if fmt != "gexf":  # GEXF keeps only the graph's name
        assert back.graph["circuit_id"] == circuit_id
        assert back.graph["task"] == CIRCUITS[circuit_id]["task"]
        assert back.graph["positional"] == positional
    assert back.graph["name"] == circuit_id


def test_node_keys_follow_positions(store):
    aggregated = store.to_networkx("agg-a")
    positional = store.to_networkx("pos-c")
    assert "output" in aggregated and aggregated.graph["positional"] is False
    assert "output@4" in positional and positional.graph["positional"] is True
    assert all("@" not in key for key in aggregated)
    assert aggregated.nodes["output"]["identity"] == "toy/output"
    assert aggregated.nodes["attn_0/err"]["identity"] == "toy/attn_0/sae-64/err"


def test_output_node_survives_any_threshold(store):
    graph = store.to_networkx("agg-a", node_threshold=100.0, edge_threshold=100.0)
    assert list(graph.nodes) == ["output"] and graph.number_of_edges() == 0


def test_subgraph_from_top_nodes_is_induced(store):
    top = store.query("top-nodes", circuit="agg-a", k=8)
    sub = subgraph_from_result(store, "agg-a", top)
    full = store.to_networkx("agg-a")
    wanted = set(top["node_id"])
    assert set(sub.nodes) == wanted
    assert set(sub.edges) == {(u, v) for u, v in full.edges if u in wanted and v in wanted}
    assert sub.graph["circuit_id"] == "agg-a"


def test_subgraph_from_paths_keeps_only_path_edges(store):
    paths = store.query("upstream-paths", circuit="agg-a", max_hops=3, k=5)
    assert paths.height > 0
    sub = subgraph_from_result(store, "agg-a", paths)
    pairs = {(p[i], p[i + 1]) for p in paths["path"].to_list() for i in range(len(p) - 1)}
    assert set(sub.edges) == pairs
    assert set(sub.nodes) == {n for p in paths["path"].to_list() for n in p}
    full = store.to_networkx("agg-a")
    for u, v in pairs:
        assert sub.edges[u, v]["weight"] == full.edges[u, v]["weight"]


def test_subgraph_from_edge_rows_positions_and_identities(store):
    full = store.to_networkx("pos-c")
    (u, v), *_ = list(full.edges)
    by_edge = subgraph_of(full, [{"src": full.nodes[u]["node_id"], "dst": full.nodes[v]["node_id"]}])
    assert set(by_edge.edges) == {(u, v)}
    by_label = subgraph_of(full, pl.DataFrame({"other": [u]}))  # "node_id@position", as queries label nodes
    assert set(by_label.nodes) == {u}
    diff = store.query("circuit-diff", a="agg-a", b="agg-b")  # shared identities, some only in agg-b
    sub = subgraph_from_result(store, "agg-a", diff)
    in_a = diff.filter(pl.col("status") != "only_b")["node"].to_list()
    assert {sub.nodes[n]["identity"] for n in sub.nodes} == set(in_a)


def test_subgraph_from_shared_features(store):
    shared = store.query("shared-features", circuits=["agg-a", "agg-b"])
    sub = subgraph_from_result(store, "agg-b", shared)
    assert sorted(sub.nodes[n]["feature"] for n in sub.nodes) == sorted(shared["feature"].to_list())


def test_subgraph_errors(store):
    with pytest.raises(ExportError, match="names no nodes"):
        subgraph_from_result(store, "agg-a", pl.DataFrame({"circuit": ["agg-a"], "effect": [1.0]}))
    with pytest.raises(ExportError, match="none of"):
        subgraph_from_result(store, "agg-a", pl.DataFrame({"node_id": ["resid_9/1"]}))


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_export(store_path, bundles, tmp_path, fmt):
    out = tmp_path / f"g.{fmt}"
    result = CliRunner().invoke(main, ["export", "agg-b", "--format", fmt, "--out", str(out), "--store", store_path,
                                       "--node-threshold", "0.2", "--edge-threshold", "0.1"])
    assert result.exit_code == 0, result.output
    graph = read_back(out, fmt)
    nodes, edges, _ = expected_graph(bundles["agg-b"], 0.2, 0.1)
    assert set(graph.nodes) == set(nodes) and set(graph.edges) == set(edges)
    assert f"{len(nodes)} nodes, {len(edges)} edges" in result.output


def test_cli_export_format_from_extension(store_path, tmp_path):
    out = tmp_path / "g.graphml"
    result = CliRunner().invoke(main, ["export", "agg-a", "--out", str(out), "--store", store_path])
    assert result.exit_code == 0, result.output
    assert nx.read_graphml(out).number_of_nodes() == 36


@pytest.mark.parametrize("args,words", [
    (["export", "nope", "--format", "json"], "no circuit 'nope'"),
    (["export", "agg-a", "--out", "g.txt"], "cannot tell the format"),
])
def test_cli_export_user_errors(store_path, tmp_path, args, words):
    if "--out" not in args:
        args = args + ["--out", str(tmp_path / "g.json")]
    result = CliRunner().invoke(main, args + ["--store", store_path])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and words in lines[0], result.output
    assert "Traceback" not in result.output
