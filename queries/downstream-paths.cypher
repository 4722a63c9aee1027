// name: downstream-paths
// description: The k paths out of a node with the largest |product of edge weights|.
// param circuit: circuit -- the circuit's id
// param source: node -- the node the paths start from (node_id, or node_id@position)
// param max_hops: int (>= 1) (<= 8) = 3 -- paths of 1 to max_hops edges
// param min_weight: float (>= 0) = 0 -- only edges with |weight| >= min_weight
// param k: int (>= 1) = 10 -- how many paths
// column path: list[str] -- node labels, source first (node_id, or node_id@position when positions are kept)
// column weight: float -- the product of the path's edge weights
// post: downstream_paths
// The Cypher fetches the circuit's edges above min_weight; Python ranks the paths of <= max_hops edges
// starting at the source by |weight| (best-first search with an upper bound, exact; DESIGN.md §5: weights
// can be negative, so this is no database shortest path). Ties: fewer hops first, then by labels.
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(a:CircuitNode)-[e:EDGE]->(b:CircuitNode)
WHERE abs(e.weight) >= $min_weight
RETURN a.uid AS src, b.uid AS dst, e.weight AS weight,
       a.node_id AS src_node, a.position AS src_position, b.node_id AS dst_node, b.position AS dst_position
