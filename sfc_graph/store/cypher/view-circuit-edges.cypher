// The edges of a circuit between nodes above a node threshold (the output always), above an edge threshold.
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(a:CircuitNode)-[e:EDGE]->(b:CircuitNode)
WHERE abs(e.weight) >= $min_weight
  AND (abs(a.effect) >= $min_effect OR a.kind = 'output')
  AND (abs(b.effect) >= $min_effect OR b.kind = 'output')
RETURN a.uid AS src, b.uid AS dst, e.weight AS weight
