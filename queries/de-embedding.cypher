// name: de-embedding
// description: The tokens a transcoder feature reads from the embedding, directly (W_E . enc) and through each attention head's OV circuit (W_E . OV . enc), from the stored weight graph.
// param feature: feature -- global feature id of a transcoder feature, <dictionary id>/<index>
// param k: int (>= 1) = 10 -- tokens per route (direct, and each head)
// param via: str | null = null -- only tokens through this Head (<model>/attn_L/hH), or 'direct'; null for every route
// param graph: str | null = null -- a WeightGraph id; null for every stored weight graph
// column via: str -- 'direct', or the Head id the token's embedding goes through
// column token: int -- the token's vocabulary index
// column text: str -- the token's text
// column weight: float -- the input-invariant weight of the token's embedding on the feature's pre-activation
// column rank: int -- 1 = the strongest token of its route
// Ordered by route ('direct' first, then heads), rank, then token.
MATCH (t:Token)-[w:WEIGHT]->(f:Feature {id: $feature})
WHERE w.kind IN ['embed', 'embed_ov'] AND w.rank_in <= $k AND w.graph = coalesce($graph, w.graph)
WITH t, w, coalesce(w.via, 'direct') AS route
WHERE route = coalesce($via, route)
RETURN route AS via, t.token AS token, t.text AS text, w.weight AS weight, w.rank_in AS rank
ORDER BY CASE WHEN via = 'direct' THEN 0 ELSE 1 END, via, rank, token
