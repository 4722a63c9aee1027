// name: circuit-overlap
// description: Pairwise node Jaccard and effect-weighted overlap between circuits.
// param circuits: list[circuit] -- two or more circuit ids
// param min_effect: float (>= 0) = 0 -- a circuit contains a node when |effect| >= min_effect
// column circuit_a: str -- the circuit given first
// column circuit_b: str -- the circuit given later
// column jaccard: float -- |A ∩ B| / |A ∪ B| over node identities; null when both are empty
// column weighted_overlap: float -- Σ min(|e_a|,|e_b|) / Σ max(|e_a|,|e_b|), a missing node counting 0
// post: pairwise_overlap
// Node identity: the Feature id for features, the ErrorNode id (<dictionary id>/err: the site and layer) for
// error nodes, the Output id for the output. Effects are summed over positions first. One row per
// unordered pair, in the order the circuits were given.
MATCH (c:Circuit)-[:HAS_NODE]->(n:CircuitNode)
WHERE c.id IN $circuits
WITH c.id AS circuit, n.identity AS node, sum(n.effect) AS effect
WHERE abs(effect) >= $min_effect
RETURN circuit, node, effect
