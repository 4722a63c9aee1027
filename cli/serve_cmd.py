"""``sfc serve``: the local, read-only web view of a store."""

from __future__ import annotations

import click

from sfc_graph.cli.app import CONTEXT_SETTINGS
from sfc_graph.cli.options import store_option


@click.command(context_settings=CONTEXT_SETTINGS)
@store_option
@click.option("--port", type=click.IntRange(1, 65535), default=8765, show_default=True, help="Port on 127.0.0.1.")
def serve(store: str, port: int) -> None:
    """Browse the store in a web browser: circuits as layered graphs with a live node threshold, feature
    dashboards on hover, named queries and read-only Cypher, comparison reports.

    Serves 127.0.0.1 only (this machine), read-only; stop with Ctrl-C.

    \b
    Example:
      sfc serve --store ./sfc-store --port 8765     # then open http://127.0.0.1:8765/
    """
    from sfc_graph.serve.app import HOST, create_app

    import uvicorn

    app = create_app(store, port=port)  # opens the store now: a bad store fails before the server starts
    click.echo(f"serving {store} read-only at http://{HOST}:{port}/  (Ctrl-C to stop)")
    uvicorn.run(app, host=HOST, port=port, log_level="warning")
