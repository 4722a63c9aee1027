// A feature the store knows: used by a circuit, or described by a dashboard or label.
MATCH (f:Feature {id: $feature}) RETURN f.id AS id
UNION
MATCH (i:FeatureInfo {id: $feature}) RETURN i.id AS id
