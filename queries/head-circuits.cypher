// name: head-circuits
// description: Every circuit that contains an attention head, with the head's score and rank there.
// param head: str -- the shared Head id, <model>/attn_<layer>/h<head> (see head-scores' head column)
// param min_score: float (>= 0) = 0 -- only circuits where the head's |score| >= min_score
// column circuit: str -- circuit id
// column task: str -- the circuit's task
// column method: str -- how the circuit was computed (discrete-sae, head-eap, head-exact, ...)
// column score: float -- the head's score there (summed over positions)
// column rank: int -- the head's rank by |score| among the circuit's heads (1 = strongest)
// column n_heads: int -- how many heads the circuit has
// Ordered by task, then method, then circuit id.
MATCH (c:Circuit)-[r:CONTAINS]->(h:Head {id: $head})
WITH c.id AS circuit, c.task AS task, c.method AS method, sum(r.effect) AS score
WHERE abs(score) >= $min_score
MATCH (:Circuit {id: circuit})-[r2:CONTAINS]->(o:Head)
WITH circuit, task, method, score, o.id AS other, sum(r2.effect) AS other_score
RETURN circuit, task, method, score,
       sum(CASE WHEN abs(other_score) > abs(score) THEN 1 ELSE 0 END) + 1 AS rank, count(other) AS n_heads
ORDER BY task, method, circuit
