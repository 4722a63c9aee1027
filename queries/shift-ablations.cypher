// name: shift-ablations
// description: Every feature each SHIFT intervention ablated, with its judgement and the run's before/after figures.
// param circuit: str | null = null -- only interventions on this circuit; null for every one
// column intervention: str -- the intervention's id
// column circuit: str -- the classifier circuit the features were chosen from
// column judge: str -- auto, query or file
// column feature: str -- global feature id, <dictionary id>/<index>
// column site: str -- embed, attn, mlp or resid
// column layer: int -- -1 for embed
// column judgement: str -- spurious (every ablated feature was judged so)
// column reason: str -- why the judge marked it (the automatic rule's figures, or the query / file it came from)
// column effect: float -- the feature's effect in the circuit (null when it is not in the circuit)
// column worst_group_before: float -- the classifier's worst-group accuracy before the ablation
// column worst_group_after: float -- ... and after
// Ordered by intervention, then feature.
MATCH (i:Intervention)-[a:ABLATES]->(f:Feature)
WHERE i.kind = 'shift' AND i.circuit = coalesce($circuit, i.circuit)
RETURN i.id AS intervention, i.circuit AS circuit, i.judge AS judge, f.id AS feature, f.site AS site,
       f.layer AS layer, a.judgement AS judgement, a.reason AS reason, a.effect AS effect,
       i.worst_group_before AS worst_group_before, i.worst_group_after AS worst_group_after
ORDER BY intervention, feature
