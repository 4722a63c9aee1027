// The records that describe one circuit and go with it when it is deleted: SHIFT interventions on it
// (INTERVENES_ON) and the discovered behaviour it was computed for (HAS_CIRCUIT).
MATCH (c:Circuit {id: $circuit})
OPTIONAL MATCH (i:Intervention)-[:INTERVENES_ON]->(c)
WITH c, count(DISTINCT i) AS interventions
OPTIONAL MATCH (b:Behaviour)-[:HAS_CIRCUIT]->(c)
RETURN interventions, count(DISTINCT b) AS behaviours
