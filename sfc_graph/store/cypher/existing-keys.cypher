// Keys of shared nodes the store already has, so that a load creates each shared node once.
// One statement per shared label, in the order of sfc_graph.graph.NODE_LABELS; $keys is a list of strings.
// UNWIND + a primary-key match costs one index lookup per key (LadybugDB plans `n.id IN $keys` as a scan
// that compares every row with every key: 55 s for 20k keys against 200k features).
UNWIND $keys AS key MATCH (n:Model {id: key}) RETURN n.id AS key
;
UNWIND $keys AS key MATCH (n:Dictionary {id: key}) RETURN n.id AS key
;
UNWIND $keys AS key MATCH (n:Feature {id: key}) RETURN n.id AS key
;
UNWIND $keys AS key MATCH (n:ErrorNode {id: key}) RETURN n.id AS key
;
UNWIND $keys AS key MATCH (n:Output {id: key}) RETURN n.id AS key
;
UNWIND $keys AS key MATCH (n:Head {id: key}) RETURN n.id AS key
;
UNWIND $keys AS key MATCH (n:Token {id: key}) RETURN n.id AS key
;
UNWIND $keys AS key MATCH (n:Task {name: key}) RETURN n.name AS key
