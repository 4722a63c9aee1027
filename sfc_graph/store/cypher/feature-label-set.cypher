// Set features' labels (by hand, or imported); a latent without a dashboard gets a row with its label only.
UNWIND $rows AS row
MERGE (i:FeatureInfo {id: row.id})
SET i.dictionary = row.dictionary, i.latent = row.latent, i.label = row.label, i.label_source = row.label_source
