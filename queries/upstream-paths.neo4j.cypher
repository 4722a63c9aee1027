// upstream-paths, Neo4j text: as upstream-paths.cypher with elementId(n) for LadybugDB's offset(ID(n)).
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)
RETURN elementId(n) AS key, n.uid AS uid, n.node_id AS node_id, n.position AS position
;
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(a:CircuitNode)-[e:EDGE]->(b:CircuitNode)
WHERE abs(e.weight) >= $min_weight
RETURN elementId(a) AS src, elementId(b) AS dst, e.weight AS weight
