// Remove weight graph $graph: its WEIGHT relationships, then its record. The shared Feature and Token nodes stay
// (circuits may use them). Also run before a load, to clear what an interrupted load of the same graph left.
MATCH ()-[r:WEIGHT]->()
WHERE r.graph = $graph
DELETE r
;
MATCH (w:WeightGraph {id: $graph})
DELETE w
