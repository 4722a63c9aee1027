// name: explain-edge
// description: An edge of a transcoder circuit taken apart: the upstream node's activation, the input-invariant weight, their product, and the input-dependent rest (frozen LayerNorm scale, attention pattern) that turns it into the edge's weight; with the stored weight graph's entry for the same pair of features when there is one.
// param circuit: circuit -- the circuit's id
// param src: node -- the upstream node (node_id, or node_id@position)
// param dst: node -- the downstream node (node_id, or node_id@position)
// column src: str -- upstream node id
// column src_position: int -- its position
// column dst: str -- downstream node id
// column dst_position: int -- its position
// column activation: float -- the upstream node's activation (z_i for a feature, 1 for a token); null for heads and errors
// column weight_invariant: float -- the input-invariant weight (pullback, OV term, de-embedding); null out of heads and errors
// column product: float -- activation x weight_invariant
// column factor: float -- weight / product: the input-dependent rest (1/LayerNorm scale, x attention pattern through heads)
// column weight: float -- the edge's input-dependent weight (the contribution to the downstream node)
// column stored_invariant: float -- the stored weight graph's resid weight between the two shared features, if kept there
// Ordered by src position, then dst position.
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(a:CircuitNode)
WHERE a.uid IN $src
MATCH (a)-[e:EDGE]->(b:CircuitNode)
WHERE b.uid IN $dst
OPTIONAL MATCH (a)-[:INSTANCE_OF]->(fa:Feature)-[w:WEIGHT]->(fb:Feature)<-[:INSTANCE_OF]-(b)
WHERE w.kind = 'resid'
WITH a, b, e, a.activation * e.weight_invariant AS product, max(w.weight) AS stored
RETURN a.node_id AS src, a.position AS src_position, b.node_id AS dst, b.position AS dst_position,
       a.activation AS activation, e.weight_invariant AS weight_invariant, product,
       CASE WHEN product IS NULL OR product = 0.0 THEN NULL ELSE e.weight / product END AS factor,
       e.weight AS weight, stored AS stored_invariant
ORDER BY src_position, dst_position
