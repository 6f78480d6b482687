package fleetpg

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/admission"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/internal/pgtest"
	"github.com/ringfence/ringfence/wire"
)

// BenchmarkPGSizePerHost measures what a host costs the database, for
// docs/scale.md: table-bytes/host, the hosts table (with its index and
// TOAST) over that many realistic hosts; and, for one idle host's batch
// (a heartbeat, as every host sends each telemetry.interval) taken by a
// replica and applied by the leader (enqueue, then a commit that updates
// the host and deletes the row), wal-bytes/batch: the write-ahead log it
// generates, which is what the database writes, replicates to its
// standbys and archives. wal-MB/host/day is that at one batch a minute
// (the default telemetry.interval). One measurement per run, whatever
// b.N.
func BenchmarkPGSizePerHost(b *testing.B) {
	const n = 20_000
	dsn := pgtest.Start(b).NewDatabase(b)
	ctx := context.Background()
	db, err := Open(ctx, dsn, Options{Replica: true, Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Acquire(ctx, "bench", time.Hour); err != nil {
		b.Fatal(err)
	}
	if _, err := db.Load(); err != nil {
		b.Fatal(err)
	}
	conn, err := db.dial(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer closeConn(conn)
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	hosts := make([]*controller.Host, n)
	for i := range hosts {
		hosts[i] = &controller.Host{
			ID: fmt.Sprintf("%064x", i), Fleet: "prod", Tags: []string{"canary"}, Bucket: i % 10000, Admitted: now, AdmittedBy: "token:3f9a1c2b",
			Versions: map[uint32]uint32{291: 1002, 292: 2001}, LastSeen: now, LastSeq: 1000,
			Sensor: "7.12.0", Manifest: strings.Repeat("ab", 32),
			Tracks: []controller.Track{{Channel: 291, To: 1002, Installed: now, Healthy: now}},
		}
	}
	b.ResetTimer()
	for i := 0; i < n; i += 1000 {
		if err := db.Commit(controller.Changes{Hosts: hosts[i : i+1000]}, admission.Changes{}); err != nil {
			b.Fatal(err)
		}
	}
	var tableBytes int64
	if err := conn.QueryRow(ctx, "SELECT pg_total_relation_size('hosts')").Scan(&tableBytes); err != nil {
		b.Fatal(err)
	}

	// One heartbeat batch per host: what a host sends, signed.
	pub, key, _ := ed25519.GenerateKey(nil)
	body, _ := json.Marshal(wire.Batch{Format: wire.Format, HostID: wire.HostIDOf(pub), PublicKey: base64.StdEncoding.EncodeToString(pub), SentAt: now,
		HostInfo: wire.HostInfo{Versions: map[string]uint32{"291": 1002, "292": 2001}, Sensor: "7.12.0", Manifest: strings.Repeat("ab", 32)},
		Events: []wire.Event{{ID: "hb-1001", Seq: 1001, Kind: wire.EventHeartbeat, Channel: 291, Version: 1002, Time: now,
			Evidence: map[string]string{"state": "good"}}}})
	sig := wire.SignatureValue(ed25519.Sign(key, body))
	var before, after int64
	lsn := func(out *int64) {
		if err := conn.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint").Scan(out); err != nil {
			b.Fatal(err)
		}
	}
	const cycle = 2000
	lsn(&before)
	for i := 0; i < cycle; i += 500 {
		for j := i; j < i+500; j++ {
			if _, err := db.Enqueue(ctx, InboxItem{HostID: hosts[j].ID, Body: body, Signature: sig, ReceivedBy: "bench"}); err != nil {
				b.Fatal(err)
			}
		}
		items, err := db.Inbox(ctx, 500)
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]int64, len(items))
		for k, it := range items {
			ids[k] = it.ID
		}
		for j := i; j < i+500; j++ {
			hosts[j].LastSeq++
			hosts[j].LastSeen = hosts[j].LastSeen.Add(time.Minute)
		}
		if err := db.CommitConsumed(controller.Changes{Hosts: hosts[i : i+500]}, admission.Changes{}, ids); err != nil {
			b.Fatal(err)
		}
	}
	lsn(&after)
	b.StopTimer()
	wal := float64(after-before) / cycle
	b.ReportMetric(float64(tableBytes)/n, "table-bytes/host")
	b.ReportMetric(float64(len(body)), "batch-bytes")
	b.ReportMetric(wal, "wal-bytes/batch")
	b.ReportMetric(wal*1440/1e6, "wal-MB/host/day")
}
