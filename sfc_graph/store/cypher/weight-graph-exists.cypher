// The WeightGraph record $graph (ingest/weights_store.py), if the store has it.
MATCH (w:WeightGraph {id: $graph})
RETURN w.id AS id, w.manifest AS manifest
