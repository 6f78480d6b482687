-- Schema 2: the leader lease of replicas sharing the database, and the
-- epoch of the last commit.
--
-- One row: who leads (holder), under which fencing token (epoch, raised by
-- every takeover) and until when (expires_at, by the database's clock).
-- Every commit of a replica checks, in its own transaction, that the row
-- still holds its holder and epoch and has not expired; see package
-- fleetpg's "Leader lease". It starts expired, at epoch 0, held by no one.
-- Do not change or delete it by hand while replicas run: to end a lease at
-- once, set expires_at = now() (what a replica's clean shutdown does).
CREATE TABLE leader_lease (
	one        boolean PRIMARY KEY DEFAULT true CHECK (one),
	holder     text NOT NULL,
	epoch      bigint NOT NULL CHECK (epoch >= 0),
	expires_at timestamptz NOT NULL
);
COMMENT ON TABLE leader_lease IS 'ringfence-server: the replicas'' leader lease (one row): holder, epoch (the fencing token) and expiry by the database''s clock; do not change it by hand';
INSERT INTO leader_lease (holder, epoch, expires_at) VALUES ('', 0, '1970-01-01 00:00:00+00');

-- The epoch of the lease the last commit ran under (0: a commit made
-- without a lease, or none yet). With seq it names a commit uniquely
-- across leaders: a replica whose connection broke during a commit finds
-- out whether it took effect by (seq, epoch), which another leader's
-- commit with the same seq cannot fake.
ALTER TABLE commit_seq ADD COLUMN epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0);
