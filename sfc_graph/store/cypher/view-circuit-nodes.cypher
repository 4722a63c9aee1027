// The nodes of a circuit above a node threshold (the output always), with labels: the web view's graph.
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)
WHERE abs(n.effect) >= $min_effect OR n.kind = 'output'
OPTIONAL MATCH (i:FeatureInfo {id: n.feature})
RETURN n.uid AS uid, n.node_id AS node_id, n.kind AS kind, n.site AS site, n.layer AS layer, n.latent AS latent,
       n.position AS position, n.effect AS effect, n.feature AS feature, i.label AS label,
       i.label_source AS label_source, i.top_tokens AS top_tokens
