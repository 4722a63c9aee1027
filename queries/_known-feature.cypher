// Internal: whether the Feature $feature is in the store.
MATCH (f:Feature {id: $feature})
RETURN f.id AS id
