"""The comparison report's data part: plain polars tables, gathered without a plotting library, with one
``shared-features`` query (no query per feature), checked against the bundles' Parquet files."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

from builders import build_circuit
from sfc_graph.store import open_store

CIRCUITS = {"a1": dict(task="agreement", seed=21), "a2": dict(task="agreement", seed=22),
            "i1": dict(task="ioi", seed=23)}


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("report-data")
    bundles = {cid: build_circuit(root / cid, cid, feature_pool=range(8), **kw) for cid, kw in CIRCUITS.items()}
    path = str(root / "store")
    with open_store(path) as store:
        for bundle in bundles.values():
            store.load(bundle.path)
    return path, bundles


def test_data_module_needs_no_plotting_library():
    code = ("import sys, sfc_graph.report.data, sfc_graph.report.summary, sfc_graph.report.render; "
            "print(any(m.split('.')[0] == 'matplotlib' for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_shared_features_come_from_one_query_with_per_circuit_effects(loaded):
    from sfc_graph.report.data import MAX_SHARED_ROWS, gather, resolve_selectors

    path, bundles = loaded
    with open_store(path) as store:
        asked: list[str] = []
        query = store.query

        def counting(name, **params):
            asked.append(name)
            return query(name, **params)

        store.query = counting  # type: ignore[method-assign]
        circuits = resolve_selectors(store, ["agreement", "i1"])
        data = gather(store, circuits, top_k=5)
    assert asked.count("shared-features") == 1 and "feature-circuits" not in asked

    # Independent: which circuits hold each feature, and with what effect, straight from the Parquet files.
    held: dict[str, dict[str, float]] = {}
    for cid, bundle in bundles.items():
        dictionaries = {site: entry["id"] for site, entry in bundle.manifest["dictionaries"].items()}
        for row in bundle.nodes.filter(pl.col("kind") == "feature").iter_rows(named=True):
            site = row["site"] if row["site"] == "embed" else f"{row['site']}_{row['layer']}"
            held.setdefault(f"{dictionaries[site]}/{row['index']}", {})[cid] = row["effect"]
    shared = {f: by for f, by in held.items() if len(by) >= 2}
    assert data.n_shared == len(shared)
    assert data.shared.height == min(len(shared), MAX_SHARED_ROWS)
    labels = data.labels
    for row in data.shared.iter_rows(named=True):
        expected = shared[row["feature"]]
        assert row["count"] == len(expected)
        assert row["tasks"] == len({CIRCUITS[c]["task"] for c in expected})
        for cid in CIRCUITS:
            value = row[labels[cid]]
            assert (value is None) if cid not in expected else value == pytest.approx(expected[cid])
