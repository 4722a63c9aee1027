// Record dictionary quality scores (SCR / TPP, ingest/sae_scores.py): the dictionaries (and their model) the store
// does not have yet, then one DictionaryScore per (dictionary, metric, top N) linked from its Dictionary.
UNWIND $new_dictionaries AS row
CREATE (d:Dictionary {id: row.id, kind: row.kind, d_dict: row.d_dict, site: row.site, layer: row.layer, sha256: row.sha256})
;
UNWIND $new_models AS mid
CREATE (m:Model {id: mid})
;
UNWIND $new_dictionaries AS row
MATCH (d:Dictionary {id: row.id})
MATCH (m:Model {id: row.model})
CREATE (d)-[:OF_MODEL]->(m)
;
UNWIND $scores AS row
MATCH (d:Dictionary {id: row.dictionary})
CREATE (s:DictionaryScore {id: row.id, dictionary: row.dictionary, metric: row.metric, top_n: row.top_n,
        value: row.value, dataset: row.dataset, model: row.model, run: row.run, created_at: row.created_at,
        details: row.details})
CREATE (d)-[:HAS_SCORE]->(s)
