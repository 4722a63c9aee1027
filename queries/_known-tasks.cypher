// Internal: which of the task names in $names have a circuit in the store.
MATCH (t:Task)
WHERE t.name IN $names
RETURN t.name AS name
