// The record of a loaded weight graph, written after its WEIGHT relationships (ingest/weights_store.py).
CREATE (w:WeightGraph {id: $graph, model: $model, n_feature_edges: $n_feature_edges, n_token_edges: $n_token_edges,
                       created_at: $created_at, manifest: $manifest})
