// name: dictionary-scores
// description: SCR and TPP scores of dictionaries (sfc eval scr / tpp), one row per dictionary, metric, run and top N.
// param metric: str | null = null -- scr or tpp; null for both
// param top_n: int | null = null -- only this N; null for every N
// column dictionary: str -- the dictionary's id
// column site: str -- embed, attn, mlp or resid
// column layer: int -- -1 for embed
// column metric: str -- scr or tpp
// column top_n: int -- how many latents were ablated
// column value: float -- the score
// column dataset: str -- the data it was measured on
// column run: str -- the evaluation run
// column created_at: str -- when
// Ordered by metric, dictionary, top N, then newest first.
MATCH (d:Dictionary)-[:HAS_SCORE]->(s:DictionaryScore)
WHERE s.metric = coalesce($metric, s.metric) AND s.top_n = coalesce($top_n, s.top_n)
RETURN d.id AS dictionary, d.site AS site, d.layer AS layer, s.metric AS metric, s.top_n AS top_n,
       s.value AS value, s.dataset AS dataset, s.run AS run, s.created_at AS created_at
ORDER BY metric, dictionary, top_n, created_at DESC
