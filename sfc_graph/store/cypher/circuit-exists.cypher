// Whether a circuit id is in the store.
MATCH (c:Circuit {id: $circuit})
RETURN c.id AS id
