-- Schema 1: fleetdb's buckets as tables, and the commit sequence.
--
-- Every value is the JSON fleetdb stores (encoding/json of the controller
-- and admission structs), as jsonb so that an operator can query it:
--   SELECT id, value->>'last_seen' FROM hosts ORDER BY id LIMIT 10;
-- Keys are text in the "C" collation: byte order, as bbolt's.

CREATE TABLE hosts (
	id    text COLLATE "C" PRIMARY KEY,
	value jsonb NOT NULL
);
COMMENT ON TABLE hosts IS 'ringfence-server: the admitted hosts (controller.Host as JSON), by host id';

CREATE TABLE rollouts (
	channel bigint PRIMARY KEY CHECK (channel BETWEEN 0 AND 4294967295),
	value   jsonb NOT NULL
);
COMMENT ON TABLE rollouts IS 'ringfence-server: every channel''s rollout with its decisions, deny list and gate evidence (controller.Rollout as JSON)';

CREATE TABLE admission (
	id    text COLLATE "C" PRIMARY KEY,
	value jsonb NOT NULL
);
COMMENT ON TABLE admission IS 'ringfence-server: keys not (or no longer) in the fleet: pending, rejected, decommissioned (admission.Record as JSON), by host id';

CREATE TABLE tokens (
	id    text COLLATE "C" PRIMARY KEY,
	value jsonb NOT NULL
);
COMMENT ON TABLE tokens IS 'ringfence-server: enrolment tokens (admission.Token as JSON: hashes, never the secrets)';

-- One row: the number of the last commit. Every commit sets it to the next
-- number, on the condition that it still holds the one the server last
-- wrote (else the column's NOT NULL fails the commit): a server finds out
-- whether an interrupted commit took effect, and refuses to write over
-- commits it did not make.
CREATE TABLE commit_seq (
	one boolean PRIMARY KEY DEFAULT true CHECK (one),
	seq bigint NOT NULL CHECK (seq >= 0)
);
COMMENT ON TABLE commit_seq IS 'ringfence-server: the number of the last commit (one row); do not change it by hand';
INSERT INTO commit_seq (seq) VALUES (0);
