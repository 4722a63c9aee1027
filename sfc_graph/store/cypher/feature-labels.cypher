// Labels and top tokens of the given features (diagrams, reports, the web view).
MATCH (i:FeatureInfo)
WHERE i.id IN $ids
RETURN i.id AS id, i.label AS label, i.label_source AS label_source, i.top_tokens AS top_tokens
