// A circuit's nodes, as bundle rows.
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)
RETURN n.node_id AS node_id, n.kind AS kind, n.site AS site, n.layer AS layer, n.latent AS latent,
       n.position AS position, n.effect AS effect, n.feature AS feature, n.identity AS identity,
       n.activation AS activation
