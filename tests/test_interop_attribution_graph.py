"""Attribution-graph JSON (Neuronpedia / circuit-tracer), both ways.

Checked against the formats' own definitions, not our code: Neuronpedia's published JSON schema
(../shared/interop, validated with ``jsonschema``), circuit-tracer's own pydantic models and local server
(from the installed ``circuit-tracer`` wheel, loaded file by file so that its torch/transformers imports do not
run), and influence / total effects recomputed with dense matrix inverses instead of the power series.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import socket
import urllib.request
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from builders import build_circuit
from sfc_graph.bundle import read_bundle, write_bundle
from sfc_graph.cli import main
from sfc_graph.errors import InteropError
from sfc_graph.export import bundle_to_networkx
from sfc_graph.interop.attribution_graph import (
    GRAPH_METADATA,
    graph_to_attribution_json,
    import_graph,
    write_attribution_graph,
)

SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "interop" / "neuronpedia-graph-schema.json"
NODE_COLUMNS = ["node_id", "kind", "site", "layer", "index", "position", "effect"]


def _circuit_tracer_file(relative: str) -> Path | None:
    try:
        files = importlib.metadata.files("circuit-tracer") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if str(file) == relative:
            return Path(file.locate())
    return None


def _load_module(relative: str, name: str):
    path = _circuit_tracer_file(relative)
    if path is None:
        pytest.skip("circuit-tracer is not installed (scripts/setup.sh installs it, without its dependencies)")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _validate_schema(document: dict) -> None:
    if not SCHEMA.is_file():
        pytest.skip(f"Neuronpedia's graph schema is not at {SCHEMA} (it ships beside the project, in ../shared)")
    import jsonschema

    jsonschema.validate(document, json.loads(SCHEMA.read_text()))


def _independent_influence(document: dict) -> dict[str, float]:
    """circuit-tracer's node influence by a dense inverse: w ((I - A)^-1 - I), A row-normalised |adjacency|."""
    ids = [n["node_id"] for n in document["nodes"]]
    index = {node: i for i, node in enumerate(ids)}
    n = len(ids)
    adjacency = np.zeros((n, n))
    for link in document["links"]:
        adjacency[index[link["target"]], index[link["source"]]] += abs(link["weight"])
    sums = adjacency.sum(axis=1, keepdims=True)
    normalised = adjacency / np.maximum(sums, 1e-10)
    weights = np.array([1.0 if node["feature_type"] == "logit" else 0.0 for node in document["nodes"]])
    influence = weights @ (np.linalg.inv(np.eye(n) - normalised) - np.eye(n))
    order = np.argsort(-influence, kind="stable")
    cumulative = np.cumsum(influence[order]) / influence.sum()
    share = np.empty(n)
    share[order] = cumulative
    return {node: min(float(share[i]), 1.0) for node, i in index.items()}


@pytest.fixture
def summed(tmp_path):
    return build_circuit(tmp_path / "b1", "circuit-one", task="agreement", seed=3)


def test_export_validates_against_neuronpedias_schema_and_circuit_tracers_models(summed):
    document = graph_to_attribution_json(bundle_to_networkx(summed), summed.manifest)
    _validate_schema(document)
    models = _load_module("circuit_tracer/frontend/graph_models.py", "ct_graph_models")
    parsed = models.Model(**document)
    assert len(parsed.nodes) == summed.nodes.height
    assert len(parsed.links) == summed.edges.height
    # the viewer's layout needs: numeric rows, >= 2 prompt tokens, a parsable (p=...) on logits
    assert all(n["layer"].isdigit() for n in document["nodes"])
    assert len(document["metadata"]["prompt_tokens"]) >= 2
    logits = [n for n in document["nodes"] if n["feature_type"] == "logit"]
    assert len(logits) == 1 and float(logits[0]["clerp"].split("(p=")[1].split(")")[0]) == 1.0
    assert {n["feature_type"] for n in document["nodes"]} == {"sae feature", "embed reconstruction error",
                                                              "attn reconstruction error", "mlp reconstruction error",
                                                              "resid reconstruction error", "logit"}


