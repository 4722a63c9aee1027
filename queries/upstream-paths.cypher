// name: upstream-paths
// description: The k paths into a node (the output by default) with the largest |product of edge weights|.
// param circuit: circuit -- the circuit's id
// param target: node = "output" -- the node the paths end at (node_id, or node_id@position)
// param max_hops: int (>= 1) (<= 8) = 3 -- paths of 1 to max_hops edges
// param min_weight: float (>= 0) = 0 -- only edges with |weight| >= min_weight
// param k: int (>= 1) (<= 10000) = 10 -- how many paths
// column path: list[str] -- node labels, source first (node_id, or node_id@position when positions are kept)
// column weight: float -- the product of the path's edge weights
// post: upstream_paths
// The Cypher fetches the circuit's nodes, then its edges above min_weight; Python ranks the paths of <= max_hops edges
// ending at the target by |weight| (best-first search with an upper bound, exact; weights
// can be negative, so this is no database shortest path). Ties: fewer hops first, then by labels.
// Dialect: nodes are keyed by the engine's own id (LadybugDB offset(ID(n)), Neo4j elementId(n)) so that the
// edge scan reads no node properties; upstream-paths.neo4j.cypher is the Neo4j text.
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)
RETURN offset(ID(n)) AS key, n.uid AS uid, n.node_id AS node_id, n.position AS position
;
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(a:CircuitNode)-[e:EDGE]->(b:CircuitNode)
WHERE abs(e.weight) >= $min_weight
RETURN offset(ID(a)) AS src, offset(ID(b)) AS dst, e.weight AS weight
