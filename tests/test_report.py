"""``sfc compare`` and ``sfc viz``: the files they write are non-empty and valid, and say what the data says."""

from __future__ import annotations

import base64
import io
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl
import pytest
from bs4 import BeautifulSoup
from click.testing import CliRunner
from PIL import Image

from builders import build_circuit
from sfc_graph.cli import main
from sfc_graph.store import open_store

CIRCUITS = {
    "agr-1": dict(task="agreement", seed=11),
    "agr-2": dict(task="agreement", seed=12),
    "ioi-1": dict(task="ioi", seed=13),
    "gt-1": dict(task="greater_than", seed=14, errors=False),
}
SECTIONS = ["Summary", "Circuits", "Overlap between circuits", "Shared features", "Per-layer profiles",
            "Top features per circuit", "Error share", "Faithfulness and completeness"]
SVG = "{http://www.w3.org/2000/svg}"
needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


def _evaluation(seed: int) -> list[dict]:
    return [{"node_threshold": t, "n_nodes": n, "faithfulness": round(f - 0.03 * (seed % 5), 3), "completeness": c}
            for t, n, f, c in [(0.5, 6, 0.45, 0.6), (0.2, 14, 0.7, 0.35), (0.1, 24, 0.88, 0.12), (0.01, 36, 0.99, 0.02)]]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {cid: build_circuit(root / cid, cid, feature_pool=range(10), evaluation=_evaluation(kw["seed"]), **kw).path
            for cid, kw in CIRCUITS.items()}


@pytest.fixture(scope="module")
def store_path(bundles, tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("report") / "store")
    with open_store(path) as store:
        for bundle in bundles.values():
            store.load(bundle)
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_one_sentence_error(result, *words: str) -> None:
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0]


