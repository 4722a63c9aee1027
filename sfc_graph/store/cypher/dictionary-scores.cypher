// Every dictionary score (SCR / TPP), optionally of one metric, newest run first.
MATCH (d:Dictionary)-[:HAS_SCORE]->(s:DictionaryScore)
WHERE s.metric = coalesce($metric, s.metric)
RETURN d.id AS dictionary, s.metric AS metric, s.top_n AS top_n, s.value AS value, s.dataset AS dataset,
       s.run AS run, s.created_at AS created_at
ORDER BY created_at DESC, dictionary, metric, top_n
