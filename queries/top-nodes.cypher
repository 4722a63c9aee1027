// name: top-nodes
// description: The k nodes of a circuit with the largest |effect| (one row per node and position).
// param circuit: circuit -- the circuit's id
// param k: int (>= 1) = 20 -- how many nodes to return
// param kind: kind | null = null -- feature, error or output; null for any kind
// param min_effect: float (>= 0) = 0 -- only nodes with |effect| >= min_effect
// column node_id: str -- the node's id in the bundle (resid_3/12, attn_2/err, output)
// column feature: str -- global feature identity (<dictionary id>/<index>); null for error and output nodes
// column kind: str -- feature, error or output
// column site: str -- embed, attn, mlp, resid or output
// column layer: int -- -1 for embed and output
// column position: int -- token position; -1 when effects are summed over positions
// column effect: float -- the node's indirect effect on the metric
// column label: str -- the feature's label (sfc label, sfc features build); null when it has none
// column top_tokens: list[str] -- the commonest peak tokens of its top activating contexts (sfc features build)
// Ordered by |effect| descending, then node id and position (ties are rare; the order is still stable).
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)
WHERE n.kind = coalesce($kind, n.kind) AND abs(n.effect) >= $min_effect
OPTIONAL MATCH (i:FeatureInfo {id: n.feature})
RETURN n.node_id AS node_id, n.feature AS feature, n.kind AS kind, n.site AS site, n.layer AS layer,
       n.position AS position, n.effect AS effect, i.label AS label, i.top_tokens AS top_tokens
ORDER BY abs(effect) DESC, node_id, position
LIMIT $k
