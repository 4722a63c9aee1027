"""The named query library: every query against an independent computation over the bundles' Parquet
(``query_oracle``), parameter checking, and the ``sfc query`` / ``sfc cypher`` commands.

Runs on the embedded store always and on Neo4j when SFC_NEO4J_URI is set (the module's store is loaded
once per backend).
"""

from __future__ import annotations

import json
import os

import polars as pl
import pytest
from click.testing import CliRunner

import query_oracle as oracle
from sfc_graph.cli.app import main as cli
from sfc_graph.cli.query_cmds import write_clause
from sfc_graph.errors import CircuitNotFound, QueryError
from sfc_graph.queries import all_queries, get_query, run_query
from sfc_graph.store import open_store

BACKENDS = [pytest.param("ladybug", id="ladybug")]
if os.environ.get("SFC_NEO4J_URI"):
    BACKENDS.append(pytest.param("neo4j", id="neo4j", marks=pytest.mark.neo4j))

QUERY_NAMES = ["top-nodes", "shared-features", "circuit-overlap", "upstream-paths", "downstream-paths",
               "feature-circuits", "neighborhood", "layer-profile", "error-share", "circuit-diff"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    return oracle.build_query_bundles(tmp_path_factory.mktemp("bundles"))


@pytest.fixture(scope="module", params=BACKENDS)
def spec(request, bundles, tmp_path_factory):
    if request.param == "neo4j":
        spec = os.environ["SFC_NEO4J_URI"]
        with open_store(spec) as store:
            store._run_in_transaction(["MATCH (n) DETACH DELETE n"], {})
    else:
        spec = str(tmp_path_factory.mktemp("store") / "store")
    with open_store(spec) as store:
        for bundle in bundles.values():
            store.load(bundle)
    return spec


@pytest.fixture(scope="module")
def qstore(spec):
    with open_store(spec, read_only=True) as opened:
        yield opened


def rows(frame: pl.DataFrame) -> list[tuple]:
    return [tuple(r) for r in frame.iter_rows()]


def close(a, b, tol=1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


def assert_rows_close(got: list[tuple], expected: list[tuple]) -> None:
    assert len(got) == len(expected), (got, expected)
    for g, e in zip(got, expected):
        assert len(g) == len(e)
        for x, y in zip(g, e):
            if isinstance(x, float) or isinstance(y, float):
                assert close(x, y), (g, e)
            elif isinstance(x, list):
                assert len(x) == len(y) and all(close(p, q) if isinstance(p, float) else p == q
                                                for p, q in zip(x, y)), (g, e)
            else:
                assert x == y, (g, e)


# --- the library itself ---------------------------------------------------------------------------------

def test_library_has_every_named_query_with_a_complete_header():
    names = {q.name for q in all_queries()}
    assert set(QUERY_NAMES) <= names
    for q in all_queries():
        assert q.description and q.columns
        used = set(__import__("re").findall(r"\$(\w+)", q.text))
        declared = {p.name for p in q.params}
        assert used <= declared, f"{q.name}: undeclared parameters {used - declared}"
        for dialect, text in q.variants:
            assert set(__import__("re").findall(r"\$(\w+)", text)) <= declared, f"{q.name}.{dialect}"


def test_issue_columns_and_parameters():
    expected_columns = {
        "top-nodes": ["node_id", "feature", "kind", "site", "layer", "position", "effect", "label", "top_tokens"],
        "shared-features": ["feature", "site", "layer", "count", "effects", "circuit_ids", "label", "top_tokens"],
        "circuit-overlap": ["circuit_a", "circuit_b", "jaccard", "weighted_overlap"],
        "upstream-paths": ["path", "weight"],
        "downstream-paths": ["path", "weight"],
        "feature-circuits": ["circuit", "task", "effect"],
        "neighborhood": ["direction", "other", "weight"],
        "layer-profile": ["site", "layer", "n_nodes", "abs_effect"],
        "error-share": ["site", "layer", "error_share"],
        "circuit-diff": ["node", "status", "effect_a", "effect_b"],
    }
    for name, columns in expected_columns.items():
        assert [c.name for c in get_query(name).columns] == columns
    defaults = {p.name: p.default for p in get_query("upstream-paths").params}
    assert defaults == {"circuit": None, "target": "output", "max_hops": 3, "min_weight": 0, "k": 10}
    assert {p.name: p.default for p in get_query("top-nodes").params} == {
        "circuit": None, "k": 20, "kind": None, "min_effect": 0}
    assert get_query("shared-features").param("min_count").default == 2


def test_variant_text_is_chosen_by_dialect():
    q = get_query("neighborhood")
    assert "toString(" in q.text_for("neo4j") and "toString(" not in q.text_for("ladybug")
    assert get_query("top-nodes").text_for("neo4j") == get_query("top-nodes").text_for("ladybug")


# --- every query against the oracle -------------------------------------------------------------------

@pytest.mark.parametrize("params", [
    {}, {"k": 3}, {"kind": "error"}, {"kind": "feature", "k": 100}, {"min_effect": 0.5}, {"min_effect": 50.0},
])
@pytest.mark.parametrize("circuit", ["agr-1", "positions"])
def test_top_nodes(qstore, bundles, circuit, params):
    got = qstore.query("top-nodes", circuit=circuit, **params)
    expected = oracle.top_nodes(bundles[circuit], **params)
    assert got.schema == expected.schema
    assert_rows_close(rows(got), rows(expected))
    assert got.height == min(params.get("k", 20), expected.height)


@pytest.mark.parametrize("min_effect", [0.0, 0.4])
def test_feature_circuits(qstore, bundles, min_effect):
    shared = oracle.shared_features(bundles, circuits=list(bundles), min_count=3)
    assert shared, "the fixture should share features between circuits"
    for feature in list(shared)[:5]:
        got = qstore.query("feature-circuits", feature=feature, min_effect=min_effect)
        assert_rows_close(rows(got), oracle.feature_circuits(bundles, feature, min_effect))


@pytest.mark.parametrize("params", [{}, {"kind": "feature"}, {"kind": "error"}, {"min_effect": 0.5}])
@pytest.mark.parametrize("circuit", ["agr-1", "positions"])
def test_layer_profile(qstore, bundles, circuit, params):
    got = qstore.query("layer-profile", circuit=circuit, **params)
    assert_rows_close(rows(got), rows(oracle.layer_profile(bundles[circuit], **params)))


@pytest.mark.parametrize("min_effect", [0.0, 0.3, 100.0])
@pytest.mark.parametrize("circuit", ["ioi-1", "positions"])
def test_error_share(qstore, bundles, circuit, min_effect):
    got = qstore.query("error-share", circuit=circuit, min_effect=min_effect)
    expected = oracle.error_share(bundles[circuit], min_effect)
    assert {(s, l) for s, l, _ in rows(got)} == set(expected)
    for site, layer, share in rows(got):
        assert close(share, expected[(site, layer)])
    assert rows(got)[-1][:2] == ("all", None)
    assert got.schema == {"site": pl.String, "layer": pl.Int64, "error_share": pl.Float64}


@pytest.mark.parametrize("params", [
    {"circuits": ["agr-1", "agr-2", "ioi-1", "positions"]},
    {"circuits": ["ioi-1", "agr-1"], "min_count": 2},
    {"circuits": ["agr-1", "agr-2", "ioi-1", "positions"], "min_count": 3, "min_effect": 0.2},
    {"circuits": ["agr-1", "other-model"]},
    {"circuits": ["agr-1", "agr-2"], "min_count": 1},
    {"tasks": ["ioi", "agreement"]},
    {"tasks": ["agreement"], "min_count": 1},
])
def test_shared_features(qstore, bundles, params):
    got = qstore.query("shared-features", **params)
    expected = oracle.shared_features(bundles, **params)
    found = {r[0]: r[1:6] for r in rows(got)}
    assert got["label"].null_count() == got.height  # no labels in these circuits (tests/test_features.py has some)
    assert set(found) == set(expected)
    for feature, (site, layer, count, effects, circuit_ids) in found.items():
        e_site, e_layer, e_count, e_effects, e_circuits = expected[feature]
        assert (site, layer, count) == (e_site, e_layer, e_count)
        assert len(effects) == len(e_effects) and all(close(a, b) for a, b in zip(effects, e_effects))
        assert circuit_ids == e_circuits
    counts = got["count"].to_list()
    assert counts == sorted(counts, reverse=True)


def test_shared_features_none_and_many(qstore):
    empty = qstore.query("shared-features", circuits=["agr-1", "agr-2"], min_count=99)
    assert empty.height == 0
    assert empty.schema == {"feature": pl.String, "site": pl.String, "layer": pl.Int64, "count": pl.Int64,
                            "effects": pl.List(pl.Float64), "circuit_ids": pl.List(pl.String), "label": pl.String,
                            "top_tokens": pl.List(pl.String)}
    # features of different models never meet
    assert not any("toy-b/" in f for f in qstore.query("shared-features", circuits=["agr-1", "other-model"])["feature"])


@pytest.mark.parametrize("circuits,min_effect", [
    (["agr-1", "agr-2"], 0.0),
    (["agr-1", "agr-2", "ioi-1", "positions", "other-model"], 0.0),
    (["ioi-1", "agr-1", "positions"], 0.3),
    (["agr-1", "agr-2"], 1000.0),
])
def test_circuit_overlap(qstore, bundles, circuits, min_effect):
    got = qstore.query("circuit-overlap", circuits=circuits, min_effect=min_effect)
    assert_rows_close(rows(got), oracle.circuit_overlap(bundles, circuits, min_effect))


@pytest.mark.parametrize("a,b,min_effect", [
    ("agr-1", "agr-2", 0.0), ("agr-1", "positions", 0.0), ("ioi-1", "other-model", 0.0), ("agr-1", "agr-2", 0.4),
    ("agr-1", "agr-1", 0.0),
])
def test_circuit_diff(qstore, bundles, a, b, min_effect):
    got = qstore.query("circuit-diff", a=a, b=b, min_effect=min_effect)
    expected = oracle.circuit_diff(bundles[a], bundles[b], min_effect)
    found = {r[0]: r[1:] for r in rows(got)}
    assert set(found) == set(expected)
    for node, (status, ea, eb) in found.items():
        e_status, e_a, e_b = expected[node]
        assert status == e_status and close(ea, e_a) and close(eb, e_b)
    order = {"both": 0, "only_a": 1, "only_b": 2}
    statuses = [order[s] for s in got["status"]]
    assert statuses == sorted(statuses)


@pytest.mark.parametrize("circuit,node,min_weight", [
    ("agr-1", "resid_0/err", 0.0), ("agr-1", "output", 0.0), ("ioi-1", "mlp_0/err", 0.5),
    ("positions", "output", 0.0), ("positions", "output@2", 0.0), ("positions", "embed/err@0", 0.0),
])
def test_neighborhood(qstore, bundles, circuit, node, min_weight):
    from sfc_graph.naming import parse_node_key

    node_id, position = parse_node_key(node)
    got = qstore.query("neighborhood", circuit=circuit, node=node, min_weight=min_weight)
    expected = oracle.neighborhood(bundles[circuit], node_id, position, min_weight)
    assert_rows_close(rows(got), expected)
    assert got.height > 0 or min_weight > 0


def _any_feature(bundle, site_prefix: str) -> str:
    return bundle.nodes.filter(pl.col("node_id").str.starts_with(site_prefix))["node_id"][0]


@pytest.mark.parametrize("params", [
    {}, {"max_hops": 1}, {"max_hops": 4, "k": 25}, {"min_weight": 0.5, "k": 50}, {"k": 1}, {"max_hops": 2, "k": 200},
])
@pytest.mark.parametrize("circuit", ["agr-1", "ioi-1", "positions"])
def test_upstream_paths(qstore, bundles, circuit, params):
    got = qstore.query("upstream-paths", circuit=circuit, **params)
    expected = oracle.ranked_paths(bundles[circuit], "output", upstream=True, **params)
    assert_rows_close(rows(got), [(p, w) for p, w in expected])
    assert got.height == len(expected) and got.height > 0


def test_upstream_paths_into_an_inner_node_and_one_position(qstore, bundles):
    target = _any_feature(bundles["agr-2"], "mlp_1/")
    got = qstore.query("upstream-paths", circuit="agr-2", target=target, max_hops=3, k=15)
    assert_rows_close(rows(got), oracle.ranked_paths(bundles["agr-2"], target, upstream=True, max_hops=3, k=15))
    got = qstore.query("upstream-paths", circuit="positions", target="output@2", k=30)
    expected = oracle.ranked_paths(bundles["positions"], "output@2", upstream=True, k=30)
    assert_rows_close(rows(got), expected)
    assert all(path[-1] == "output@2" for path in got["path"])


@pytest.mark.parametrize("params", [{}, {"max_hops": 4, "k": 30}, {"min_weight": 0.3}])
@pytest.mark.parametrize("circuit,source", [("agr-1", "embed/err"), ("ioi-1", "attn_0/err"),
                                            ("positions", "embed/err@0")])
def test_downstream_paths(qstore, bundles, circuit, source, params):
    got = qstore.query("downstream-paths", circuit=circuit, source=source, **params)
    expected = oracle.ranked_paths(bundles[circuit], source, upstream=False, **params)
    assert_rows_close(rows(got), expected)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("reverse", [True, False])
def test_best_paths_with_gains_and_cycles(seed, reverse):
    """The search's bound must stay exact when |weight| > 1 and the graph has cycles (brute force agrees)."""
    import math
    import random

    import networkx as nx

    from sfc_graph.queries.post import best_paths

    rng = random.Random(seed)
    graph = nx.gnp_random_graph(9, 0.35, seed=seed, directed=True)
    for u, v in graph.edges:
        graph.edges[u, v]["weight"] = rng.uniform(-3, 3)
    anchor = 0
    step: dict = {}
    for u, v, w in graph.edges(data="weight"):
        near, far = (v, u) if reverse else (u, v)
        step.setdefault(near, ([], []))
        step[near][0].append(far)
        step[near][1].append(w)
    labels = {n: f"n{n}" for n in graph}
    got = best_paths(step, [anchor], labels, max_hops=4, k=15, reverse=reverse)
    expected = []
    for other in graph:
        if other == anchor:
            continue
        src, dst = (other, anchor) if reverse else (anchor, other)
        for path in nx.all_simple_paths(graph, src, dst, cutoff=4):
            weight = math.prod(graph.edges[a, b]["weight"] for a, b in zip(path, path[1:]))
            expected.append(([labels[n] for n in path], weight))
    expected.sort(key=lambda pw: (-abs(pw[1]), len(pw[0]), tuple(pw[0])))
    assert_rows_close([tuple(r) for r in got], [tuple(r) for r in expected[:15]])


def test_paths_from_a_node_without_edges_are_empty_and_typed(qstore):
    got = qstore.query("downstream-paths", circuit="agr-1", source="output")
    assert got.height == 0 and got.schema == {"path": pl.List(pl.String), "weight": pl.Float64}
    got = qstore.query("upstream-paths", circuit="agr-1", min_weight=1e9)
    assert got.height == 0 and got.schema == {"path": pl.List(pl.String), "weight": pl.Float64}


def test_every_result_has_the_declared_columns_and_dtypes(qstore):
    feature = qstore.query("top-nodes", circuit="agr-1", kind="feature", k=1)["feature"][0]
    examples = {
        "top-nodes": {"circuit": "agr-1", "min_effect": 1e9},
        "shared-features": {"circuits": ["agr-1", "ioi-1"], "min_count": 5},
        "circuit-overlap": {"circuits": ["agr-1", "ioi-1"]},
        "upstream-paths": {"circuit": "agr-1", "min_weight": 1e9},
        "downstream-paths": {"circuit": "agr-1", "source": "output"},
        "feature-circuits": {"feature": feature, "min_effect": 1e9},
        "neighborhood": {"circuit": "agr-1", "node": "output", "min_weight": 1e9},
        "layer-profile": {"circuit": "agr-1", "min_effect": 1e9},
        "error-share": {"circuit": "agr-1", "min_effect": 1e9},
        "circuit-diff": {"a": "agr-1", "b": "ioi-1", "min_effect": 1e9},
    }
    for name in QUERY_NAMES:
        frame = qstore.query(name, **examples[name])
        assert frame.schema == get_query(name).schema, name


# --- parameter checking ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,params,error,fragment", [
    ("no-such-query", {}, QueryError, "no query named"),
    ("top-node", {}, QueryError, "did you mean 'top-nodes'"),
    ("top-nodes", {}, QueryError, "needs the parameter 'circuit'"),
    ("top-nodes", {"circuit": "agr-1", "kk": 3}, QueryError, "has no parameter 'kk'"),
    ("top-nodes", {"circuit": "agr-1", "k": "ten"}, QueryError, "must be an integer"),
    ("top-nodes", {"circuit": "agr-1", "k": 2.5}, QueryError, "must be an integer"),
    ("top-nodes", {"circuit": "agr-1", "k": 0}, QueryError, "at least 1"),
    ("top-nodes", {"circuit": "agr-1", "k": True}, QueryError, "must be an integer"),
    ("top-nodes", {"circuit": "agr-1", "kind": "neuron"}, QueryError, "one of feature, error, output"),
    ("top-nodes", {"circuit": "agr-1", "min_effect": "big"}, QueryError, "finite number"),
    ("top-nodes", {"circuit": "agr-1", "min_effect": float("nan")}, QueryError, "finite number"),
    ("top-nodes", {"circuit": None}, QueryError, "cannot be null"),
    ("top-nodes", {"circuit": "nope"}, CircuitNotFound, "no circuit 'nope'"),
    ("circuit-diff", {"a": "agr-1", "b": "nope"}, CircuitNotFound, "no circuit 'nope'"),
    ("circuit-overlap", {"circuits": ["agr-1", "nope"]}, CircuitNotFound, "no circuit 'nope'"),
    ("circuit-overlap", {"circuits": ["agr-1"]}, QueryError, "at least two"),
    ("circuit-overlap", {"circuits": []}, QueryError, "non-empty list"),
    ("shared-features", {}, QueryError, "exactly one of the parameters circuits, tasks"),
    ("shared-features", {"circuits": ["agr-1"], "tasks": ["ioi"]}, QueryError, "exactly one"),
    ("shared-features", {"tasks": ["nope"]}, QueryError, "task 'nope'"),
    ("shared-features", {"circuits": "agr-1", "min_count": 0}, QueryError, "at least 1"),
    ("feature-circuits", {"feature": "toy/embed/sae-64/999"}, QueryError, "no feature"),
    ("neighborhood", {"circuit": "agr-1", "node": "resid_0/999"}, QueryError, "no node 'resid_0/999'"),
    ("neighborhood", {"circuit": "positions", "node": "output@7"}, QueryError, "at position 7"),
    ("upstream-paths", {"circuit": "agr-1", "target": "nope"}, QueryError, "no node 'nope' in circuit"),
    ("upstream-paths", {"circuit": "agr-1", "max_hops": 99}, QueryError, "at most 8"),
    ("downstream-paths", {"circuit": "agr-1"}, QueryError, "needs the parameter 'source'"),
])
def test_bad_parameters_are_one_sentence(qstore, name, params, error, fragment):
    with pytest.raises(error) as info:
        run_query(qstore, name, params)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_list_parameters_take_comma_separated_text_and_drop_repeats(qstore):
    a = qstore.query("circuit-overlap", circuits="agr-1,agr-2")
    b = qstore.query("circuit-overlap", circuits=["agr-1", "agr-2", "agr-1"])
    assert a.equals(b) and a.height == 1


