"""A local, read-only web view of a circuit store (``sfc serve``): :func:`~sfc_graph.serve.app.create_app`.

The browser assets live in ``static/`` (shipped as package data); the graph renderer is cytoscape.js,
vendored there (``static/VENDORED.md``). Importing this package imports neither Starlette nor uvicorn.
"""

from __future__ import annotations

__all__ = ["create_app", "serve"]


def create_app(store_spec: str, **kwargs):
    from .app import create_app as create

    return create(store_spec, **kwargs)


def serve(store_spec: str, **kwargs) -> None:
    from .app import serve as run

    run(store_spec, **kwargs)
