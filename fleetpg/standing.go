package fleetpg

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ringfence/ringfence/wire"
)

// standingSQL is a host's admission: accepted when the fleet holds it,
// else the state of its admission record, else nothing. Two primary-key
// lookups in one statement.
const standingSQL = `SELECT coalesce(
	(SELECT 'accepted' FROM hosts WHERE id = $1),
	(SELECT value->>'state' FROM admission WHERE id = $1),
	'')`

// Standing is a host's admission as the database holds it now, for a
// replica that takes its telemetry: wire.AdmissionAccepted when it is in
// the fleet, its admission record's state (pending, rejected,
// decommissioned) when it has one, "" when it is unknown. It runs on the
// inbox's connections, beside Enqueue, never on the leader's.
func (db *DB) Standing(ctx context.Context, hostID string) (wire.Admission, error) {
	if err := checkText("host id", hostID, maxHostID, false); err != nil {
		return "", err
	}
	if db.inbox == nil {
		return "", ErrNotReplica
	}
	var st string
	err := db.inboxDo(ctx, func(conn *pgx.Conn) error {
		return conn.QueryRow(ctx, standingSQL, hostID).Scan(&st)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("fleetpg: look host %.64q up: %w", hostID, err)
	}
	return wire.Admission(st), nil
}
