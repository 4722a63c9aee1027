// name: circuit-diff
// description: The nodes of two circuits side by side: only in a, only in b, or in both, with both effects.
// param a: circuit -- the first circuit's id
// param b: circuit -- the second circuit's id
// param min_effect: float (>= 0) = 0 -- a circuit contains a node when |effect| >= min_effect
// column node: str -- node identity: Feature id, ErrorNode id (<dictionary id>/err) or Output id
// column status: str -- only_a, only_b or both
// column effect_a: float -- effect in a, summed over positions; null when only_b
// column effect_b: float -- effect in b, summed over positions; null when only_a
// Ordered by status (both, only_a, only_b), then |effect_a| + |effect_b| descending, then node.
MATCH (c:Circuit)-[:HAS_NODE]->(n:CircuitNode)
WHERE c.id IN [$a, $b]
WITH c.id AS circuit, n.identity AS node, sum(n.effect) AS effect
WHERE abs(effect) >= $min_effect
WITH node, max(CASE WHEN circuit = $a THEN effect END) AS effect_a,
     max(CASE WHEN circuit = $b THEN effect END) AS effect_b
RETURN node,
       CASE WHEN effect_a IS NULL THEN 'only_b' WHEN effect_b IS NULL THEN 'only_a' ELSE 'both' END AS status,
       effect_a, effect_b
ORDER BY status, abs(coalesce(effect_a, 0.0)) + abs(coalesce(effect_b, 0.0)) DESC, node
