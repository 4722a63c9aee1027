// One feature's dashboard and label.
MATCH (i:FeatureInfo {id: $feature})
RETURN i.id AS id, i.dictionary AS dictionary, i.latent AS latent, i.site AS site, i.layer AS layer,
       i.label AS label, i.label_source AS label_source, i.density AS density,
       i.max_activation AS max_activation, i.mean_activation AS mean_activation, i.top_tokens AS top_tokens,
       i.top_logits AS top_logits, i.bottom_logits AS bottom_logits, i.dashboard AS dashboard,
       i.corpus AS corpus, i.built_at AS built_at
