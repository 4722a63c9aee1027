// Internal: the instances (one per position) of node $node_id in circuit $circuit.
// `WITH n` keeps LadybugDB from planning an equality filter as a scan of every circuit's nodes (150 ms at
// 1M CircuitNodes, against 3 ms when it starts from the circuit).
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)
WITH n
WHERE n.node_id = $node_id
RETURN n.uid AS uid, n.position AS position
