// The Feature nodes of some dictionaries, and how many Feature nodes the store has in all: when a bundle
// brings more features than the store holds, one scan of these is cheaper than a lookup per feature.
MATCH (n:Feature) WHERE n.dictionary IN $dictionaries RETURN n.id AS key
;
MATCH (n:Feature) RETURN count(n) AS count
