// name: shared-heads
// description: Attention heads among the top_k heads (by |score|) of at least min_count of the given circuits or tasks.
// param circuits: list[circuit] | null = null -- circuit ids (give circuits or tasks)
// param tasks: list[task] | null = null -- task names: every circuit of these tasks, counted per task
// param top_k: int (>= 1) = 5 -- a circuit contains a head when the head ranks in its top_k by |score|
// param min_count: int (>= 1) = 2 -- in at least this many of the circuits (of the tasks, with tasks)
// one-of: circuits, tasks
// column head: str -- the shared Head id, <model>/attn_<layer>/h<head>
// column layer: int -- the head's layer
// column head_index: int -- the head's number within its layer
// column count: int -- how many of the circuits (or tasks) rank the head in their top_k
// column circuit_ids: list[str] -- those circuits, by id
// column scores: list[float] -- the head's score in each of them, in the order of circuit_ids
// column ranks: list[int] -- the head's rank in each of them (1 = strongest), in the same order
// Ranks rather than raw scores decide membership, because scores of different methods (softmaxed code counts,
// logit differences) are not on one scale. Ordered by count descending, then layer and head number.
// (SKIP 0: LadybugDB wants a SKIP or LIMIT after WITH … ORDER BY.)
MATCH (c:Circuit)-[r:CONTAINS]->(h:Head)
WHERE c.id IN $circuits OR c.task IN $tasks
WITH c.id AS circuit, c.task AS task, h.id AS head, h.layer AS layer, h.head AS head_index, sum(r.effect) AS score
MATCH (:Circuit {id: circuit})-[r2:CONTAINS]->(o:Head)
WITH circuit, task, head, layer, head_index, score, o.id AS other, sum(r2.effect) AS other_score
WITH circuit, task, head, layer, head_index, score,
     sum(CASE WHEN abs(other_score) > abs(score) THEN 1 ELSE 0 END) + 1 AS rank
WHERE rank <= $top_k
WITH circuit, task, head, layer, head_index, score, rank ORDER BY circuit SKIP 0
WITH head, layer, head_index, collect(circuit) AS circuit_ids, collect(score) AS scores, collect(rank) AS ranks,
     count(DISTINCT CASE WHEN size($tasks) > 0 THEN task ELSE circuit END) AS n_in
WHERE n_in >= $min_count
RETURN head, layer, head_index, n_in AS count, circuit_ids, scores, ranks
ORDER BY count DESC, layer, head_index
