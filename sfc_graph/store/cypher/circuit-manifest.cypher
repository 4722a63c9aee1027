// The manifest a circuit was loaded with (JSON text).
MATCH (c:Circuit {id: $circuit})
RETURN c.manifest AS manifest