def test_influence_matches_circuit_tracers_definition(summed):
    document = graph_to_attribution_json(bundle_to_networkx(summed), summed.manifest)
    expected = _independent_influence(document)
    for node in document["nodes"]:
        assert node["influence"] == pytest.approx(expected[node["node_id"]], abs=1e-9)
    # as in circuit-tracer, w A + w A^2 + ... leaves out the logits' own weight: they come last (share 1),
    # and the viewer keeps logits whatever the pruning threshold
    output = next(n for n in document["nodes"] if n["feature_type"] == "logit")
    assert output["influence"] == pytest.approx(1.0)
    assert min(n["influence"] for n in document["nodes"]) < 0.5


def test_rows_follow_the_forward_order_of_sites(summed):
    document = graph_to_attribution_json(bundle_to_networkx(summed), summed.manifest)
    row = {n["sfc_node_id"]: int(n["layer"]) for n in document["nodes"]}
    assert row["embed/err"] < row["attn_0/err"] < row["mlp_0/err"] < row["resid_0/err"] < row["attn_1/err"]
    assert row["output"] > max(v for k, v in row.items() if k != "output")
    for link in document["links"]:
        by_id = {n["node_id"]: int(n["layer"]) for n in document["nodes"]}
        assert by_id[link["source"]] < by_id[link["target"]]


def test_round_trip_gives_back_the_bundle(tmp_path, summed):
    document = json.loads(json.dumps(graph_to_attribution_json(bundle_to_networkx(summed), summed.manifest)))
    manifest, nodes, edges = import_graph(document)
    back = write_bundle(tmp_path / "back", manifest, nodes, edges)
    sort_nodes = ["node_id", "position"]
    assert back.nodes.select(NODE_COLUMNS).sort(sort_nodes).equals(summed.nodes.select(NODE_COLUMNS).sort(sort_nodes))
    sort_edges = ["src", "src_position", "dst", "dst_position"]
    assert back.edges.select(summed.edges.columns).sort(sort_edges).equals(summed.edges.sort(sort_edges))
    for key in ("circuit_id", "task", "model", "dictionaries", "method", "metric", "aggregation", "evaluation"):
        assert back.manifest[key] == summed.manifest[key]


def test_positional_circuit_keeps_positions_as_ctx_idx(tmp_path):
    bundle = build_circuit(tmp_path / "pos", "positional", seed=5, position=2)
    document = graph_to_attribution_json(bundle_to_networkx(bundle), bundle.manifest)
    _validate_schema(document)
    assert {n["ctx_idx"] for n in document["nodes"]} == {2}
    assert document["metadata"]["prompt_tokens"] == ["pos 0", "pos 1", "pos 2"]
    manifest, nodes, _ = import_graph(document)
    assert set(nodes["position"].to_list()) == {2}


def _circuit_tracer_graph(models) -> dict:
    """A graph laid out exactly as circuit-tracer's create_graph_files writes one (its own Node builders)."""
    node = models.Node
    tokens = [(0, 2), (1, 7), (2, 9)]  # (position, vocab id)
    nodes = [node.token_node(pos, vocab) for pos, vocab in tokens]
    nodes += [node.feature_node(0, 1, 123, activation=2.5), node.feature_node(1, 2, 45, activation=1.25),
              node.error_node(0, 2)]
    nodes += [node.logit_node(2, 11, " cats", num_layers=2, target_logit=True, token_prob=0.6),
              node.logit_node(2, 12, " dogs", num_layers=2, token_prob=0.3)]
    ids = {n.node_id: n for n in nodes}
    links = [("E_7_1", "0_123_1", 1.5), ("0_123_1", "1_45_2", 0.8), ("E_9_2", "1_45_2", -0.5),
             ("0_0_2", "1_45_2", 0.25), ("1_45_2", "3_11_2", 2.0), ("1_45_2", "3_12_2", -1.0),
             ("E_9_2", "3_12_2", 0.4)]
    assert all(s in ids and t in ids for s, t, _ in links)
    meta = models.Metadata(slug="cats-dogs", scan="gemma-2-2b", transcoder_list=[], prompt_tokens=["<bos>", " The", " pet"],
                           prompt="The pet", node_threshold=0.8)
    qparams = models.QParams(pinnedIds=[], supernodes=[], linkType="both", clickedId="", sg_pos="")
    model = models.Model(metadata=meta, qParams=qparams, nodes=nodes,
                         links=[{"source": s, "target": t, "weight": w} for s, t, w in links])
    return json.loads(model.model_dump_json())


