// name: weight-neighbors
// description: A feature's strongest input-invariant connections in the stored weight graph (`sfc weights load`): what it reads (in) and what reads it or what it writes (out), by kind.
// param feature: feature -- global feature id, <dictionary id>/<index>
// param direction: str | null = null -- in (other -> feature), out (feature -> other); null for both
// param kind: str | null = null -- resid, ov (feature -> feature), embed, embed_ov (token -> feature), logit (feature -> token); null for every kind
// param k: int (>= 1) = 10 -- the k strongest per direction and kind (by the stored ranks: rank_in for in, rank_out for out)
// param graph: str | null = null -- a WeightGraph id (`sfc weights list`); null for every stored weight graph
// column direction: str -- in or out
// column kind: str -- resid, ov, embed, embed_ov or logit
// column via: str -- the Head id a resid-stream connection goes through (ov, embed_ov); null otherwise
// column other: str -- the Feature or Token id at the other end
// column text: str -- the token's text when the other end is a Token; null for features
// column weight: float -- the input-invariant weight (LayerNorm as a fixed scale; see the WeightGraph manifest)
// column rank: int -- 1 = the strongest of its kind (into the target for in, out of the source for out)
// Ordered by direction (in, then out), kind, rank, then other.
MATCH (f:Feature {id: $feature})
OPTIONAL MATCH (f)<-[wi:WEIGHT]-(src)
WHERE wi.rank_in <= $k AND wi.kind = coalesce($kind, wi.kind) AND wi.graph = coalesce($graph, wi.graph)
WITH f, collect({direction: 'in', kind: wi.kind, via: wi.via, other: src.id, text: src.text, weight: wi.weight,
                 rank: wi.rank_in}) AS ins
OPTIONAL MATCH (f)-[wo:WEIGHT]->(dst)
WHERE wo.rank_out <= $k AND wo.kind = coalesce($kind, wo.kind) AND wo.graph = coalesce($graph, wo.graph)
WITH ins, collect({direction: 'out', kind: wo.kind, via: wo.via, other: dst.id, text: dst.text, weight: wo.weight,
                   rank: wo.rank_out}) AS outs
UNWIND ins + outs AS r
WITH r
WHERE r.other IS NOT NULL AND r.direction = coalesce($direction, r.direction)
RETURN r.direction AS direction, r.kind AS kind, r.via AS via, r.other AS other, r.text AS text, r.weight AS weight,
       r.rank AS rank
ORDER BY direction, kind, rank, other
