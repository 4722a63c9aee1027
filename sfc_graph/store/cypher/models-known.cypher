// Which of the given model ids the store has.
UNWIND $ids AS mid
MATCH (m:Model {id: mid})
RETURN m.id AS id