def test_circuit_tracer_graph_imports_with_the_right_nodes_edges_and_effects(tmp_path):
    models = _load_module("circuit_tracer/frontend/graph_models.py", "ct_graph_models")
    document = _circuit_tracer_graph(models)
    _validate_schema(document)
    manifest, nodes, edges = import_graph(document, source="cats-dogs.json")
    bundle = write_bundle(tmp_path / "imported", manifest, nodes, edges)

    kinds = {(r["node_id"], r["position"]): r["kind"] for r in bundle.nodes.iter_rows(named=True)}
    assert kinds == {("token/2", 0): "token", ("token/7", 1): "token", ("token/9", 2): "token",
                     ("mlp_0/123", 1): "feature", ("mlp_1/45", 2): "feature", ("mlp_0/err", 2): "error",
                     ("logit/11", 2): "logit", ("logit/12", 2): "logit"}
    assert manifest["dictionaries"] == {"mlp_0": {"id": "gemma-2-2b/transcoder/mlp_0", "kind": "transcoder"},
                                        "mlp_1": {"id": "gemma-2-2b/transcoder/mlp_1", "kind": "transcoder"}}
    assert manifest["prompt_tokens"] == ["<bos>", " The", " pet"] and manifest["aggregation"] == "none"
    row = bundle.nodes.filter(pl.col("node_id") == "mlp_0/123").row(0, named=True)
    assert row["activation"] == 2.5 and row["feature_type"] == "cross layer transcoder"
    assert bundle.edges.height == 7

    # total effect on the probability-weighted logits, by a dense inverse: w ((I - A)^-1 - I)
    keys = list(zip(bundle.nodes["node_id"], bundle.nodes["position"]))
    index = {k: i for i, k in enumerate(keys)}
    a = np.zeros((len(keys), len(keys)))
    for r in bundle.edges.iter_rows(named=True):
        a[index[(r["dst"], r["dst_position"])], index[(r["src"], r["src_position"])]] += r["weight"]
    w = np.array([{"logit/11": 0.6, "logit/12": 0.3}.get(k[0], 0.0) for k in keys])
    expected = w @ (np.linalg.inv(np.eye(len(keys)) - a) - np.eye(len(keys)))
    for key, i in index.items():
        effect = bundle.nodes["effect"][i]
        if key[0].startswith("logit/"):
            assert effect == pytest.approx(w[i])
        else:
            assert effect == pytest.approx(expected[i], abs=1e-9)
    # E_7 -> F0 (1.5) -> F1 (0.8) -> logits (0.6*2 - 0.3*1): one path
    assert bundle.nodes.filter(pl.col("node_id") == "token/7")["effect"][0] == pytest.approx(1.5 * 0.8 * (1.2 - 0.3))


