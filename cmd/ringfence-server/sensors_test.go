package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/wire"
)

// sensorHost is a host of the fleet that says which sensor it runs.
type sensorHost struct {
	key      ed25519.PrivateKey
	id       string
	sensor   string // "": an older host that does not say
	manifest string
}

func newSensorHost(t *testing.T, sensor string) *sensorHost {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	h := &sensorHost{key: key, id: wire.HostIDOf(pub), sensor: sensor}
	if sensor != "" {
		sum := sha256.Sum256([]byte("capability manifest of sensor " + sensor))
		h.manifest = hex.EncodeToString(sum[:])
	}
	return h
}

// report posts one signed batch: a heartbeat on channel 291, running
// version, with the host's sensor and manifest. It returns the server's
// status.
func (h *sensorHost) report(t *testing.T, url string, seq uint64, version uint32) int {
	t.Helper()
	b := wire.Batch{Format: wire.Format, HostID: h.id, PublicKey: base64.StdEncoding.EncodeToString(h.key.Public().(ed25519.PublicKey)),
		SentAt:   time.Now().UTC(),
		HostInfo: wire.HostInfo{Versions: map[string]uint32{"291": version}, Sensor: h.sensor, Manifest: h.manifest},
		Events:   []wire.Event{{ID: fmt.Sprintf("%s-%d", h.id, seq), Seq: seq, Kind: wire.EventHeartbeat, Channel: 291, Version: version}}}
	body, err := json.Marshal(b)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, url+wire.Path, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header.Set(wire.SignatureHeader, wire.SignatureValue(ed25519.Sign(h.key, body)))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// linesOf returns the lines of out that start with prefix.
func linesOf(out, prefix string) []string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			got = append(got, l)
		}
	}
	return got
}

