package powercut_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ringfence/ringfence/daemon"
	"github.com/ringfence/ringfence/hostconfig"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/internal/testbin"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/powercut"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/tuf"
	"github.com/ringfence/ringfence/tufrepo"
	"github.com/ringfence/ringfence/wire"
)

// What the daemon scenario needs from the test that runs it, through the
// environment its child processes inherit: the ringfenced binary (the
// agent the daemon supervises and the preflight it runs), and a directory
// off the mount for the TUF repository the daemon polls.
const (
	envRingfenced = "RINGFENCE_POWERCUT_RINGFENCED"
	envDaemonDir  = "RINGFENCE_POWERCUT_DAEMON_DIR"
)

// baseFile is where a scenario's setup records the versions of the
// metadata it left, in the root: it is part of every state a cut leaves,
// so the check compares each state against it.
const baseFile = "powercut-base.json"

func init() { scenarioSets = append(scenarioSets, daemonScenarios) }

// TestPowerCutDaemon builds ringfenced for the scenario's agent and
// preflight, then runs the daemon's update loop under the harness.
func TestPowerCutDaemon(t *testing.T) {
	dir := tmp(t) // skips unless the harness runs
	bin := testbin.Exe(testbin.Build(t, "../cmd/ringfenced"), "../cmd/ringfenced")
	t.Setenv(envRingfenced, bin)
	t.Setenv(envDaemonDir, dir)
	runAll(t, daemonScenarios())
}

// daemonEnv is what the test passed down; the scenarios run only under
// TestPowerCutDaemon.
func daemonEnv() (bin, dir string, err error) {
	bin, dir = os.Getenv(envRingfenced), os.Getenv(envDaemonDir)
	if bin == "" || dir == "" {
		return "", "", fmt.Errorf("the daemon scenarios run under TestPowerCutDaemon (%s and %s unset)", envRingfenced, envDaemonDir)
	}
	return bin, dir, nil
}

// capsPath is the capability manifest of the sensor the host runs (the
// host scenarios' newHost loads the same): the daemon validates with it,
// the agent loads with it, preflight runs with it.
func capsPath() string {
	return filepath.Join(testfiles.Dir(), "capabilities", "sensor-7.11.json")
}

func planFor(v uint32) []byte {
	return fmt.Appendf(nil, `{"format":%q,"channel":291,"stages":[{"name":"fleet","percent":100,"version":%d}]}`, rollout.Format, v)
}

func daemonScenarios() []powercut.Scenario {
	h := newHost()
	return []powercut.Scenario{
		{
			// One poll of the daemon's loop on a host that runs v1 (GOOD),
			// against a repository that has moved on since the host's last
			// refresh: a new root (the targets key rotated), new targets,
			// content (v2 published), rollout (v2 for the fleet), snapshot
			// and timestamp. The poll refreshes TUF, downloads the plan and
			// v2, validates and preflights it, stages and activates it; the
			// agent restarts and loads the trial; then the daemon stops
			// (the agent records its clean stop). Events go to state.db's
			// outbox (no telemetry endpoint: they stay there).
			Name:  "daemon-update-loop",
			Setup: func(root string) error { return daemonSetup(h, root) },
			Run:   func(root string, mark func(string)) error { return daemonRun(h, root, mark) },
			Check: func(c powercut.Cut) error { return daemonCheck(h, c) },
		},
	}
}

// daemonSetup makes the repository at versions N (v1 published, planned
// for the fleet), a host root on the mount that runs v1 GOOD and trusts
// the repository's metadata at N (refreshed through the host's TUF
// client), records those versions, then publishes N+1 for the poll.
func daemonSetup(h *host, root string) error {
	_, dir, err := daemonEnv()
	if err != nil {
		return err
	}
	repoDir, keys := filepath.Join(dir, "repo"), filepath.Join(dir, "keys")
	for _, d := range []string{repoDir, keys} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
	}
	repo, err := tufrepo.Init(repoDir, keys, tufrepo.InitOptions{})
	if err != nil {
		return err
	}
	if _, err := repo.Publish(291, v1, h.data[v1]); err != nil {
		return err
	}
	if err := repo.SetRollout(291, planFor(v1)); err != nil {
		return err
	}
	trusted, err := repo.RootJSON()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "root.json"), trusted, 0o600); err != nil {
		return err
	}
	if err := h.with(root, h.good(v1)); err != nil {
		return err
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(repoDir)))
	defer srv.Close()
	if err := hostRefresh(root, trusted, srv.URL); err != nil {
		return fmt.Errorf("the host's first refresh: %w", err)
	}
	var vs daemonVersions
	if vs.Before, err = trustedVersions(filepath.Join(root, "tuf")); err != nil {
		return err
	}
	// N+1 of every role, published before the poll.
	if err := repo.RotateKeys(tufrepo.RoleTargets, ""); err != nil {
		return err
	}
	if _, err := repo.Publish(291, v2, h.data[v2]); err != nil {
		return err
	}
	if err := repo.SetRollout(291, planFor(v2)); err != nil {
		return err
	}
	// What a refresh now trusts, by a client of its own off the mount.
	probe := filepath.Join(dir, "probe")
	if err := os.RemoveAll(probe); err != nil {
		return err
	}
	if err := hostRefresh(probe, trusted, srv.URL); err != nil {
		return err
	}
	if vs.After, err = trustedVersions(filepath.Join(probe, "tuf")); err != nil {
		return err
	}
	b, err := json.Marshal(vs)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, baseFile), b, 0o600)
}

