"""sfc-graph: a circuit store for mechanistic interpretability.

Core library: bundle format (:mod:`sfc_graph.bundle`), graph schema (:mod:`sfc_graph.graph`), the
:class:`~sfc_graph.store.CircuitStore` and its backends (:mod:`sfc_graph.store`), export to NetworkX
(:mod:`sfc_graph.export`). Circuit discovery lives in :mod:`sfc_graph.ingest`, the Cypher library in
:mod:`sfc_graph.queries`, the command line in :mod:`sfc_graph.cli`, the toy model zoo in :mod:`sfc_graph.zoo`.
"""

__version__ = "0.1.0"
