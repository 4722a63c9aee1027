// The circuits that contain a feature, with its effect there (summed over positions): the web view's panel.
MATCH (f:Feature {id: $feature})<-[r:CONTAINS]-(c:Circuit)
WITH c, sum(r.effect) AS effect
RETURN c.id AS circuit, c.task AS task, effect
ORDER BY abs(effect) DESC, circuit
