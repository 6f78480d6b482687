-- Schema 3: what replicas share besides the state: the telemetry inbox and
-- the signed repository.
--
-- telemetry_inbox: a batch any replica took from a host (verified: its
-- signature is the host's key over the exact body), waiting for the leader.
-- The same batch twice (a host resending after a lost answer) is one row:
-- (host_id, digest) is unique. The leader reads the rows it sees, applies
-- them and deletes them in the transaction that commits their effects; it
-- never tails by id (ids from a sequence do not commit in id order), so a
-- row that commits late is read at the next look, not skipped.
CREATE TABLE telemetry_inbox (
	id          bigserial PRIMARY KEY,
	host_id     text COLLATE "C" NOT NULL,
	digest      bytea NOT NULL CHECK (length(digest) = 32), -- SHA-256 of body
	body        bytea NOT NULL,
	signature   text NOT NULL,
	received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
	received_by text NOT NULL,
	UNIQUE (host_id, digest)
);
COMMENT ON TABLE telemetry_inbox IS 'ringfence-server: telemetry batches a replica took and acknowledged, until the leader applies them';

-- repo_files: the TUF repository every replica serves (metadata/ and
-- targets/, paths relative to the repository directory), the same bytes
-- everywhere; etag is the hex SHA-256 of body, the strong ETag the static
-- server sends. repo_version goes up by one with every change of the set
-- (optimistic concurrency: a writer names the version it started from and
-- is refused if another wrote meanwhile).
CREATE TABLE repo_files (
	path     text COLLATE "C" PRIMARY KEY CHECK (path ~ '^(metadata|targets)/[^/].*$' AND path !~ '(^|/)\.\.?(/|$)'),
	body     bytea NOT NULL,
	etag     text NOT NULL CHECK (etag ~ '^[0-9a-f]{64}$'),
	modified timestamptz NOT NULL DEFAULT clock_timestamp()
);
COMMENT ON TABLE repo_files IS 'ringfence-server: the signed TUF repository the replicas serve (path -> bytes, SHA-256)';

CREATE TABLE repo_version (
	one     boolean PRIMARY KEY DEFAULT true CHECK (one),
	version bigint NOT NULL CHECK (version >= 0)
);
COMMENT ON TABLE repo_version IS 'ringfence-server: the version of repo_files (one row), raised by every change; do not change it by hand';
INSERT INTO repo_version (version) VALUES (0);
