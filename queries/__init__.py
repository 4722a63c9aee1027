"""The named query library: parameterised Cypher in ``queries/*.cypher`` (README, queries/README.md).

Each ``NAME.cypher`` file holds one statement after a header of ``//`` comment lines::

    // name: top-nodes
    // description: The k nodes of a circuit with the largest |effect|.
    // param circuit: circuit -- the circuit's id
    // param k: int (>= 1) = 20 -- how many nodes
    // param kind: kind | null = null -- feature, error or output; null for any
    // column node_id: str -- the node's id in the bundle
    // post: upstream_paths
    // one-of: circuits, tasks

``param NAME: TYPE [| null] [(>= N)] [(<= N)] [= DEFAULT] [-- help]``: no default means required; the
default is JSON. Types are ``str``, ``int``, ``float``, ``bool``, ``list[str]`` and the checked types
``circuit`` (an id in the store), ``list[circuit]``, ``list[task]``, ``feature`` (a ``Feature`` id in the
store), ``kind`` (``feature``/``error``/``output``) and ``node`` (a node of the circuit given by the
query's ``circuit`` parameter, written ``node_id`` — every position — or ``node_id@position``; it reaches
the Cypher as the list of the matching ``CircuitNode`` uids). ``column NAME: TYPE`` lists the result
columns in order (``str``, ``int``, ``float``, ``list[str]``, ``list[float]``); the result always has
exactly these, with these dtypes, even when empty. ``post`` names a Python step in
:mod:`sfc_graph.queries.post` that turns the Cypher rows into the result, for semantics that are clearer
and more correct in Python over a bounded candidate set (weighted path ranking, pairwise overlap).
``one-of`` names parameters of which exactly one must be given. A query may hold several statements,
separated by a line holding only ``;``; they run in order with the same parameters and a ``post`` step
receives their results as a list (the path queries fetch a circuit's nodes and its edges apart: reading
both endpoints' properties for every edge costs LadybugDB several times more than two plain scans).

Dialects: ``NAME.cypher`` runs on every backend unless a ``NAME.<dialect>.cypher`` file sits beside it
(``top-nodes.neo4j.cypher``); that variant holds only the statement text (comments allowed), takes the
same parameters and returns the same columns. Files whose name starts with ``_`` are internal statements
(parameter checks), not listed as queries.

Values only ever travel as ``$parameters``; no query text is built from values.

Cross-circuit semantics: a node's identity across circuits is its shared node — the ``Feature`` id for a
feature, the ``ErrorNode`` id (``<dictionary>/err``, i.e. the site and layer of that dictionary) for an
error node, the ``Output`` id for the output. When a circuit keeps positions (aggregation ``none``), a
node appears once per position; cross-circuit queries (shared-features, circuit-overlap, circuit-diff,
feature-circuits) first **sum a node's effects over its positions**, and ``min_effect`` thresholds apply
to that sum. Single-circuit queries keep positions; node labels there read ``node_id@position`` when the
position is ≥ 0 and plain ``node_id`` when effects are aggregated (position −1).
"""

from .library import Column, Param, Query, all_queries, get_query, internal_statement, parse_query
from .params import COLUMN_TYPES, PARAM_TYPES, check_params
from .runner import conform, run_query

__all__ = ["COLUMN_TYPES", "PARAM_TYPES", "Column", "Param", "Query", "all_queries", "check_params", "conform",
           "get_query", "internal_statement", "parse_query", "run_query"]
