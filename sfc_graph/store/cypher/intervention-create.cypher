// Record one intervention (a SHIFT run, ingest/shift.py; sfc_graph/interventions.py), in one transaction: the node,
// its link to the circuit it was chosen from, the ablated features that the store does not have yet (their
// dictionary is the circuit's), and one ABLATES link per ablated feature, carrying the judgement (and the
// feature's effect in the circuit where one was measured).
CREATE (i:Intervention {id: $id, kind: $kind, circuit: $circuit, task: $task, model: $model, judge: $judge,
        n_ablated: $n_ablated, profession_before: $profession_before, profession_after: $profession_after,
        gender_before: $gender_before, gender_after: $gender_after, worst_group_before: $worst_group_before,
        worst_group_after: $worst_group_after, results: $results, created_at: $created_at})
;
MATCH (i:Intervention {id: $id})
MATCH (c:Circuit {id: $circuit})
CREATE (i)-[:INTERVENES_ON]->(c)
;
UNWIND $new_features AS row
MATCH (d:Dictionary {id: row.dictionary})
CREATE (f:Feature {id: row.feature, dictionary: row.dictionary, latent: row.latent, site: row.site, layer: row.layer})
CREATE (f)-[:IN_DICTIONARY]->(d)
;
UNWIND $ablated AS row
MATCH (i:Intervention {id: $id})
MATCH (f:Feature {id: row.feature})
CREATE (i)-[:ABLATES {judgement: row.judgement, reason: row.reason, effect: row.effect}]->(f)
;
UNWIND $ablated_no_effect AS row
MATCH (i:Intervention {id: $id})
MATCH (f:Feature {id: row.feature})
CREATE (i)-[:ABLATES {judgement: row.judgement, reason: row.reason}]->(f)