# --- sfc query / sfc cypher -----------------------------------------------------------------------------

def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_cli_query_json_matches_the_api(qstore, spec):
    result = invoke("query", "top-nodes", "-p", "circuit", "agr-1", "-p", "k", "5", "--store", spec,
                    "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == qstore.query("top-nodes", circuit="agr-1", k=5).to_dicts()


def test_cli_query_list(spec):
    result = invoke("query", "--list", "--format", "json")
    assert result.exit_code == 0
    listed = {row["name"]: row for row in json.loads(result.output)}
    assert set(QUERY_NAMES) <= set(listed)
    assert "max_hops: int = 3" in listed["upstream-paths"]["parameters"]
    table = invoke("query", "--list")
    assert "list[circuit]" in table.output  # not eaten as rich markup


def test_cli_query_formats(qstore, spec, tmp_path):
    args = ["query", "shared-features", "-p", "circuits", '["agr-1","agr-2","ioi-1"]', "--store", spec]
    expected = qstore.query("shared-features", circuits=["agr-1", "agr-2", "ioi-1"])
    out = tmp_path / "shared.parquet"
    assert invoke(*args, "--format", "parquet", "--out", str(out)).exit_code == 0
    assert pl.read_parquet(out).equals(expected)
    csv = invoke(*args, "--format", "csv")
    assert csv.exit_code == 0 and csv.output.splitlines()[0] == "feature,site,layer,count,effects,circuit_ids,label,top_tokens"
    assert len(csv.output.splitlines()) == expected.height + 1
    table = invoke(*args)
    assert table.exit_code == 0 and expected["feature"][0] in table.output


def test_cli_string_parameters_stay_strings(spec):
    # a numeric-looking id is a circuit id, not a number; it is unknown here, so: one sentence, exit 1
    result = CliRunner().invoke(cli, ["query", "top-nodes", "-p", "circuit", "123", "--store", spec])
    assert result.exit_code == 1 and "no circuit '123'" in result.output


@pytest.mark.parametrize("args,fragment", [
    (["query", "nope"], "no query named 'nope'"),
    (["query", "top-nodes", "-p", "circuit", "nope"], "no circuit 'nope'"),
    (["query", "top-nodes", "-p", "circuit", "agr-1", "-p", "k", "x"], "must be an integer"),
    (["query", "top-nodes"], "needs the parameter 'circuit'"),
    (["query", "neighborhood", "-p", "circuit", "agr-1", "-p", "node", "zz/1"], "no node 'zz/1'"),
    (["query"], "give a query NAME"),
])
def test_cli_errors_are_one_sentence(spec, args, fragment):
    result = CliRunner().invoke(cli, [*args, "--store", spec])
    assert result.exit_code != 0
    assert fragment in result.output
    assert "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) <= 3  # usage lines for UsageError


@pytest.mark.parametrize("statement", [
    "MATCH (c:Circuit) DETACH DELETE c",
    "MATCH (n:CircuitNode) SET n.effect = 0",
    "CREATE (:Task {name: 'x'})",
    "MERGE (t:Task {name: 'x'}) RETURN t",
    "match (c:Circuit) remove c.task",
    "MATCH (c:Circuit) WITH c LIMIT 1\nDETACH\n  DELETE c",
    "DROP TABLE Task",
    "COPY Task FROM 'tasks.csv'",
    "CALL apoc.periodic.iterate('MATCH (n) RETURN n', 'DETACH DELETE n', {})",
])
def test_cypher_refuses_writes_and_leaves_the_store_unchanged(qstore, spec, statement):
    before = qstore.stats()
    result = CliRunner().invoke(cli, ["cypher", statement, "--store", spec])
    assert result.exit_code != 0
    assert "refused" in result.output and "--write" in result.output
    assert qstore.stats().equals(before)


def test_cypher_reads_and_parameters_cannot_inject(qstore, spec):
    before = qstore.stats()
    ok = invoke("cypher", "MATCH (c:Circuit) RETURN c.id AS id ORDER BY id", "--store", spec, "--format", "json")
    assert ok.exit_code == 0
    assert [r["id"] for r in json.loads(ok.output)] == sorted(["agr-1", "agr-2", "ioi-1", "other-model", "positions"])
    evil = "x' }) DETACH DELETE n //"
    result = invoke("cypher", "MATCH (c:Circuit) WHERE c.id = $id RETURN c.id AS id", "-p", "id", evil,
                    "--store", spec, "--format", "json")
    assert result.exit_code == 0 and json.loads(result.output) == []
    result = invoke("query", "top-nodes", "-p", "circuit", evil, "--store", spec)
    assert result.exit_code == 1 and "no circuit" in result.output
    assert qstore.stats().equals(before)


def test_cypher_write_with_flag(tmp_path, bundles):
    spec = str(tmp_path / "store")
    with open_store(spec) as opened:
        opened.load(bundles["agr-1"])
    result = invoke("cypher", "MATCH (c:Circuit {id: $id}) SET c.task = $task", "-p", "id", "agr-1",
                    "-p", "task", "renamed", "--store", spec, "--write")
    assert result.exit_code == 0, result.output
    with open_store(spec, read_only=True) as opened:
        assert opened.circuits()["task"].to_list() == ["renamed"]


@pytest.mark.parametrize("statement,clause", [
    ("MATCH (n) RETURN n.set AS s, n.`delete` AS d", None),
    ("MATCH (n) WHERE n.name = 'CREATE a thing; DELETE' RETURN n", None),
    ("MATCH (n) // DETACH DELETE n\nRETURN n", None),
    ("MATCH (n) WHERE n.x = $create RETURN {merge: 1} AS m", None),
    ("CALL show_tables() RETURN *", None),
    ("CALL db.labels()", None),
    ("MATCH (n) CALL { WITH n DETACH DELETE n }", "DETACH"),
    ("CALL dbms.setConfigValue('a', 'b')", "CALL dbms.setConfigValue"),
    ("LOAD CSV FROM 'file:///x' AS row RETURN row", "LOAD"),
    ("MATCH (n) FOREACH (x IN [1] | SET n.a = x)", "FOREACH"),
    ("MATCH (n) /* note */ SET n.a = 1", "SET"),
])
def test_write_clause_detection(statement, clause):
    assert write_clause(statement) == clause
