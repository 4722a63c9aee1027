"""Circuits in other tools' formats, both ways.

- :mod:`.attribution_graph`: the attribution-graph JSON that Neuronpedia and circuit-tracer's local viewer
  read (export of any circuit or query subgraph; import of circuit-tracer graphs).
- :mod:`.feature_circuits`: the ``.pt`` circuits written by the sparse-feature-circuits reference
  implementation (saprmarks/feature-circuits), read without executing pickled code.

Every importer produces a bundle (``sfc_graph.bundle``), so imported circuits load, query, compare and export
like computed ones. ``docs/interop.md`` lists what each format cannot carry.
"""
