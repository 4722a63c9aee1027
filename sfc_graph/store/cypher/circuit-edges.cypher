// A circuit's edges, as bundle rows.
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(a:CircuitNode)
MATCH (a)-[e:EDGE]->(b:CircuitNode)
RETURN a.node_id AS src, b.node_id AS dst, a.position AS src_position, b.position AS dst_position,
       e.weight AS weight, e.weight_invariant AS weight_invariant
