// name: error-share
// description: The fraction of a circuit's |effect| carried by SAE error nodes, per site and layer and overall.
// param circuit: circuit -- the circuit's id
// param min_effect: float (>= 0) = 0 -- only nodes with |effect| >= min_effect
// column site: str -- embed, attn, mlp, resid, or all for the whole circuit (last row)
// column layer: int -- -1 for embed; null on the all row
// column error_share: float -- sum |effect| of error nodes / sum |effect| of feature and error nodes; null when both are 0
// The output node is left out. The "all" row is there even when no node passes min_effect.
MATCH (c:Circuit {id: $circuit})-[:HAS_NODE]->(n:CircuitNode)
WHERE n.kind <> 'output' AND abs(n.effect) >= $min_effect
WITH n.site AS site, n.layer AS layer,
     sum(CASE WHEN n.kind = 'error' THEN abs(n.effect) ELSE 0.0 END) AS err, sum(abs(n.effect)) AS total
WITH collect({site: site, layer: layer, err: err, total: total}) AS rows, sum(err) AS all_err, sum(total) AS all_total
UNWIND rows + [{site: 'all', layer: CASE WHEN 1 = 0 THEN 0 END, err: coalesce(all_err, 0.0),
                total: coalesce(all_total, 0.0)}] AS r
RETURN r.site AS site, r.layer AS layer, CASE WHEN r.total > 0 THEN r.err / r.total END AS error_share
ORDER BY CASE WHEN site = 'all' THEN 1 ELSE 0 END, layer, site
