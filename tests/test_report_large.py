"""Comparison reports over many circuits (hundreds come from `sfc discover`): ordered by clustering, detail for
the largest only, distributions instead of one line per circuit — checked against the hand-built circuits'
planted groups and an independent count of shared features."""

from __future__ import annotations

from collections import Counter

import polars as pl
from bs4 import BeautifulSoup

from builders import build_circuit
from sfc_graph.report.compare import build_comparison_report
from sfc_graph.report.data import LARGE_COMPARISON, SHOWN_CIRCUITS, gather, resolve_selectors


def _two_groups(tmp_path, store, n: int):
    """n circuits in two groups whose features come from disjoint pools (so they overlap only within a group)."""
    bundles = []
    for i in range(n):
        group = i % 2
        pool = range(0, 12) if group == 0 else range(40, 52)
        bundles.append((group, build_circuit(tmp_path / f"b{i}", f"circuit-{i:02d}", task=f"task-{group}", seed=i,
                                             feature_pool=pool, errors=False, features_per_site=3 + i % 4)))
    store.load_many([b for _, b in bundles])
    return bundles


def test_large_comparison_clusters_summarises_and_keeps_detail_for_the_largest(tmp_path, store):
    n = LARGE_COMPARISON + 6
    bundles = _two_groups(tmp_path, store, n)
    group_of = {b.circuit_id: g for g, b in bundles}
    circuits = resolve_selectors(store, ["task-0", "task-1"])
    data = gather(store, circuits, top_k=5)
    assert data.large and len(data.ids) == n

    # clustering puts each planted group in one contiguous run
    groups = [group_of[c] for c in data.ids]
    assert sum(a != b for a, b in zip(groups, groups[1:])) == 1

    # per-circuit detail only for the largest (by node count here: no behaviours)
    sizes = {b.circuit_id: b.nodes.height for _, b in bundles}
    expected = sorted(sizes, key=lambda c: (-sizes[c], c))[:SHOWN_CIRCUITS]
    assert data.shown == expected and set(data.top) == set(expected)

    # how many features are shared by how many circuits, counted independently from the bundles
    owners = Counter()
    for _, b in bundles:
        for feature in set(b.feature_identity().drop_nulls().to_list()):
            owners[feature] += 1
    expected_hist = Counter(k for k in owners.values() if k >= 2)
    got = dict(zip(data.shared_histogram["in circuits"], data.shared_histogram["features"]))
    assert got == dict(expected_hist)

    report = build_comparison_report(store, ["task-0", "task-1"], tmp_path / "report")
    soup = BeautifulSoup(report.html.read_text(), "html.parser")
    top_section = soup.find(id="top")
    headings = top_section.find_next_siblings("div", class_="grid")[0].find_all("h3")
    assert len(headings) == SHOWN_CIRCUITS
    assert "How many features are shared by how many circuits" in report.markdown.read_text()
    assert any("most often" in line for line in report.summary)
    assert all(p.stat().st_size > 0 for p in report.images)


def test_small_comparison_is_unchanged(tmp_path, store):
    _two_groups(tmp_path, store, 4)
    data = gather(store, resolve_selectors(store, ["task-0", "task-1"]), top_k=5)
    assert not data.large and data.shown == data.ids and set(data.top) == set(data.ids)
    assert isinstance(data.shared_histogram, pl.DataFrame)
