// Keys of shared nodes the store already has, so that a load creates each shared node once.
// One statement per shared label, in the order of sfc_graph.graph.NODE_LABELS; $keys is a list of strings.
MATCH (n:Model) WHERE n.id IN $keys RETURN n.id AS key
;
MATCH (n:Dictionary) WHERE n.id IN $keys RETURN n.id AS key
;
MATCH (n:Feature) WHERE n.dictionary IN $dictionaries RETURN n.id AS key
;
MATCH (n:ErrorNode) WHERE n.id IN $keys RETURN n.id AS key
;
MATCH (n:Output) WHERE n.id IN $keys RETURN n.id AS key
;
MATCH (n:Task) WHERE n.name IN $keys RETURN n.name AS key
