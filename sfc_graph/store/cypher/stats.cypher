// Node count per label and relationship count per type. OPTIONAL MATCH so that empty ones still count 0.
OPTIONAL MATCH (n:Model) RETURN 'node' AS what, 'Model' AS name, count(n) AS count
UNION ALL OPTIONAL MATCH (n:Dictionary) RETURN 'node' AS what, 'Dictionary' AS name, count(n) AS count
UNION ALL OPTIONAL MATCH (n:Feature) RETURN 'node' AS what, 'Feature' AS name, count(n) AS count
UNION ALL OPTIONAL MATCH (n:ErrorNode) RETURN 'node' AS what, 'ErrorNode' AS name, count(n) AS count
UNION ALL OPTIONAL MATCH (n:Output) RETURN 'node' AS what, 'Output' AS name, count(n) AS count
UNION ALL OPTIONAL MATCH (n:Head) RETURN 'node' AS what, 'Head' AS name, count(n) AS count
UNION ALL OPTIONAL MATCH (n:Token) RETURN 'node' AS what, 'Token' AS name, count(n) AS count
UNION ALL OPTIONAL MATCH (n:Task) RETURN 'node' AS what, 'Task' AS name, count(n) AS count
UNION ALL OPTIONAL MATCH (n:Circuit) RETURN 'node' AS what, 'Circuit' AS name, count(n) AS count
UNION ALL OPTIONAL MATCH (n:CircuitNode) RETURN 'node' AS what, 'CircuitNode' AS name, count(n) AS count
UNION ALL OPTIONAL MATCH ()-[r:OF_MODEL]->() RETURN 'relationship' AS what, 'OF_MODEL' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:IN_DICTIONARY]->() RETURN 'relationship' AS what, 'IN_DICTIONARY' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:FOR_TASK]->() RETURN 'relationship' AS what, 'FOR_TASK' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:ON_MODEL]->() RETURN 'relationship' AS what, 'ON_MODEL' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:USES]->() RETURN 'relationship' AS what, 'USES' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:CONTAINS]->() RETURN 'relationship' AS what, 'CONTAINS' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:HAS_NODE]->() RETURN 'relationship' AS what, 'HAS_NODE' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:INSTANCE_OF]->() RETURN 'relationship' AS what, 'INSTANCE_OF' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:EDGE]->() RETURN 'relationship' AS what, 'EDGE' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:WEIGHT]->() RETURN 'relationship' AS what, 'WEIGHT' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:INTERVENES_ON]->() RETURN 'relationship' AS what, 'INTERVENES_ON' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:ABLATES]->() RETURN 'relationship' AS what, 'ABLATES' AS name, count(r) AS count
UNION ALL OPTIONAL MATCH ()-[r:HAS_SCORE]->() RETURN 'relationship' AS what, 'HAS_SCORE' AS name, count(r) AS count
