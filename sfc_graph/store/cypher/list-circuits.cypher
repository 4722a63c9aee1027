// Every circuit with its summary columns, oldest first.
MATCH (c:Circuit)
RETURN c.id AS id, c.task AS task, c.model AS model, c.method AS method,
       c.n_nodes AS n_nodes, c.n_edges AS n_edges, c.created_at AS created_at
ORDER BY created_at, id
