// Whether a behaviour is recorded (re-running a discovery adds nothing twice).
MATCH (b:Behaviour {id: $id})
RETURN b.id AS id
