// Every weight graph in the store.
MATCH (w:WeightGraph)
RETURN w.id AS id, w.model AS model, w.n_feature_edges AS n_feature_edges, w.n_token_edges AS n_token_edges,
       w.created_at AS created_at
ORDER BY id
