"""Issue 10, items 4, 5, 6 and 10: bad weights and settings, runaway path queries and diagrams, output
paths checked before any work, and the store opened before the model. One sentence each, never a traceback."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from builders import build_circuit
from sfc_graph.cli import main
from sfc_graph.errors import QueryError
from sfc_graph.store import open_store


def _sfc(*args: str):
    return CliRunner().invoke(main, list(args))


def _assert_sentence(result, *fragments: str, code: int = 1) -> None:
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    for fragment in fragments:
        assert fragment in result.output, result.output


@pytest.fixture(scope="module")
def dense_store(tmp_path_factory):
    """A dense circuit (many features per site, most forward edges present) in a store."""
    root = tmp_path_factory.mktemp("dense")
    bundle = build_circuit(root / "dense", "dense", features_per_site=30, feature_pool=range(60), edge_prob=0.9,
                           seed=5)
    with open_store(root / "store") as s:
        s.load(bundle)
    return root / "store", bundle


# --- item 4: non-finite weights and settings ------------------------------------------------------------

@pytest.mark.parametrize("poison", [float("nan"), float("inf")], ids=["nan", "inf"])
def test_a_dictionary_with_non_finite_weights_is_refused_on_load(tmp_path, poison):
    from safetensors.torch import load_file, save_file

    from sfc_graph import zoo
    from sfc_graph.errors import DictionaryError
    from sfc_graph.ingest.dictionaries import load_dictionary
    from sfc_graph.sites import parse_site

    source = Path(zoo.dictionary_path("resid_0"))
    target = tmp_path / "resid_0"
    shutil.copytree(source, target)
    tensors = load_file(str(target / "sae_weights.safetensors"))
    tensors["W_dec"] = tensors["W_dec"].clone()
    tensors["W_dec"][3, 5] = poison
    save_file(tensors, str(target / "sae_weights.safetensors"))
    d_model = tensors["W_dec"].shape[1]
    with pytest.raises(DictionaryError, match="W_dec holds 1 non-finite"):
        load_dictionary(target, parse_site("resid_0"), d_model=d_model, model_id="toy")
    # The intact copy loads: the check refuses damage, not the format.
    load_dictionary(source, parse_site("resid_0"), d_model=d_model, model_id="toy")


@pytest.mark.parametrize("option, value", [
    ("--eval-thresholds", "nan"), ("--eval-thresholds", "0.1,-1"), ("--eval-thresholds", "inf"),
    ("--node-threshold", "nan"), ("--edge-threshold", "inf"),
])
def test_non_finite_or_negative_thresholds_are_refused_before_computing(tmp_path, option, value):
    result = _sfc("ingest", "compute", "--model", "toy-zoo", "--dict", "toy-zoo", "--task", "ioi",
                  "--out", str(tmp_path / "b"), option, value)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "finite" in result.output or "range" in result.output, result.output
    assert not (tmp_path / "b").exists()


# --- item 5: bounded path queries and diagrams --------------------------------------------------------

def test_path_queries_have_a_bound_on_k(dense_store):
    store, _ = dense_store
    result = _sfc("query", "upstream-paths", "-p", "circuit", "dense", "-p", "k", "1000000000", "--store", str(store))
    _assert_sentence(result, "at most 10000")


@pytest.mark.parametrize("name", ["upstream-paths", "downstream-paths"])
def test_a_runaway_path_search_stops_at_its_budget_with_a_sentence(dense_store, name, monkeypatch):
    from sfc_graph.queries import post

    store, _ = dense_store
    monkeypatch.setattr(post, "PATH_BUDGET", 20_000)  # the same mechanism, reached sooner on a small circuit
    anchor = {"upstream-paths": {"target": "output"}, "downstream-paths": {"source": "embed/err"}}[name]
    with open_store(store, read_only=True, create=False) as s:
        with pytest.raises(QueryError, match="partial paths"):
            s.query(name, circuit="dense", max_hops=8, k=10_000, **anchor)
        # A bounded question on the same circuit still gets its exact answer.
        assert s.query(name, circuit="dense", max_hops=2, k=5, **anchor).height == 5


def test_best_paths_budget_counts_partial_paths():
    from sfc_graph.queries.post import PathBudgetExceeded, best_paths

    # A complete DAG on 12 nodes: astronomically many simple paths of 8 hops.
    nodes = list(range(12))
    step = {u: ([v for v in nodes if v > u], [0.9] * len([v for v in nodes if v > u])) for u in nodes}
    labels = {n: str(n) for n in nodes}
    with pytest.raises(PathBudgetExceeded):
        best_paths(step, [0], labels, max_hops=8, k=10**9, reverse=False, budget=1_000)
    assert len(best_paths(step, [0], labels, max_hops=2, k=3, reverse=False, budget=1_000)) == 3


def test_diagrams_are_bounded_before_graphviz_runs(dense_store, tmp_path):
    store, _ = dense_store
    result = _sfc("viz", "dense", "--out", str(tmp_path / "d.svg"), "--max-nodes", "3000", "--max-edges", "30000",
                  "--store", str(store))
    _assert_sentence(result, "at most 500 nodes", "sfc export")
    assert not (tmp_path / "d.svg").exists()


@pytest.mark.skipif(shutil.which("dot") is None, reason="needs Graphviz")
def test_graphviz_runs_under_a_time_limit():
    import graphviz

    from sfc_graph.errors import DiagramError
    from sfc_graph.report.viz import _pipe

    dot = graphviz.Digraph()
    for i in range(400):
        for j in range(i + 1, min(i + 40, 400)):
            dot.edge(str(i), str(j))
    with pytest.raises(DiagramError, match="did not finish the layout"):
        _pipe(dot, "svg", timeout_s=0.05)


# --- item 6: user mistakes are sentences, found before any work ------------------------------------------

def test_query_out_into_a_missing_directory_is_refused_before_the_query(dense_store, tmp_path):
    store, _ = dense_store
    result = _sfc("query", "top-nodes", "-p", "circuit", "dense", "--out", str(tmp_path / "nope" / "x.csv"),
                  "--format", "csv", "--store", str(store))
    _assert_sentence(result, "does not exist", code=2)


@pytest.mark.parametrize("command", ["export", "viz", "compare", "query"])
def test_out_below_a_file_is_refused_before_any_work(dense_store, tmp_path, command):
    store, _ = dense_store
    (tmp_path / "afile").write_text("x")
    out = str(tmp_path / "afile" / ("r" if command == "compare" else "g.svg" if command == "viz" else "g.graphml"))
    args = {
        "export": ["export", "dense", "--out", out],
        "viz": ["viz", "dense", "--out", out],
        "compare": ["compare", "dense", "--out", out],
        "query": ["query", "top-nodes", "-p", "circuit", "dense", "--out", out],
    }[command]
    result = _sfc(*args, "--store", str(store))
    _assert_sentence(result, "is a file, not a directory", code=2)


@pytest.mark.parametrize("value", ["1e29", "100000000000000000000000000000"])
def test_huge_numbers_are_refused_with_a_sentence(dense_store, value):
    store, _ = dense_store
    result = _sfc("query", "top-nodes", "-p", "circuit", "dense", "-p", "k", value, "--store", str(store))
    _assert_sentence(result, "'k'")
    result = _sfc("cypher", "MATCH (c:Circuit) RETURN c.id AS id LIMIT $k", "-p", "k", value, "--store", str(store))
    _assert_sentence(result)
    assert "Traceback" not in result.output and "pybind" not in result.output


def test_a_corrupt_model_safetensors_is_one_sentence(tmp_path):
    from sfc_graph import zoo

    model_dir = tmp_path / "model"
    shutil.copytree(Path(zoo.zoo_dir()) / "model", model_dir)
    data = (model_dir / "model.safetensors").read_bytes()
    (model_dir / "model.safetensors").write_bytes(b"\xff" * 64 + data[64:])
    result = _sfc("ingest", "compute", "--model", str(model_dir), "--dict", "toy-zoo", "--task", "ioi",
                  "--out", str(tmp_path / "b"), "--threads", "1")
    _assert_sentence(result, "model.safetensors", "not a readable safetensors file")


def test_an_oserror_while_writing_output_is_one_sentence(dense_store, tmp_path, monkeypatch):
    """The safety net in cli/app.py: what changed between the check and the write still reads as a sentence."""
    import polars as pl

    store, _ = dense_store

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device", str(tmp_path / "x.parquet"))

    monkeypatch.setattr(pl.DataFrame, "write_parquet", disk_full)
    result = _sfc("query", "top-nodes", "-p", "circuit", "dense", "--format", "parquet", "--out",
                  str(tmp_path / "x.parquet"), "--store", str(store))
    _assert_sentence(result, "no space left on the device")


# --- item 10: the store is opened before the model -------------------------------------------------------

def test_ingest_run_reports_a_bad_store_before_loading_the_model(tmp_path, monkeypatch):
    import sfc_graph.ingest.executor as executor
    import sfc_graph.ingest.model as model

    def too_early(*args, **kwargs):
        raise AssertionError("the model was loaded before the store was opened")

    monkeypatch.setattr(model, "load_model", too_early)
    monkeypatch.setattr(executor, "run_circuits", too_early)
    store = tmp_path / "store"
    store.mkdir()
    (store / "sfc-store.json").write_text(json.dumps({"format": 99, "engine": "ladybug"}))
    job = tmp_path / "job.toml"
    job.write_text('model = "toy-zoo"\ndictionaries = ["toy-zoo"]\ntasks = ["ioi"]\nmethods = ["attrib"]\n'
                   'out = "bundles"\n')
    result = _sfc("ingest", "run", str(job), "--store", str(store))
    _assert_sentence(result, "format 99")


def test_demo_never_overwrites_a_folder_that_is_not_a_bundle(tmp_path, monkeypatch):
    import sfc_graph.ingest as ingest

    def too_early(*args, **kwargs):
        raise AssertionError("the demo computed before checking its output folders")

    monkeypatch.setattr(ingest, "load_model", too_early)
    mine = tmp_path / "demo" / "bundles" / "ioi"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("keep")
    result = _sfc("demo", "--out", str(tmp_path / "demo"), "--store", str(tmp_path / "store"), "--task", "ioi",
                  "--quiet")
    _assert_sentence(result, "not a bundle")
    assert (mine / "notes.txt").read_text() == "keep"

