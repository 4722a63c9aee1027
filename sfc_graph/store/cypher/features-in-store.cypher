// Which of the given feature ids the store has as Feature nodes.
UNWIND $ids AS fid
MATCH (f:Feature {id: fid})
RETURN f.id AS id
