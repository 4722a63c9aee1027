// name: head-scores
// description: The attention heads of a circuit ranked by |score| (the head's effect column).
// param circuit: circuit -- the circuit's id (any method: discrete-sae, head-eap, head-exact, ...)
// param k: int (>= 1) = 20 -- how many heads to return
// param min_score: float (>= 0) = 0 -- only heads with |score| >= min_score
// column head: str -- the shared Head id, <model>/attn_<layer>/h<head>
// column node_id: str -- the head's node id in the bundle, attn_<layer>/h<head>
// column layer: int -- the head's layer
// column head_index: int -- the head's number within its layer
// column score: float -- discrete-sae: softmaxed count of positive-only codes; eap/exact: effect on the metric
// column rank: int -- 1 for the head with the largest |score| in the circuit; tied heads share a rank
// Ordered by |score| descending, then layer and head number. Heads of a circuit that keeps positions are summed
// over positions first.
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)-[:INSTANCE_OF]->(h:Head)
WITH h.id AS head, n.node_id AS node_id, h.layer AS layer, h.head AS head_index, sum(n.effect) AS score
MATCH (:Circuit {id: $circuit})-[:HAS_NODE]->(m:CircuitNode)-[:INSTANCE_OF]->(o:Head)
WITH head, node_id, layer, head_index, score, o.id AS other, sum(m.effect) AS other_score
WITH head, node_id, layer, head_index, score,
     sum(CASE WHEN abs(other_score) > abs(score) THEN 1 ELSE 0 END) AS better
WHERE abs(score) >= $min_score
RETURN head, node_id, layer, head_index, score, better + 1 AS rank
ORDER BY abs(score) DESC, layer, head_index
LIMIT $k
