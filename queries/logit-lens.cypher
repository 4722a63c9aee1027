// name: logit-lens
// description: The tokens a dictionary feature's decoder direction promotes (top) and suppresses (bottom) through the unembedding (W_dec . W_U, LayerNorm as a fixed scale), from the stored weight graph.
// param feature: feature -- global feature id, <dictionary id>/<index> (any dictionary of the weight graph)
// param k: int (>= 1) = 10 -- tokens at each end
// param graph: str | null = null -- a WeightGraph id; null for every stored weight graph
// column side: str -- top (promoted) or bottom (suppressed)
// column token: int -- the token's vocabulary index
// column text: str -- the token's text
// column weight: float -- the direct logit weight
// column rank: int -- 1 = the most promoted (top) or most suppressed (bottom)
// Ordered by side (top first), rank, then token.
MATCH (f:Feature {id: $feature})-[w:WEIGHT]->(t:Token)
WHERE w.kind = 'logit' AND w.rank_out <= $k AND w.graph = coalesce($graph, w.graph)
RETURN CASE WHEN w.weight >= 0 THEN 'top' ELSE 'bottom' END AS side, t.token AS token, t.text AS text,
       w.weight AS weight, w.rank_out AS rank
ORDER BY CASE WHEN side = 'top' THEN 0 ELSE 1 END, rank, token
