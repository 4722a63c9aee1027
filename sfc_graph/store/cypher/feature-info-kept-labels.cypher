// Labels a dashboard rebuild keeps: those set by hand or imported, not drafted.
MATCH (i:FeatureInfo)
WHERE i.id IN $ids AND i.label IS NOT NULL AND i.label_source <> 'auto'
RETURN i.id AS id, i.label AS label, i.label_source AS label_source
