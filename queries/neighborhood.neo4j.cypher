// neighborhood, Neo4j text: identical to neighborhood.cypher but for toString() (LadybugDB: CAST AS STRING).
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)
WHERE n.uid IN $node
OPTIONAL MATCH (n)<-[ei:EDGE]-(src:CircuitNode)
WHERE abs(ei.weight) >= $min_weight
WITH n, collect({direction: 'in', other_id: src.node_id, position: src.position, weight: ei.weight}) AS ins
OPTIONAL MATCH (n)-[eo:EDGE]->(dst:CircuitNode)
WHERE abs(eo.weight) >= $min_weight
WITH ins, collect({direction: 'out', other_id: dst.node_id, position: dst.position, weight: eo.weight}) AS outs
UNWIND ins + outs AS r
WITH r
WHERE r.other_id IS NOT NULL
RETURN r.direction AS direction,
       CASE WHEN r.position < 0 THEN r.other_id ELSE r.other_id + '@' + toString(r.position) END AS other,
       r.weight AS weight
ORDER BY direction, abs(weight) DESC, other
