// name: layer-profile
// description: How many nodes a circuit has at each site and layer, and their total |effect|.
// param circuit: circuit -- the circuit's id
// param kind: kind | null = null -- count only feature (or only error) nodes; null for both
// param min_effect: float (>= 0) = 0 -- only nodes with |effect| >= min_effect
// column site: str -- embed, attn, mlp or resid
// column layer: int -- -1 for embed
// column n_nodes: int -- nodes at this site and layer (one per node and position)
// column abs_effect: float -- sum of |effect| over those nodes
// The output node is the metric itself, not a component, so it is left out.
// Ordered from the embedding up: by layer, then attn, mlp, resid (alphabetical is the forward order).
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)
WHERE n.kind <> 'output' AND n.kind = coalesce($kind, n.kind) AND abs(n.effect) >= $min_effect
RETURN n.site AS site, n.layer AS layer, count(*) AS n_nodes, sum(abs(n.effect)) AS abs_effect
ORDER BY layer, site
