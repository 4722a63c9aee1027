// name: behaviours
// description: Behaviours found by sfc discover (clusters of a corpus's contexts), largest first, with their circuits.
// param discovery: str | null = null -- only this discovery's behaviours (an id from sfc discover); null for all
// param min_size: int (>= 1) = 1 -- only clusters of at least this many contexts
// column behaviour: str -- the behaviour's id, also its circuit's task name (<discovery>/c<rank>)
// column discovery: str -- the discovery run it came from
// column size: int -- contexts in the cluster
// column features: str -- what was clustered: act, grad or both
// column dominant_label: str -- the commonest planted label of its contexts (labelled corpora only; else null)
// column label_share: float -- the fraction of its contexts with that label
// column circuit: str -- the id of the behaviour's circuit
// column n_nodes: int -- nodes in the circuit
// column examples: str -- JSON: a few example contexts (text, answer, label)
MATCH (b:Behaviour)-[:HAS_CIRCUIT]->(c:Circuit)
WHERE b.discovery = coalesce($discovery, b.discovery) AND b.size >= $min_size
RETURN b.id AS behaviour, b.discovery AS discovery, b.size AS size, b.features AS features,
       b.dominant_label AS dominant_label, b.label_share AS label_share, c.id AS circuit, c.n_nodes AS n_nodes,
       b.examples AS examples
ORDER BY size DESC, behaviour