def test_imported_graph_loads_and_queries(tmp_path):
    models = _load_module("circuit_tracer/frontend/graph_models.py", "ct_graph_models")
    path = tmp_path / "cats-dogs.json"
    path.write_text(json.dumps(_circuit_tracer_graph(models)))
    runner = CliRunner()
    out, store = tmp_path / "bundle", tmp_path / "store"
    result = runner.invoke(main, ["import", "circuit-tracer", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    circuit_id = read_bundle(out).circuit_id
    assert runner.invoke(main, ["load", str(out), "--store", str(store)]).exit_code == 0
    result = runner.invoke(main, ["query", "top-nodes", "-p", "circuit", circuit_id, "--store", str(store),
                                  "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "mlp_1/45" in result.output
    # and back out: the export of the stored circuit validates and keeps both logits
    result = runner.invoke(main, ["export", circuit_id, "--format", "neuronpedia", "--out", str(tmp_path / "np"),
                                  "--store", str(store)])
    assert result.exit_code == 0, result.output
    document = json.loads(next((tmp_path / "np").glob("cats-dogs*.json")).read_text())
    _validate_schema(document)
    assert sum(n["feature_type"] == "logit" for n in document["nodes"]) == 2
    assert sum(n["feature_type"] == "embedding" for n in document["nodes"]) == 3


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_export_directory_is_served_by_circuit_tracers_local_server(tmp_path):
    out, store = tmp_path / "graphs", tmp_path / "store"
    runner = CliRunner()
    ids = []
    for seed in (1, 2):
        bundle = build_circuit(tmp_path / f"b{seed}", f"circuit-{seed}", seed=seed)
        assert runner.invoke(main, ["load", str(bundle.path), "--store", str(store)]).exit_code == 0
        result = runner.invoke(main, ["export", bundle.circuit_id, "--format", "neuronpedia", "--out", str(out),
                                      "--store", str(store)])
        assert result.exit_code == 0, result.output
        ids.append(bundle.circuit_id)
    server_module = _load_module("circuit_tracer/frontend/local_server.py", "ct_local_server")
    port = _free_port()
    server = server_module.serve(data_dir=str(out), port=port)
    try:
        base = f"http://127.0.0.1:{port}"
        index = json.loads(urllib.request.urlopen(f"{base}/data/{GRAPH_METADATA}", timeout=10).read())
        assert [g["slug"] for g in index["graphs"]] == ids
        for slug in ids:
            graph = json.loads(urllib.request.urlopen(f"{base}/graph_data/{slug}.json", timeout=10).read())
            _validate_schema(graph)
            assert graph["metadata"]["slug"] == slug
        page = urllib.request.urlopen(f"{base}/index.html", timeout=10).read().decode()
        assert "graph-metadata.json" in page  # the viewer's page, which reads our index
    finally:
        server.stop()


def test_query_subgraph_export(tmp_path, summed):
    store = tmp_path / "store"
    runner = CliRunner()
    assert runner.invoke(main, ["load", str(summed.path), "--store", str(store)]).exit_code == 0
    result = runner.invoke(main, ["export", summed.circuit_id, "--format", "neuronpedia", "--out",
                                  str(tmp_path / "sub"), "--query", "top-nodes", "-p", "k", "3", "--slug", "top3",
                                  "--store", str(store)])
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "sub" / "top3.json").read_text())
    expected = (summed.nodes.with_columns(pl.col("effect").abs().alias("a")).sort("a", descending=True)
                .head(3)["node_id"].to_list())
    assert {n["sfc_node_id"] for n in document["nodes"]} == set(expected)


def test_bad_inputs_get_one_sentence(tmp_path, summed):
    with pytest.raises(InteropError, match="not a readable JSON file"):
        from sfc_graph.interop.attribution_graph import read_attribution_json

        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        read_attribution_json(bad)
    document = graph_to_attribution_json(bundle_to_networkx(summed), summed.manifest)
    document["links"].append({"source": document["nodes"][0]["node_id"], "target": "nowhere", "weight": 1.0})
    with pytest.raises(InteropError, match="does not join two nodes"):
        import_graph(document)
    file = tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(InteropError, match="is a file"):
        write_attribution_graph(graph_to_attribution_json(bundle_to_networkx(summed), summed.manifest), file)
    result = CliRunner().invoke(main, ["import", "circuit-tracer", str(tmp_path / "missing.json"), "--out",
                                       str(tmp_path / "x")])
    assert result.exit_code == 1 and "no such file" in result.output and "Traceback" not in result.output
