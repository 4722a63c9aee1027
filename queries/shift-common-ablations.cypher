// name: shift-common-ablations
// description: Features ablated by at least min_runs SHIFT interventions (by default: by every one).
// param min_runs: int (>= 0) = 0 -- in at least this many runs; 0 means every SHIFT run in the store
// column feature: str -- global feature id, <dictionary id>/<index>
// column site: str -- embed, attn, mlp or resid
// column layer: int -- -1 for embed
// column runs: int -- how many SHIFT interventions ablated it
// column of_runs: int -- how many SHIFT interventions the store holds
// Ordered by runs descending, then feature.
MATCH (all_runs:Intervention)
WHERE all_runs.kind = 'shift'
WITH count(all_runs) AS of_runs
MATCH (i:Intervention)-[:ABLATES]->(f:Feature)
WHERE i.kind = 'shift'
WITH of_runs, f.id AS feature, f.site AS site, f.layer AS layer, count(DISTINCT i.id) AS runs
WHERE runs >= $min_runs AND ($min_runs > 0 OR runs = of_runs)
RETURN feature, site, layer, runs, of_runs
ORDER BY runs DESC, feature
