// name: shared-features
// description: Features present in at least min_count of the given circuits (or tasks), with their effects.
// param circuits: list[circuit] | null = null -- circuit ids (give circuits or tasks)
// param tasks: list[task] | null = null -- task names: every circuit of these tasks, counted per task
// param min_count: int (>= 1) = 2 -- in at least this many of the circuits (of the tasks, with tasks)
// param min_effect: float (>= 0) = 0 -- a circuit contains a feature when |effect| >= min_effect
// one-of: circuits, tasks
// column feature: str -- global feature id, <dictionary id>/<index>
// column site: str -- embed, attn, mlp or resid
// column layer: int -- -1 for embed
// column count: int -- how many of the circuits (or tasks) contain the feature
// column effects: list[float] -- one per circuit that contains it, in the order the circuits (tasks) were given
// column circuit_ids: list[str] -- the circuits that contain it, in the same order as effects
// column label: str -- the feature's label (sfc label, sfc features build); null when it has none
// column top_tokens: list[str] -- the commonest peak tokens of its top activating contexts (sfc features build)
// post: order_effects
// Effects are summed over positions first. With tasks, a task contains a feature when any of its circuits
// does; effects still lists every such circuit (tasks in the order given, circuits by id within a task).
// Ordered by count descending, then the largest |effect| descending, then feature id.
// Grouped by the feature's properties, not by the node: LadybugDB groups by value much faster.
MATCH (c:Circuit)-[r:CONTAINS]->(f:Feature)
WHERE c.id IN $circuits OR c.task IN $tasks
WITH f.id AS feature, f.site AS site, f.layer AS layer, c.id AS circuit, c.task AS task, sum(r.effect) AS effect
WHERE abs(effect) >= $min_effect
WITH feature, site, layer, collect(circuit) AS circuit_ids, collect(task) AS circuit_tasks,
     collect(effect) AS effects, count(DISTINCT CASE WHEN size($tasks) > 0 THEN task ELSE circuit END) AS n_in
WHERE n_in >= $min_count
OPTIONAL MATCH (i:FeatureInfo {id: feature})
RETURN feature, site, layer, n_in AS count, effects, circuit_ids, circuit_tasks, i.label AS label,
       i.top_tokens AS top_tokens
