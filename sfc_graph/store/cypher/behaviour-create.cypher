// Record one discovered behaviour (sfc_graph/behaviours.py) and link it to its circuit, in one transaction.
CREATE (b:Behaviour {id: $id, discovery: $discovery, cluster: $cluster, size: $size, features: $features,
        algorithm: $algorithm, corpus: $corpus, model: $model, examples: $examples, label_counts: $label_counts,
        dominant_label: $dominant_label, label_share: $label_share, created_at: $created_at})
;
MATCH (b:Behaviour {id: $id})
MATCH (c:Circuit {id: $circuit})
CREATE (b)-[:HAS_CIRCUIT]->(c)
