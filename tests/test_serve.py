"""``sfc serve`` in a real browser: Playwright driving Debian's headless Chromium against the app on 127.0.0.1.

Every number the page shows is checked against polars on the bundles the store was loaded from. Screenshots
go to the test's tmp dir and to tests/artifacts/ (git-ignored), for a person to look at.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from pathlib import Path

import polars as pl
import pytest

from builders import build_circuit
from sfc_graph.features import set_label, write_dashboards
from sfc_graph.store import open_store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]

playwright_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e .[test])")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Chromium is not installed (apt-get install chromium; scripts/setup.sh does it)")


# --- a store, and the app serving it --------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    bundles = {
        "circ-a": build_circuit(root / "a", "circ-a", task="agreement", seed=1, features_per_site=6),
        "circ-b": build_circuit(root / "b", "circ-b", task="ioi", seed=2, features_per_site=5),
    }
    spec = str(root / "store")
    bundle = bundles["circ-a"]
    dictionaries = bundle.manifest["dictionaries"]
    top = bundle.nodes.filter(pl.col("kind") == "feature").sort(pl.col("effect").abs(), descending=True).row(0, named=True)
    site = top["node_id"].split("/")[0]
    feature = f"{dictionaries[site]['id']}/{top['index']}"
    dashboard = {"examples": [{"doc": 0, "position": 3, "activation": 2.5, "tokens": ["the", "keys", "are"],
                               "acts": [0.0, 0.4, 2.5], "at": 2, "behaviour": "agreement"}],
                 "top_logits": [["were", 1.5]], "bottom_logits": [["was", -1.2]], "n_tokens": 100,
                 "histogram": {"edges": [0, 1, 2, 3], "counts": [3, 1, 2]}}
    with open_store(spec) as store:
        for b in bundles.values():
            store.load(b)
        write_dashboards(store, pl.DataFrame({
            "id": [feature], "dictionary": [dictionaries[site]["id"]], "latent": [top["index"]], "site": [top["site"]],
            "layer": [top["layer"]], "label": ["drafted"], "label_source": ["auto"], "density": [0.03],
            "max_activation": [2.5], "mean_activation": [1.1], "top_tokens": [["are"]], "top_logits": [["were"]],
            "bottom_logits": [["was"]], "dashboard": [json.dumps(dashboard)], "corpus": ["test"], "built_at": ["now"]}))
        set_label(store, feature, "plural verb after keys")

    import uvicorn

    from sfc_graph.serve.app import HOST, create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(spec), host=HOST, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            pytest.fail("the app did not start")
        time.sleep(0.05)
    yield {"url": f"http://{HOST}:{port}", "root": root, "bundles": bundles, "feature": feature, "label": "plural verb after keys"}
    server.should_exit = True
    thread.join(timeout=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, request, tmp_path):
    context = browser.new_context(viewport={"width": 1500, "height": 950})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    shot = f"{request.node.name}.png"
    page.screenshot(path=str(tmp_path / shot), full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
    context.close()
    assert not errors, errors


# --- independent expectations (polars on the bundles) -------------------------------------------------
def kept_nodes(bundle, threshold: float) -> pl.DataFrame:
    return bundle.nodes.filter((pl.col("effect").abs() >= threshold) | (pl.col("kind") == "output"))


def kept_edges(bundle, threshold: float) -> int:
    kept = set(kept_nodes(bundle, threshold)["node_id"])
    return bundle.edges.filter(pl.col("src").is_in(list(kept)) & pl.col("dst").is_in(list(kept))).height


def open_circuit(page, url: str, circuit: str) -> None:
    page.goto(f"{url}/#/circuit/{circuit}")
    page.wait_for_function("document.querySelector('#node-count').dataset.nodes !== undefined")


def drawn(page) -> int:
    return page.evaluate("sfcView.cy.nodes('[kind != \"row\"]').length")


# --- the tests ------------------------------------------------------------------------------------------
def test_circuit_page_draws_every_node_in_layers(served, page):
    bundle = served["bundles"]["circ-a"]
    open_circuit(page, served["url"], "circ-a")
    assert drawn(page) == bundle.nodes.height
    assert page.evaluate("sfcView.cy.edges().length") == bundle.edges.height
    assert page.get_attribute("#node-count", "data-nodes") == str(bundle.nodes.height)
    # error nodes are drawn apart (dashed triangles), the output as an octagon
    shapes = page.evaluate("""() => { const cy = sfcView.cy; return {
        error: cy.nodes('[kind = "error"]').map(n => n.style('shape') + '/' + n.style('border-style')),
        output: cy.nodes('[kind = "output"]').map(n => n.style('shape')) }; }""")
    assert set(shapes["error"]) == {"triangle/dashed"} and shapes["output"] == ["octagon"]
    # layers bottom to top: embed lowest on screen, then resid_1 above it, the output on top
    ys = page.evaluate("""() => Object.fromEntries(sfcView.cy.nodes('[kind = "row"]').map(n => [n.data('caption'),
        n.renderedPosition().y]))""")
    assert ys["embed"] > ys["attn_0"] > ys["resid_0"] > ys["resid_1"] > ys["output"]


def test_hovering_a_node_shows_its_dashboard(served, page):
    open_circuit(page, served["url"], "circ-a")
    where = page.evaluate("""(feature) => { const n = sfcView.cy.nodes().filter(n => n.data('feature') === feature)[0];
        const p = n.renderedPosition(); const box = document.querySelector('#cy').getBoundingClientRect();
        return {x: box.left + p.x, y: box.top + p.y}; }""", served["feature"])
    page.mouse.move(where["x"], where["y"])
    page.wait_for_function("(f) => document.querySelector('#panel').dataset.feature === f", arg=served["feature"])
    panel = page.text_content("#panel")
    assert served["label"] in panel and "manual" in panel
    assert "keys" in panel and "density 3.00%" in panel and "were +1.50" in panel
    assert "agreement" in panel and "In circuits" in panel
    # the label is on the node too
    assert served["label"] in page.evaluate("(f) => sfcView.cy.nodes().filter(n => n.data('feature') === f)[0].data('caption')",
                                            served["feature"])


def test_the_threshold_slider_refilters_at_query_time(served, page):
    bundle = served["bundles"]["circ-a"]
    open_circuit(page, served["url"], "circ-a")
    page.focus("#node-threshold")
    for presses in (40, 60):
        for _ in range(presses):
            page.keyboard.press("ArrowRight")
        value = page.eval_on_selector("#node-threshold", "el => el.value")
        page.wait_for_function("(v) => document.querySelector('#node-count').dataset.threshold === v", arg=value)
        threshold = float(value)
        assert threshold > 0
        expected = kept_nodes(bundle, threshold)
        assert 1 < expected.height < bundle.nodes.height, "pick presses that cut the circuit"
        assert drawn(page) == expected.height
        assert page.get_attribute("#node-count", "data-nodes") == str(expected.height)
        assert page.evaluate("sfcView.cy.edges().length") == kept_edges(bundle, threshold)


def test_a_named_query_returns_its_rows(served, page):
    bundle = served["bundles"]["circ-b"]
    page.goto(f"{served['url']}/#/query")
    page.wait_for_selector("#query-name option[value='top-nodes']", state="attached")
    page.select_option("#query-name", "top-nodes")
    page.fill("#query-params input[name='circuit']", "circ-b")
    page.fill("#query-params input[name='k']", "5")
    page.click("#run-query")
    page.wait_for_function("document.querySelectorAll('#result-table tbody tr').length > 0")
    cells = page.eval_on_selector_all("#result-table tbody tr", "rows => rows.map(r => r.cells[0].textContent)")
    expected = bundle.nodes.sort(pl.col("effect").abs(), descending=True).head(5)["node_id"].to_list()
    assert cells == expected
    headers = page.eval_on_selector_all("#result-table thead th", "hs => hs.map(h => h.textContent)")
    assert headers[-2:] == ["label", "top_tokens"]


def test_cypher_reads_and_a_write_is_refused(served, page):
    page.goto(f"{served['url']}/#/query")
    page.fill("#cypher", "MATCH (t:Task) RETURN t.name AS task ORDER BY task")
    page.click("#run-cypher")
    page.wait_for_function("document.querySelectorAll('#result-table tbody tr').length === 2")
    assert page.eval_on_selector_all("#result-table tbody td", "c => c.map(x => x.textContent)") == ["agreement", "ioi"]
    leak = served["root"] / "leak.csv"
    for statement in ("CREATE (t:Task {name: 'evil'})", "MATCH (n) DETACH DELETE n",
                      "LOAD FROM '/etc/hostname' RETURN *", f"COPY (MATCH (t:Task) RETURN t.name) TO '{leak}'"):
        page.fill("#cypher", statement)
        page.click("#run-cypher")
        page.wait_for_selector("#query-error:not([hidden])")
        message = page.text_content("#query-error")
        assert "refused" in message or "read-only" in message, message
    page.fill("#cypher", "MATCH (t:Task) RETURN count(t) AS n")
    page.click("#run-cypher")
    page.wait_for_function("document.querySelector('#result-table tbody td')?.textContent === '2'")
    assert not leak.exists()


def test_a_cypher_result_with_nodes_is_drawn_as_a_graph(served, page):
    page.goto(f"{served['url']}/#/query")
    page.fill("#cypher", "MATCH (c:Circuit {id: 'circ-b'})-[:HAS_NODE]->(a:CircuitNode)-[e:EDGE]->(b:CircuitNode) "
                         "RETURN a, e, b LIMIT 7")
    page.click("#run-cypher")
    page.wait_for_selector("#result-cy:not([hidden])")
    assert page.evaluate("sfcView.resultCy.edges().length") == 7
    assert page.evaluate("sfcView.resultCy.nodes().length") >= 2


def test_comparison_report_of_chosen_circuits(served, page):
    page.goto(f"{served['url']}/#/circuits")
    page.wait_for_selector("input.pick")
    for box in page.query_selector_all("input.pick"):
        box.check()
    page.click("#compare-selected")
    page.wait_for_function("document.querySelector('#report').src.includes('/reports/')", timeout=60_000)
    frame = page.frame_locator("#report")
    frame.locator("body").wait_for(timeout=60_000)
    text = frame.locator("body").text_content()
    assert "circ-a" in text and "circ-b" in text


def test_requests_for_another_host_are_refused(served):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{served['url']}/api/circuits", headers={"Host": "attacker.example"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
