// Which of the given dictionary ids (and model ids) the store has.
UNWIND $ids AS did
MATCH (d:Dictionary {id: did})
RETURN d.id AS id
