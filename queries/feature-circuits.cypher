// name: feature-circuits
// description: Every circuit that contains a feature, with the feature's effect there.
// param feature: feature -- global feature id, <dictionary id>/<index> (see top-nodes' feature column)
// param min_effect: float (>= 0) = 0 -- only circuits where |effect| >= min_effect
// column circuit: str -- circuit id
// column task: str -- the circuit's task
// column effect: float -- the feature's effect in that circuit, summed over positions
// Ordered by |effect| descending, then circuit id.
MATCH (f:Feature {id: $feature})<-[r:CONTAINS]-(c:Circuit)
WITH c, sum(r.effect) AS effect
WHERE abs(effect) >= $min_effect
RETURN c.id AS circuit, c.task AS task, effect
ORDER BY abs(effect) DESC, circuit
