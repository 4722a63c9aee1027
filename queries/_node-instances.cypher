// Internal: the instances (one per position) of node $node_id in circuit $circuit.
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)
WHERE n.node_id = $node_id
RETURN n.uid AS uid, n.position AS position
