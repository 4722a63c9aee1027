// name: neighborhood
// description: The edges into and out of one node of a circuit.
// param circuit: circuit -- the circuit's id
// param node: node -- node id (resid_3/12, attn_2/err, output), or node_id@position for one position
// param min_weight: float (>= 0) = 0 -- only edges with |weight| >= min_weight
// column direction: str -- in (other -> node) or out (node -> other)
// column other: str -- the node at the other end (node_id, or node_id@position when positions are kept)
// column weight: float -- the edge's attribution weight
// Ordered by direction (in, then out), |weight| descending, then other.
// Anchored at the circuit: a bare `n.uid IN $node` (or an UNWIND) makes LadybugDB scan every circuit's nodes.
// Dialect: LadybugDB spells toString(x) as CAST(x AS STRING); neighborhood.neo4j.cypher is the Neo4j text.
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
       CASE WHEN r.position < 0 THEN r.other_id ELSE r.other_id + '@' + CAST(r.position AS STRING) END AS other,
       r.weight AS weight
ORDER BY direction, abs(weight) DESC, other