// TestSensorsShown: with a real server and hosts of three kinds (sensor
// 7.11, sensor 7.12, and an older host that says none), 'rollout status'
// shows each rollout's compatibility constraint and the channel's hosts
// per sensor version with the excluded ones marked, and 'hosts list' and
// 'hosts show' show each host's sensor. Content unconstrained (any sensor)
// and content the publisher's matrix found 7.11 refuses (cf291-shape: 7.12
// only) are both rolled out.
func TestSensorsShown(t *testing.T) {
	repo, keys := newRepo(t)
	state := testtmp.Dir(t)
	for _, f := range []string{"good-ipc-1001.rfch", "good-ipc-1002.rfch"} {
		_, errOut, code := runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "291", td("channels", f))
		require.Equal(t, 0, code, errOut)
	}
	out, errOut, code := runCLI(t, "publish", "--repo", repo, "--keys", keys, "--channel", "291", "--matrix", td("capabilities"),
		td("channels", "cf291-shape.rfch"))
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "published channels/291/1004.rfch")
	require.Contains(t, out, "for sensor 7.12 only")

	srv := startServe(t, repo, keys, state, "--eval-interval", "50ms")

	var hosts []*sensorHost
	for _, s := range []string{"7.11", "7.11", "7.11", "7.12", "7.12", ""} {
		h := newSensorHost(t, s)
		hosts = append(hosts, h)
		_, errOut, code := runCLI(t, "hosts", "accept", "--state", state, "--key", base64.StdEncoding.EncodeToString(h.key.Public().(ed25519.PublicKey)),
			"--fleet", "acme", "--why", "lab host")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, http.StatusOK, h.report(t, srv.url, 1, 1001), "host %s (sensor %q): batch refused", h.id, h.sensor)
	}
	// A key nobody admitted: pending, and what it says of its sensor
	// counts for nothing.
	stranger := newSensorHost(t, "7.12")
	require.Equal(t, http.StatusForbidden, stranger.report(t, srv.url, 1, 1001))

	// The hosts listing: each admitted host with its sensor; the older
	// host as unknown; the pending key without one.
	out, errOut, code = runCLI(t, "hosts", "list", "--state", state)
	require.Equal(t, 0, code, errOut)
	t.Logf("hosts list:\n%s", out)
	require.Contains(t, out, "6 hosts in the fleet, 1 pending")
	for _, h := range hosts {
		line := linesOf(out, h.id)
		require.Len(t, line, 1, out)
		want := "sensor=" + h.sensor
		if h.sensor == "" {
			want = "sensor=unknown"
		}
		require.Regexp(t, `^`+h.id+`  accepted +fleet=acme `+want+` by=\S+ last-seen=\S+$`, line[0])
	}
	line := linesOf(out, stranger.id)
	require.Len(t, line, 1, out)
	require.Contains(t, line[0], "pending")
	require.NotContains(t, line[0], "sensor=")

	out, errOut, code = runCLI(t, "hosts", "show", "--state", state, hosts[3].id)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "sensor=7.12")
	t.Logf("hosts show:\n%s", out)
	require.Contains(t, out, "\n  sensor manifest sha256 "+hosts[3].manifest+"\n")
	out, errOut, code = runCLI(t, "hosts", "show", "--state", state, hosts[5].id)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "sensor=unknown")
	require.NotContains(t, out, "manifest")

	// Unconstrained content: any sensor, nobody excluded.
	out, errOut, code = runCLI(t, "rollout", "start", "--state", state, "--channel", "291", "--version", "1002", "--from", "1001",
		"--canary-tags", "canary", "--who", "alice", "--why", "weekly content")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "\n  compat:   any sensor\n")
	require.Contains(t, out, "\n  sensors:  7.11 3 hosts, 7.12 2 hosts, unknown 1 host\n")
	_, errOut, code = runCLI(t, "rollout", "rollback", "--state", state, "--channel", "291", "--who", "alice", "--why", "wrong version")
	require.Equal(t, 0, code, errOut)

	// Content for 7.12 only: the 7.11 hosts and the older one are out.
	out, errOut, code = runCLI(t, "rollout", "start", "--state", state, "--channel", "291", "--version", "1004", "--from", "1001",
		"--canary-tags", "canary", "--who", "alice", "--why", "IPC named-pipe detections")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "\n  compat:   sensor 7.12 only; excludes 7.11 (FIELD_NOT_SUPPLIED)\n")
	require.Contains(t, out, "\n  sensors:  7.11 3 hosts (excluded), 7.12 2 hosts, unknown 1 host (excluded);")

	// The count of hosts outside the rollout is the hosts' as they are now,
	// not the gate's at its last evaluation.
	const sensors = "  sensors:  7.11 3 hosts (excluded), 7.12 2 hosts, unknown 1 host (excluded); 4 hosts excluded from the rollout"
	out, errOut, code = runCLI(t, "rollout", "status", "--state", state)
	require.Equal(t, 0, code, errOut)
	t.Logf("rollout status:\n%s", out)
	require.Contains(t, out, "\n"+sensors+"\n")
	// The lines before stay as they were, the new ones in between.
	require.Regexp(t, `channel 291: 1001 -> 1004  RUNNING  \(standard schedule, stage 1 of \d+: canary\)\n`+
		`  stages:   .*\n`+
		`  hosts:    1001: 6\n`+
		`  compat:   sensor 7\.12 only; excludes 7\.11 \(FIELD_NOT_SUPPLIED\)\n`+
		regexp.QuoteMeta(sensors)+`\n`+
		`  gate:     statistic .*; treated 0 \(0 failed\), control \d+ \(0 failed\)\n`+
		`  tests:    reported 0\.00, silence 0\.00, health 0\.00 \(0 judged, 0 unhealthy, p0 0\); expected failures 0\.00; promotion not yet\n`+
		`  denied:   \[1002\]\n`, out)

	// --json stays the API's View, the constraint and the counts in it.
	out, errOut, code = runCLI(t, "rollout", "status", "--state", state, "--json")
	require.Equal(t, 0, code, errOut)
	var vs []server.View
	require.NoError(t, json.Unmarshal([]byte(out), &vs))
	require.Len(t, vs, 1)
	require.Equal(t, compat.Constraint{Sensors: []string{"7.12"}, Excluded: map[string]string{"7.11": "FIELD_NOT_SUPPLIED"}}, vs[0].Compat)
	require.Equal(t, map[string]int{"7.11": 3, "7.12": 2, "unknown": 1}, vs[0].Sensors)
	require.Equal(t, []string{"7.11", "unknown"}, vs[0].Excludes)
}

// TestSensorOrder: the sensors line lists versions as people read them,
// hosts that did not say last, the excluded ones marked and counted.
func TestSensorOrder(t *testing.T) {
	v := server.View{
		Compat:   compat.Constraint{Sensors: []string{"7.12", "7.9"}, Excluded: map[string]string{"7.10": "preflight", "7.8": "FIELD_NOT_SUPPLIED"}},
		Sensors:  map[string]int{"7.12": 1, "7.9": 2, "unknown": 4, "7.10": 5, "7.8-rc1": 1, "7.8": 3, "7.12.1": 1},
		Excludes: []string{"7.10", "7.8", "7.8-rc1", "unknown"},
	}
	require.Equal(t, "7.8 3 hosts (excluded), 7.8-rc1 1 host (excluded), 7.9 2 hosts, 7.10 5 hosts (excluded), 7.12 1 host, 7.12.1 1 host, "+
		"unknown 4 hosts (excluded); 13 hosts excluded from the rollout", sensorsText(v))
	require.Equal(t, "no hosts on the channel yet", sensorsText(server.View{}))
}
