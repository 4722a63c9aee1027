// Internal: which of the circuit ids in $ids are in the store.
MATCH (c:Circuit)
WHERE c.id IN $ids
RETURN c.id AS id