// daemonVersions are the versions of the host's trusted metadata before
// the poll (N) and after a refresh from the repository it polls (N+1),
// by role.
type daemonVersions struct {
	Before, After map[string]int64
}

// hostRefresh runs the host's TUF client on root's trusted metadata
// against the repository at url.
func hostRefresh(root string, trusted []byte, url string) error {
	c, err := tuf.New(tuf.Options{
		Dir:         filepath.Join(root, "tuf"),
		DownloadDir: filepath.Join(root, "downloads"),
		TrustedRoot: trusted,
		MetadataURL: url + "/metadata/",
		TargetsURL:  url + "/targets/",
		Retries:     -1,
	})
	if err != nil {
		return err
	}
	return c.Refresh(context.Background())
}

// trustedVersions reads signed.version of every role file in a host's
// trusted metadata directory (tuf.Client's Dir), by role.
func trustedVersions(dir string) (map[string]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || atomicfile.IsTemp(name) || !strings.HasSuffix(name, ".json") {
			continue
		}
		v, err := signedVersion(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		out[strings.TrimSuffix(name, ".json")] = v
	}
	return out, nil
}

// signedVersion reads the signed.version of a metadata file.
func signedVersion(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var m struct {
		Signed struct {
			Type    string `json:"_type"`
			Version int64  `json:"version"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	if m.Signed.Type == "" || m.Signed.Version < 1 {
		return 0, fmt.Errorf("%s: not TUF metadata (type %q, version %d)", filepath.Base(path), m.Signed.Type, m.Signed.Version)
	}
	return m.Signed.Version, nil
}

// readBase reads what the setup recorded in root (baseFile) into v.
func readBase(root string, v any) error {
	b, err := os.ReadFile(filepath.Join(root, baseFile))
	if err != nil {
		return fmt.Errorf("the setup's record of the versions before the operation: %w", err)
	}
	return json.Unmarshal(b, v)
}

// daemonRun runs the real daemon on root until its poll's trial is
// loaded, then stops it.
func daemonRun(h *host, root string, mark func(string)) error {
	bin, dir, err := daemonEnv()
	if err != nil {
		return err
	}
	var vs daemonVersions
	if err := readBase(root, &vs); err != nil {
		return err
	}
	trusted, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		return err
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "repo"))))
	defer srv.Close()

	cfg := hostconfig.Default()
	cfg.Root, cfg.Repository, cfg.TrustedRoot, cfg.Channel = root, srv.URL, filepath.Join(dir, "root.json"), 291
	cfg.PollInterval = hostconfig.Duration{Duration: 1000 * time.Hour} // Run polls
	cfg.PollJitter = hostconfig.Duration{}
	cfg.Telemetry = hostconfig.Telemetry{Interval: hostconfig.Duration{Duration: 1000 * time.Hour}} // no endpoint: events stay in the outbox
	statuses := make(chan daemon.Status, 1000)
	d, err := daemon.New(daemon.Options{
		Config:           cfg,
		HostID:           "powercut-host",
		Capabilities:     h.caps,
		AgentCommand:     []string{bin, "agent", "--capabilities", capsPath(), "--alive-interval", "1h"},
		PreflightCommand: []string{bin, "sensor", "preflight", "--capabilities", capsPath()},
		TrustedRoot:      trusted,
		Log:              slog.New(slog.NewTextHandler(os.Stderr, nil)), // shown when the child fails
		Observe: func(s daemon.Status) {
			select {
			case statuses <- s:
			default:
			}
		},
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var last daemon.Status
	waitFor := func(what string, ok func(daemon.Status) bool) error {
		deadline := time.After(60 * time.Second)
		for !ok(last) {
			select {
			case last = <-statuses:
			case err := <-done:
				return fmt.Errorf("the daemon stopped (%v) waiting for %s", err, what)
			case <-deadline:
				return fmt.Errorf("no status with %s; last: %+v", what, last)
			}
		}
		return nil
	}
	running := func(v uint32, state string) func(daemon.Status) bool {
		want := fmt.Sprintf("channel 291 version %d (%s)", v, state)
		return func(s daemon.Status) bool { return s.Agent == daemon.AgentRunning && s.Running == want }
	}
	// The loop's first poll comes at once (no jitter), deferred until
	// the agent has loaded v1.
	if err := waitFor("the poll's install of v2", func(s daemon.Status) bool {
		if !s.LastPoll.IsZero() && (s.Poll.Action != daemon.ActionInstalled || s.Poll.Version != v2) {
			return true // reported below
		}
		return s.Poll.Action == daemon.ActionInstalled
	}); err != nil {
		return err
	}
	if last.Poll.Action != daemon.ActionInstalled || last.Poll.Version != v2 {
		return fmt.Errorf("the poll did not install v2: %+v", last.Poll)
	}
	mark("polled")
	if err := waitFor("the trial loaded", running(v2, "TRIAL")); err != nil {
		return err
	}
	mark("trial-loaded")
	cancel()
	if err := <-done; err != nil {
		return fmt.Errorf("the daemon's stop: %w", err)
	}
	// The poll really brought N+1 of every role.
	now, err := trustedVersions(filepath.Join(root, "tuf"))
	if err != nil {
		return err
	}
	for role, v := range vs.Before {
		if now[role] <= v || now[role] != vs.After[role] {
			return fmt.Errorf("the poll left the trusted %s metadata at version %d (before: %d, published: %d): the scenario must publish N+1", role, now[role], v, vs.After[role])
		}
	}
	return nil
}

// daemonCheck: the host boots what it ran or the new trial, from a slot
// that verifies (checkHost); its trusted TUF metadata is never older than
// before the poll, whole, and the host's client refreshes from it; the
// installed event queued once the trial loaded is still queued.
func daemonCheck(h *host, c powercut.Cut) error {
	var errs powercut.Errors
	_, dir, err := daemonEnv()
	if err != nil {
		return err
	}
	var vs daemonVersions
	if err := readBase(c.Root, &vs); err != nil {
		return err
	}
	// Never older than before the poll; and once the poll returned (its
	// refresh persisted every role durably, as tuf.Client promises),
	// never older than what it refreshed to: the host acted on it.
	tufDir := filepath.Join(c.Root, "tuf")
	for _, role := range slices.Sorted(maps.Keys(vs.Before)) {
		v, err := signedVersion(filepath.Join(tufDir, role+".json"))
		switch {
		case errors.Is(err, os.ErrNotExist):
			errs.Add("the trusted %s metadata is gone (it was at version %d): its rollback protection is lost", role, vs.Before[role])
		case err != nil:
			errs.Add("the trusted %s metadata does not read: %v", role, err)
		case v < vs.Before[role]:
			errs.Add("the trusted %s metadata went back from version %d to %d", role, vs.Before[role], v)
		case c.Passed("polled") && v < vs.After[role]:
			errs.Add("the poll refreshed the trusted %s metadata to version %d and installed from it, and it is back at %d", role, vs.After[role], v)
		}
	}
	// Every trusted file that is there reads (a role the poll added too).
	if _, err := trustedVersions(tufDir); err != nil {
		errs.Add("trusted metadata: %v", err)
	}
	// The host's client goes on from what the cut left: the trusted root
	// loads, and a refresh against the repository (at N+1) succeeds.
	trusted, err := os.ReadFile(filepath.Join(dir, "root.json"))
	if err != nil {
		return err
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(dir, "repo"))))
	err = hostRefresh(c.Root, trusted, srv.URL)
	srv.Close()
	if err != nil {
		errs.Add("the host's next TUF refresh from this state: %v", err)
	}
	if c.Passed("trial-loaded") {
		if err := installedQueued(h, c.Root); err != nil {
			errs.Add("%v", err)
		}
	}
	if err := h.checkHost(expect{before: v1, after: v2, loading: "trial-loaded"})(c); err != nil {
		errs.Add("%v", err)
	}
	return errs.Err()
}

// installedQueued: the event that reports v2's install is in state.db's
// outbox (the daemon put it there before it reported the trial running).
func installedQueued(h *host, root string) error {
	in, err := h.open(root)
	if err != nil {
		return fmt.Errorf("installer.Open: %w", err)
	}
	defer in.Close()
	evs, err := in.State().Pending(1000)
	if err != nil {
		return fmt.Errorf("the telemetry outbox: %w", err)
	}
	if !slices.ContainsFunc(evs, func(e wire.Event) bool {
		return e.Kind == wire.EventInstalled && e.Channel == 291 && e.Version == v2
	}) {
		return fmt.Errorf("the trial of version %d was loaded and reported, and its installed event is not in the outbox (%d events)", v2, len(evs))
	}
	return nil
}
