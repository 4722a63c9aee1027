// name: feature-search
// description: Features whose label contains a text (case-insensitive), with their dashboard figures and circuits.
// param text: str -- the text to look for in labels
// param source: str | null = null -- only labels from this source: manual, neuronpedia or auto
// param k: int (>= 1) = 50 -- how many features to return
// column feature: str -- global feature id, <dictionary id>/<index>
// column label: str -- the feature's label
// column label_source: str -- manual (sfc label), neuronpedia (imported) or auto (drafted from the dashboard)
// column site: str -- embed, attn, mlp or resid (null for a label imported for a latent without a dashboard)
// column layer: int -- -1 for embed
// column density: float -- fraction of corpus tokens on which it is active (null without a dashboard)
// column top_tokens: list[str] -- the commonest peak tokens of its top contexts
// column n_circuits: int -- how many circuits in the store contain it
// Ordered by n_circuits descending, then feature id.
MATCH (i:FeatureInfo)
WHERE toLower(i.label) CONTAINS toLower($text) AND i.label_source = coalesce($source, i.label_source)
OPTIONAL MATCH (f:Feature {id: i.id})<-[:CONTAINS]-(c:Circuit)
WITH i, count(DISTINCT c) AS n_circuits
RETURN i.id AS feature, i.label AS label, i.label_source AS label_source, i.site AS site, i.layer AS layer,
       i.density AS density, i.top_tokens AS top_tokens, n_circuits
ORDER BY n_circuits DESC, feature
LIMIT $k
