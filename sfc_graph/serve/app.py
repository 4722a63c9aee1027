"""``sfc serve``: a local, read-only web view of a circuit store.

A small Starlette app over a store opened read-only. The page (``static/index.html`` + ``app.js``) draws
circuits with cytoscape.js (vendored in ``static/``: no CDN, no network at run time) and asks this app for
everything as JSON:

- ``GET /api/circuits`` — the circuits in the store;
- ``GET /api/circuit?id=&node_threshold=&edge_threshold=`` — a circuit's nodes above the thresholds (filtered by
  the database at query time) with labels, edges between them, and a layered layout (rows bottom to top);
- ``GET /api/feature?id=`` — a feature's dashboard and label;
- ``GET /api/queries``, ``POST /api/query`` — the named query library; ``POST /api/cypher`` — read-only Cypher;
- ``POST /api/compare`` — the comparison report of chosen circuits (:mod:`sfc_graph.report`), served from a
  temporary directory under ``/reports/``.

Nothing here writes to the store: it is opened read-only, and user Cypher goes through the store's read-only
path (the engine's verdict on the statement, then the keyword fence). Only 127.0.0.1 is served, and requests
naming another host are refused (DNS rebinding).
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import tempfile
import threading
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from .. import naming
from ..errors import QueryError, SfcError
from ..sites import Site
from ..store.statements import statement

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
MAX_NODES = 2000  # nodes drawn at once; beyond it the browser slows down and the reader learns nothing
MAX_EDGES = 6000
X_GAP, Y_GAP, LINE_GAP = 132, 86, 48  # layout grid, in pixels: node spacing, between sites, within a site
ROW_WIDTH = 16  # nodes per line within a site's band


def static_dir() -> Path:
    return Path(str(resources.files(__package__).joinpath("static")))


class StoreView:
    """The app's one read-only store, used by one request at a time (the embedded engine's connection is not
    meant to be shared across threads)."""

    def __init__(self, spec: str) -> None:
        from ..store import open_store

        self.spec = spec
        self.store = open_store(spec, read_only=True, create=False)
        self.lock = threading.Lock()
        self.reports = tempfile.TemporaryDirectory(prefix="sfc-serve-reports-")

    def close(self) -> None:
        self.store.close()
        self.reports.cleanup()

    # --- data -------------------------------------------------------------------------------------------
    def circuits(self) -> list[dict[str, Any]]:
        with self.lock:
            frame = self.store.circuits()
        return rows(frame)

    def circuit(self, circuit_id: str, node_threshold: float, edge_threshold: float) -> dict[str, Any]:
        if not (math.isfinite(node_threshold) and math.isfinite(edge_threshold)) or min(node_threshold, edge_threshold) < 0:
            raise QueryError("thresholds are magnitudes: finite numbers >= 0")
        with self.lock:
            self.store.require_circuit(circuit_id)
            manifest = self.store.manifest(circuit_id)
            params = {"circuit": circuit_id, "min_effect": node_threshold}
            nodes = self.store.run(statement("view-circuit-nodes"), params)
            edges = self.store.run(statement("view-circuit-edges"), {**params, "min_weight": edge_threshold})
            effects = self.store.run(statement("view-circuit-nodes"), {"circuit": circuit_id, "min_effect": 0.0})
        others = effects.filter(pl.col("kind") != "output")["effect"].abs()
        max_effect = float(others.max() or 0.0) if others.len() else 0.0  # type: ignore[arg-type]
        note = None
        if nodes.height > MAX_NODES:
            keep = nodes.sort(pl.col("effect").abs(), descending=True).head(MAX_NODES)["uid"]
            nodes = nodes.filter(pl.col("uid").is_in(keep.implode()) | (pl.col("kind") == "output"))
            edges = edges.filter(pl.col("src").is_in(nodes["uid"].implode()) & pl.col("dst").is_in(nodes["uid"].implode()))
            note = f"showing the {MAX_NODES} nodes of largest |effect|; raise the node threshold to see the rest"
        if edges.height > MAX_EDGES:
            shown = edges.height
            edges = edges.sort(pl.col("weight").abs(), descending=True).head(MAX_EDGES)
            note = "; ".join(filter(None, [note, f"showing the {MAX_EDGES} strongest of {shown} edges; raise the edge "
                                                 "threshold to see the rest"]))
        return {
            "circuit": {"id": circuit_id, "task": manifest.get("task"), "model": manifest.get("model"),
                        "method": manifest.get("method"), "evaluation": manifest.get("evaluation", [])},
            "node_threshold": node_threshold, "edge_threshold": edge_threshold, "max_effect": max_effect,
            "total_nodes": effects.height, "note": note,
            "nodes": layered_layout(nodes), "edges": rows(edges),
        }

    def feature(self, feature: str) -> dict[str, Any] | None:
        from ..features import get_info

        with self.lock:
            info = get_info(self.store, feature)
            circuits = self.store.run(statement("view-feature-circuits"), {"feature": feature})
        if info is None and circuits.height == 0:
            return None
        return {**(info or {"id": feature}), "circuits": rows(circuits)}

    def queries(self) -> list[dict[str, Any]]:
        from ..queries import all_queries

        return [
            {"name": q.name, "description": q.description,
             "params": [{"name": p.name, "type": p.type, "required": p.required and p.name not in q.one_of,
                         "default": p.default, "help": p.help} for p in q.params],
             "columns": [c.name for c in q.columns]}
            for q in all_queries()
        ]

    def query(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        from ..queries import get_query

        query = get_query(name)
        values = typed_params(query, params)
        with self.lock:
            frame = self.store.query(name, **values)
        return result_payload(frame)

    def cypher(self, text: str, params: dict[str, Any]) -> dict[str, Any]:
        if not text.strip():
            raise QueryError("write a Cypher statement first")
        with self.lock:
            frame = run_read_only(self.store, text, params)
        return result_payload(frame)

    def compare(self, selectors: list[str]) -> str:
        from ..report.compare import build_comparison_report

        if not selectors:
            raise QueryError("choose at least one circuit to compare")
        token = secrets.token_hex(8)
        out = Path(self.reports.name) / token
        with self.lock:
            report = build_comparison_report(self.store, selectors, out)
        return f"/reports/{token}/{Path(report.html).name}"


def run_read_only(store, text: str, params: dict[str, Any]) -> pl.DataFrame:
    """User Cypher, refused unless it only reads: the store's read-only path (engine verdict, then the keyword
    fence) where the store offers it; before that, the keyword fence of ``sfc cypher`` on a read-only store."""
    runner = getattr(store, "run_read_only", None)
    if runner is not None:
        return runner(text, params)
    from ..cli.query_cmds import write_clause

    clause = write_clause(text)
    if clause:
        raise QueryError(f"refused: the statement contains {clause}, which can modify the store; the web view is read-only")
    return store.run(text, params)


def typed_params(query, params: dict[str, Any]) -> dict[str, Any]:
    """Form values (text) in the declared types; empty fields are left to their defaults."""
    declared = {p.name: p for p in query.params}
    out: dict[str, Any] = {}
    for key, value in params.items():
        p = declared.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            continue
        if p is not None and isinstance(value, str) and p.type not in ("str", "circuit", "feature", "kind", "node"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                if p.type.startswith("list"):
                    value = [v.strip() for v in value.split(",") if v.strip()]
        out[key] = value
    return out


def layered_layout(nodes: pl.DataFrame) -> list[dict[str, Any]]:
    """Node rows with ``x``, ``y``: one band per site in forward order from the bottom (embed) to the top
    (output), as in the diagrams; within a band by position, features before errors, then latent, wrapped
    into lines of at most ``ROW_WIDTH`` nodes so that a crowded site does not squeeze the others."""
    records = rows(nodes)
    by_row: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for r in records:
        site = Site(r["site"], int(r["layer"]))
        r["row"] = site.name
        by_row.setdefault(site.order, []).append(r)
    y = 0.0
    for key in sorted(by_row):  # bottom band first; screen y grows downwards, so bands go up (negative y)
        members = sorted(by_row[key], key=lambda r: (r["position"], r["kind"] != "feature", r["latent"] or 0))
        lines = [members[i: i + ROW_WIDTH] for i in range(0, len(members), ROW_WIDTH)]
        for line_no, line in enumerate(lines):
            width = (len(line) - 1) * X_GAP
            for i, r in enumerate(line):
                r["x"] = i * X_GAP - width / 2
                r["y"] = y - (len(lines) - 1 - line_no) * LINE_GAP
        y -= (len(lines) - 1) * LINE_GAP + Y_GAP
    return records


def result_payload(frame: pl.DataFrame) -> dict[str, Any]:
    """A result as columns and rows, plus a graph when its cells hold nodes and relationships (Cypher) or paths
    of node names (the path queries)."""
    table = rows(frame)
    return {"columns": frame.columns, "rows": [[r[c] for c in frame.columns] for r in table],
            "graph": result_graph(frame, table)}


def result_graph(frame: pl.DataFrame, table: list[dict[str, Any]]) -> dict[str, Any] | None:
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[dict[str, Any]] = []

    def add_node(value: dict[str, Any]) -> str:
        key = _node_key(value)
        nodes.setdefault(key, {"id": key, "label": _node_caption(value), "kind": value.get("kind") or value.get("_label")})
        return key

    for row in table:
        for column in frame.columns:
            cell = row[column]
            for value in cell if isinstance(cell, list) else [cell]:
                if not isinstance(value, dict):
                    continue
                # LadybugDB returns nodes and relationships as maps with _ID/_LABEL (_SRC/_DST); Neo4j's
                # rows carry only properties, so they show as a table.
                value = {(k.lower() if k.startswith("_") else k): v for k, v in value.items()}
                if "_src" in value and "_dst" in value:
                    edges.append({"src": _id_text(value["_src"]), "dst": _id_text(value["_dst"]),
                                  "weight": value.get("weight"), "label": value.get("_label")})
                elif "_label" in value and "_id" in value:
                    add_node(value)
        path = row.get("path")
        if isinstance(path, list) and path and all(isinstance(p, str) for p in path):
            for a, b in zip(path, path[1:]):
                for name in (a, b):
                    nodes.setdefault(name, {"id": name, "label": name, "kind": _path_node_kind(name)})
                edges.append({"src": a, "dst": b, "weight": row.get("weight"), "label": None})
    edges = [e for e in edges if e["src"] in nodes and e["dst"] in nodes]
    if not nodes:
        return None
    return {"nodes": list(nodes.values()), "edges": edges}


def _id_text(value: Any) -> str:
    if isinstance(value, dict):
        return f"{value.get('table')}:{value.get('offset')}"
    return str(value)


def _node_key(value: dict[str, Any]) -> str:
    return _id_text(value["_id"])


def _node_caption(value: dict[str, Any]) -> str:
    for key in ("label", "node_id", "id", "name", "uid"):
        if value.get(key):
            return str(value[key]) if key != "label" or not value.get("id") else f"{value['id']}: {value['label']}"
    return str(value.get("_label"))


def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [_jsonable(r) for r in frame.iter_rows(named=True)]


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


# --- the ASGI app -----------------------------------------------------------------------------------------
def create_app(store_spec: str, *, port: int | None = None):
    """The Starlette app serving ``store_spec`` read-only (the store is opened now: a bad one fails here)."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    view = StoreView(store_spec)

    def error(exc: Exception, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=status)

    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except SfcError as exc:
                return error(exc)
            except (ValueError, TypeError, KeyError) as exc:
                return error(QueryError(f"bad request: {exc}"))
        return endpoint

    async def index(request: Request) -> Response:
        return FileResponse(static_dir() / "index.html", headers={"Cache-Control": "no-store"})

    async def circuits(request: Request) -> Response:
        return JSONResponse({"store": view.spec, "circuits": view.circuits()})

    async def circuit(request: Request) -> Response:
        q = request.query_params
        if not q.get("id"):
            raise QueryError("which circuit? give ?id=")
        return JSONResponse(view.circuit(q["id"], float(q.get("node_threshold", 0) or 0),
                                         float(q.get("edge_threshold", 0) or 0)))

    async def feature(request: Request) -> Response:
        fid = request.query_params.get("id", "")
        found = view.feature(fid)
        if found is None:
            return error(QueryError(f"no feature {fid!r} in the store"), 404)
        return JSONResponse(found)

    async def queries(request: Request) -> Response:
        return JSONResponse({"queries": view.queries()})

    async def query(request: Request) -> Response:
        body = await request.json()
        return JSONResponse(view.query(str(body.get("name", "")), dict(body.get("params") or {})))

    async def cypher(request: Request) -> Response:
        body = await request.json()
        return JSONResponse(view.cypher(str(body.get("statement", "")), dict(body.get("params") or {})))

    async def compare(request: Request) -> Response:
        body = await request.json()
        return JSONResponse({"url": view.compare([str(c) for c in body.get("circuits") or []])})

    hosts = ["127.0.0.1", "localhost"]
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            Route("/api/circuits", guarded(circuits)),
            Route("/api/circuit", guarded(circuit)),
            Route("/api/feature", guarded(feature)),
            Route("/api/queries", guarded(queries)),
            Route("/api/query", guarded(query), methods=["POST"]),
            Route("/api/cypher", guarded(cypher), methods=["POST"]),
            Route("/api/compare", guarded(compare), methods=["POST"]),
            Mount("/static", StaticFiles(directory=static_dir()), name="static"),
            Mount("/reports", StaticFiles(directory=view.reports.name), name="reports"),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts)],
        lifespan=_lifespan(view),
    )
    app.state.view = view
    return app


def _lifespan(view: StoreView):
    import contextlib

    @contextlib.asynccontextmanager
    async def lifespan(app):
        try:
            yield
        finally:
            view.close()

    return lifespan


def serve(store_spec: str, *, port: int = 8765, log_level: str = "warning") -> None:
    """Run the app on 127.0.0.1:``port`` until interrupted."""
    import uvicorn

    app = create_app(store_spec, port=port)
    uvicorn.run(app, host=HOST, port=port, log_level=log_level)


def _path_node_kind(key: str) -> str:
    """error, output or feature (any other kind is drawn as a feature) for a path entry (``node_id@position``)."""
    try:
        kind = naming.parse_node_id(naming.parse_node_key(key)[0]).kind
    except SfcError:
        return "feature"
    return "error" if kind == naming.ERROR else "output" if kind in (naming.OUTPUT, naming.LOGIT) else "feature"