def assert_png(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG" and image.width > 200 and image.height > 100
    image.verify()


# --- sfc compare ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report_dir(store_path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("compare") / "report"
    result = invoke("compare", "agreement", "ioi-1", "greater_than", "--out", str(out), "--store", store_path)
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    return out


def test_html_report_is_self_contained_and_complete(report_dir):
    page = (report_dir / "report.html").read_text(encoding="utf-8")
    soup = BeautifulSoup(page, "html.parser")
    assert soup.title and "agreement" in soup.title.text
    assert [h.text for h in soup.find_all("h2")] == SECTIONS
    images = soup.find_all("img")
    assert len(images) == 5  # overlap, layers, top features, error share, faithfulness
    for image in images:
        head, _, payload = image["src"].partition(",")
        assert head == "data:image/png;base64"
        assert_png(base64.b64decode(payload))
    assert not soup.find_all("link") and not soup.find_all("script")
    circuits = soup.find("h2", string="Circuits").find_next("table").get_text()
    for cid in CIRCUITS:  # the task name "agreement" selected both of its circuits
        assert cid in circuits
    assert len(soup.select("ul.summary li")) >= 5


def test_markdown_report_and_plots_beside_it(report_dir):
    text = (report_dir / "report.md").read_text(encoding="utf-8")
    linked = [line.split("](")[1].rstrip(")") for line in text.splitlines() if line.startswith("![")]
    assert sorted(linked) == sorted(["overlap.png", "layer_profile.png", "top_features.png", "error_share.png",
                                     "faithfulness.png"])
    for name in linked:
        assert_png((report_dir / name).read_bytes())
    for section in SECTIONS:
        assert f"## {section}" in text


def test_report_numbers_come_from_the_bundles(report_dir, bundles):
    """Shared-feature effects per circuit, checked against the Parquet files (one position per node)."""
    soup = BeautifulSoup((report_dir / "report.html").read_text(encoding="utf-8"), "html.parser")
    table = soup.find("h2", string="Shared features").find_next("table")
    header = [th.text for th in table.find_all("th")]
    rows = [[td.text for td in tr.find_all("td")] for tr in table.tbody.find_all("tr")]
    assert rows and header[:4] == ["feature", "site", "count", "tasks"]
    labels = {"agreement · agr-1": "agr-1", "agreement · agr-2": "agr-2", "ioi": "ioi-1", "greater_than": "gt-1"}
    assert set(header[4:]) == set(labels)
    # feature id -> effect per circuit, built from the Parquet columns and the manifests (toy/<site>/sae-64/<index>)
    effects: dict[str, dict[str, float]] = {}
    for cid, path in bundles.items():
        manifest = json.loads((path / "manifest.json").read_text())
        for n in pl.read_parquet(path / "nodes.parquet").filter(pl.col("kind") == "feature").iter_rows(named=True):
            site = n["site"] if n["site"] == "embed" else f"{n['site']}_{n['layer']}"
            effects.setdefault(f"{manifest['dictionaries'][site]['id']}/{n['index']}", {})[cid] = n["effect"]
    for row in rows:
        feature = row[0]
        holders = 0
        for column, value in zip(header[4:], row[4:]):
            found = effects[feature].get(labels[column])
            if found is not None:
                holders += 1
                assert value == f"{found:.3g}"
            else:
                assert value == "·"
        assert int(row[2]) == holders >= 2


def test_single_circuit_report_has_no_overlap(store_path, tmp_path):
    from sfc_graph.report import build_comparison_report

    with open_store(store_path, read_only=True) as store:
        page = build_comparison_report(store, ["ioi-1"], tmp_path / "one")
    assert page == tmp_path / "one" / "report.html"
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    assert "Overlap between circuits" not in [h.text for h in soup.find_all("h2")]
    assert len(soup.find_all("img")) == 4
    assert not (tmp_path / "one" / "overlap.png").exists()


def test_compare_unknown_selector_is_one_sentence(store_path, tmp_path):
    result = invoke("compare", "agr-1", "no-such-task", "--out", str(tmp_path / "r"), "--store", store_path)
    assert_one_sentence_error(result, "'no-such-task'", "neither a circuit id nor a task")
    assert not (tmp_path / "r" / "report.html").exists()


# --- sfc viz -------------------------------------------------------------------------------------------
def expected_counts(bundle: Path, node_threshold: float, edge_threshold: float) -> tuple[int, int]:
    nodes = pl.read_parquet(bundle / "nodes.parquet")
    kept = set(nodes.filter((pl.col("effect").abs() >= node_threshold) | (pl.col("kind") == "output"))["node_id"])
    edges = pl.read_parquet(bundle / "edges.parquet").filter(
        (pl.col("weight").abs() >= edge_threshold) & pl.col("src").is_in(list(kept)) & pl.col("dst").is_in(list(kept))
    )
    return len(kept), edges.height


def svg_groups(path: Path) -> tuple[dict[str, ET.Element], list[ET.Element]]:
    root = ET.parse(path).getroot()
    nodes = {g.find(f"{SVG}title").text: g for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    edges = [g for g in root.iter(f"{SVG}g") if g.get("class") == "edge"]
    return nodes, edges


@needs_dot
def test_svg_diagram(store_path, bundles, tmp_path):
    out = tmp_path / "agr.svg"
    result = invoke("viz", "agr-1", "--out", str(out), "--node-threshold", "0.3", "--edge-threshold", "0.2",
                    "--store", store_path)
    assert result.exit_code == 0, result.output
    nodes, edges = svg_groups(out)
    circuit_nodes = {t: g for t, g in nodes.items() if not t.startswith("__row__")}
    n_nodes, n_edges = expected_counts(bundles["agr-1"], 0.3, 0.2)
    assert len(circuit_nodes) == n_nodes and len(edges) == n_edges
    assert "output" in circuit_nodes
    # error nodes are dashed; edges are blue or red
    errors = [g for t, g in circuit_nodes.items() if t.endswith("/err")]
    assert errors and all(g.find(f".//{SVG}polygon").get("stroke-dasharray") for g in errors)
    strokes = {p.get("stroke") for g in edges for p in g.iter(f"{SVG}path")}
    assert strokes == {"#2166ac", "#b2182b"}
    # layers run bottom to top: the embed row sits lower (larger y) than resid_1, which sits below the output
    y = {t: float(g.find(f"{SVG}text").get("y")) for t, g in nodes.items() if t.startswith("__row__")}
    assert y["__row__embed"] > y["__row__attn_0"] > y["__row__resid_1"] > y["__row__output"]


@needs_dot
def test_png_diagram_with_caps(store_path, tmp_path):
    out = tmp_path / "big.png"
    result = invoke("viz", "ioi-1", "--out", str(out), "--max-nodes", "8", "--store", store_path)
    assert result.exit_code == 0, result.output
    assert "note: showing the 8 nodes of largest |effect|" in result.output
    assert_png(out.read_bytes())
    svg = tmp_path / "capped.svg"
    result = invoke("viz", "ioi-1", "--out", str(svg), "--max-nodes", "8", "--max-edges", "5", "--store", store_path)
    nodes, edges = svg_groups(svg)
    assert len([t for t in nodes if not t.startswith("__row__")]) == 9 and len(edges) == 5
    assert "strongest of" in result.output


@needs_dot
def test_render_circuit_diagram_api(store_path, tmp_path):
    from sfc_graph.report import render_circuit_diagram

    with open_store(store_path, read_only=True) as store:
        path = render_circuit_diagram(store, "gt-1", tmp_path / "gt.svg", node_threshold=0.5)
    assert path == tmp_path / "gt.svg"
    nodes, _ = svg_groups(path)
    assert not any(t.endswith("/err") for t in nodes)  # gt-1 was built without error nodes


@pytest.mark.parametrize("args,words", [
    (["viz", "nope", "--out", "x.svg"], ["no circuit 'nope'"]),
    (["viz", "agr-1", "--out", "x.pdf"], [".svg or .png"]),
])
def test_viz_user_errors(store_path, tmp_path, args, words):
    args = [a if a not in ("x.svg", "x.pdf") else str(tmp_path / a) for a in args]
    assert_one_sentence_error(invoke(*args, "--store", store_path), *words)


def test_viz_without_graphviz_says_so(store_path, tmp_path, monkeypatch):
    import sfc_graph.report.viz as viz

    monkeypatch.setattr(viz.shutil, "which", lambda name, *a, **k: None)
    result = invoke("viz", "agr-1", "--out", str(tmp_path / "x.svg"), "--store", store_path)
    assert_one_sentence_error(result, "Graphviz", "apt-get install graphviz")
    assert not (tmp_path / "x.svg").exists()


def test_commands_have_help():
    for command in ("export", "compare", "viz"):
        result = invoke(command, "-h")
        assert result.exit_code == 0 and "--store" in result.output


def test_manifest_evaluation_reaches_the_report(report_dir, bundles):
    text = (report_dir / "report.md").read_text(encoding="utf-8")
    manifest = json.loads((bundles["ioi-1"] / "manifest.json").read_text())
    for point in manifest["evaluation"]:
        assert f"| ioi | {point['node_threshold']:.3g} | {point['n_nodes']} | {point['faithfulness']:.3g} |" in text
