// Remove one circuit, in one transaction: its node instances and edges, the circuit and its links, then the
// shared nodes that no other circuit uses any more. Statements run in order. Features and tokens of a stored
// weight graph (WEIGHT relationships, `sfc weights load`) stay, with their dictionary and model. The records
// about this circuit go first (circuit-records.cypher: its SHIFT interventions with their ABLATES links, its
// discovered behaviour): kept, they would describe a circuit that is no longer there.
MATCH (i:Intervention)-[:INTERVENES_ON]->(c:Circuit {id: $circuit})
DETACH DELETE i
;
MATCH (b:Behaviour)-[:HAS_CIRCUIT]->(c:Circuit {id: $circuit})
DETACH DELETE b
;
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)
DETACH DELETE n
;
MATCH (c:Circuit {id: $circuit})-[:CONTAINS]->(f:Feature)
WHERE NOT EXISTS { MATCH (f)<-[:CONTAINS]-(other:Circuit) WHERE other.id <> $circuit }
  AND NOT EXISTS { MATCH (f)-[:WEIGHT]-() }
DETACH DELETE f
;
MATCH (c:Circuit {id: $circuit})-[:CONTAINS]->(e:ErrorNode)
WHERE NOT EXISTS { MATCH (e)<-[:CONTAINS]-(other:Circuit) WHERE other.id <> $circuit }
DETACH DELETE e
;
MATCH (c:Circuit {id: $circuit})-[:CONTAINS]->(o:Output)
WHERE NOT EXISTS { MATCH (o)<-[:CONTAINS]-(other:Circuit) WHERE other.id <> $circuit }
DETACH DELETE o
;
MATCH (c:Circuit {id: $circuit})-[:CONTAINS]->(h:Head)
WHERE NOT EXISTS { MATCH (h)<-[:CONTAINS]-(other:Circuit) WHERE other.id <> $circuit }
DETACH DELETE h
;
MATCH (c:Circuit {id: $circuit})-[:CONTAINS]->(t:Token)
WHERE NOT EXISTS { MATCH (t)<-[:CONTAINS]-(other:Circuit) WHERE other.id <> $circuit }
  AND NOT EXISTS { MATCH (t)-[:WEIGHT]-() }
DETACH DELETE t
;
MATCH (c:Circuit {id: $circuit})-[:USES]->(d:Dictionary)
WHERE NOT EXISTS { MATCH (d)<-[:USES]-(other:Circuit) WHERE other.id <> $circuit }
  AND NOT EXISTS { MATCH (d)<-[:IN_DICTIONARY]-(kept:Feature)-[:WEIGHT]-() }
DETACH DELETE d
;
MATCH (c:Circuit {id: $circuit})-[:FOR_TASK]->(t:Task)
WHERE NOT EXISTS { MATCH (t)<-[:FOR_TASK]-(other:Circuit) WHERE other.id <> $circuit }
DETACH DELETE t
;
MATCH (c:Circuit {id: $circuit})-[:ON_MODEL]->(m:Model)
WHERE NOT EXISTS { MATCH (m)<-[:ON_MODEL]-(other:Circuit) WHERE other.id <> $circuit }
  AND NOT EXISTS { MATCH (m)<-[:OF_MODEL]-(kept:Dictionary) }
  AND NOT EXISTS { MATCH (m)<-[:OF_MODEL]-(kept:Token)-[:WEIGHT]-() }
DETACH DELETE m
;
MATCH (c:Circuit {id: $circuit})
DETACH DELETE c
