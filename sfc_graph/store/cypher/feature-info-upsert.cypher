// Store feature dashboards (sfc_graph/features.py): one FeatureInfo row per latent, replacing what was there.
UNWIND $rows AS row
MERGE (i:FeatureInfo {id: row.id})
SET i.dictionary = row.dictionary, i.latent = row.latent, i.site = row.site, i.layer = row.layer,
    i.label = row.label, i.label_source = row.label_source, i.density = row.density,
    i.max_activation = row.max_activation, i.mean_activation = row.mean_activation,
    i.top_tokens = row.top_tokens, i.top_logits = row.top_logits, i.bottom_logits = row.bottom_logits,
    i.dashboard = row.dashboard, i.corpus = row.corpus, i.built_at = row.built_at
