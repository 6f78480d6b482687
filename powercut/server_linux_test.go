package powercut_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/ringfence/ringfence/compat"
	"github.com/ringfence/ringfence/controller"
	"github.com/ringfence/ringfence/fleetdb"
	"github.com/ringfence/ringfence/internal/atomicfile"
	"github.com/ringfence/ringfence/powercut"
	"github.com/ringfence/ringfence/rollout"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/telemetry"
	"github.com/ringfence/ringfence/tuf"
	"github.com/ringfence/ringfence/tufrepo"
	"github.com/ringfence/ringfence/wire"
)

func init() { scenarioSets = append(scenarioSets, serverScenarios) }

func TestPowerCutServer(t *testing.T) {
	runAll(t, serverScenarios())
}

// The server's directories in a scenario's root (the mount): the
// repository, its keys, and the state directory (server.db, the operator
// token). hostDir is a host's trusted TUF metadata at the repository's
// state before the operation (the setup refreshed it), for the checks.
const (
	srvRepo  = "repo"
	srvKeys  = "keys"
	srvState = "state"
	hostDir  = "host"
)

// serverBase is what a server scenario's setup records (baseFile): the
// repository's chain of versions before the operation, and the plan of
// channel 291 hosts read then.
type serverBase struct {
	Chain map[string]int64 `json:"chain"`
	Plan  []byte           `json:"plan"`
}

func serverScenarios() []powercut.Scenario {
	h := newHost()
	return []powercut.Scenario{
		{
			// ringfence-server publish: v2 added as a content target under
			// the repository's lock (what the command does once the file
			// passed its checks), content, snapshot and timestamp re-signed.
			Name:  "publish",
			Setup: func(root string) error { return serverSetup(h, root, false) },
			Run: func(root string, mark func(string)) error {
				var err error
				uerr := tufrepo.Update(filepath.Join(root, srvRepo), filepath.Join(root, srvKeys), nil, func(r *tufrepo.Repo) error {
					_, err = r.PublishFor(291, v2, h.data[v2], compat.Constraint{})
					return nil
				})
				if err := errors.Join(uerr, err); err != nil {
					return err
				}
				mark("published")
				return nil
			},
			Check: func(c powercut.Cut) error {
				return checkServer(c, serverExpect{signs: []string{tufrepo.RoleContent}, done: "published", plan: func(before []byte, p []byte, done bool) error {
					if !bytes.Equal(p, before) {
						return errors.New("a publish changed the plan")
					}
					return nil
				}, target: rollout.ContentTarget(291, v2), data: h.data[v2]})
			},
		},
		{
			// The rollout server halts a rollout and rolls it back: the
			// canary reports that v2 crashed it on load and its guard
			// reverted; the gate halts, rolls back, commits the decisions
			// to server.db, signs the plan (every host back to v1, v2
			// denied) into the repository, and only then acknowledges the
			// batch.
			Name:  "signed-rollback",
			Setup: func(root string) error { return serverSetup(h, root, true) },
			Run: func(root string, mark func(string)) error {
				srv, err := server.New(serverOptions(root))
				if err != nil {
					return err
				}
				canary := fleetHost("canary")
				code, ans := postBatch(srv, canary.batch(2, v1,
					wire.Event{Kind: wire.EventInstalled, Version: v2},
					wire.Event{ID: "reverted-291-1002-load-crash", Kind: wire.EventReverted, Version: v2, Reason: "load-crash", Critical: true}))
				if code != http.StatusOK {
					return errors.Join(fmt.Errorf("the canary's batch: %d %s", code, ans), srv.Close())
				}
				mark("acknowledged")
				vs := srv.Status()
				if len(vs) != 1 || vs[0].State != controller.StateRolledBack {
					return errors.Join(fmt.Errorf("the server did not roll back: %+v", vs), srv.Close())
				}
				return srv.Close()
			},
			Check: func(c powercut.Cut) error {
				return checkServer(c, serverExpect{signs: []string{tufrepo.RoleRollout}, done: "acknowledged", plan: checkRollbackPlan, rollback: true})
			},
		},
	}
}

func serverOptions(root string) server.Options {
	return server.Options{Repo: filepath.Join(root, srvRepo), Keys: filepath.Join(root, srvKeys), State: filepath.Join(root, srvState),
		CanaryTags: []string{"canary"}}
}

// serverSetup makes the repository (v1 published and planned for the
// fleet; with rolling, v2 published too and a rollout of it started on a
// server with two admitted hosts, the canary and another, both on v1), the
// server's state, a host's trusted metadata at that point, and the record
// of what the repository says.
func serverSetup(h *host, root string, rolling bool) error {
	repoDir, keys, state := filepath.Join(root, srvRepo), filepath.Join(root, srvKeys), filepath.Join(root, srvState)
	repo, err := tufrepo.Init(repoDir, keys, tufrepo.InitOptions{})
	if err != nil {
		return err
	}
	err = tufrepo.Update(repoDir, keys, nil, func(r *tufrepo.Repo) error {
		if _, err := r.Publish(291, v1, h.data[v1]); err != nil {
			return err
		}
		if rolling {
			if _, err := r.Publish(291, v2, h.data[v2]); err != nil {
				return err
			}
		}
		return r.SetRollout(291, planFor(v1))
	})
	if err != nil {
		return err
	}
	if err := os.Mkdir(state, 0o700); err != nil {
		return err
	}
	srv, err := server.New(serverOptions(root))
	if err != nil {
		return err
	}
	if rolling {
		err = startRollout(srv)
	}
	if err := errors.Join(err, srv.Close()); err != nil {
		return err
	}
	trusted, err := repo.RootJSON()
	if err != nil {
		return err
	}
	hs := httptest.NewServer(http.FileServer(http.Dir(repoDir)))
	defer hs.Close()
	if err := hostRefresh(filepath.Join(root, hostDir), trusted, hs.URL); err != nil {
		return err
	}
	var base serverBase
	if base.Chain, err = repoChain(repoDir); err != nil {
		return err
	}
	if base.Plan, err = hostPlan(filepath.Join(root, hostDir), trusted, hs.URL); err != nil {
		return err
	}
	b, err := json.Marshal(base)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(root, baseFile), b, 0o600)
}

// startRollout admits the two hosts, has them report v1, and starts the
// rollout of v2 with the server's canary group first.
func startRollout(srv *server.Server) error {
	for _, name := range []string{"canary", "other"} {
		fh := fleetHost(name)
		var tags []string
		if name == "canary" {
			tags = []string{"canary"}
		}
		if _, err := srv.Accept(fh.id.HostID(), server.HostRequest{ActionRequest: server.ActionRequest{Who: "powercut", Why: "the test fleet"}, Tags: tags}); err != nil {
			return err
		}
		if code, ans := postBatch(srv, fh.batch(1, v1)); code != http.StatusOK {
			return fmt.Errorf("%s's first batch: %d %s", name, code, ans)
		}
	}
	_, v, err := srv.Start(controller.Spec{Channel: 291, To: v2}, "alice", "the weekly content")
	if err != nil {
		return err
	}
	if v.From != v1 {
		return fmt.Errorf("the rollout starts from %d, not from what the hosts run (%d)", v.From, v1)
	}
	return nil
}

// fleetHostKey is a host of the server scenarios: the same key in the
// setup and the operation (processes of their own).
type fleetHostKey struct {
	id   *telemetry.Identity
	name string
}

func fleetHost(name string) fleetHostKey {
	seed := sha256.Sum256([]byte("powercut host " + name))
	return fleetHostKey{id: telemetry.NewIdentity(ed25519.NewKeyFromSeed(seed[:])), name: name}
}

// batch is a batch from the host running version running: a heartbeat,
// then evs, with seqs from seq on.
func (f fleetHostKey) batch(seq uint64, running uint32, evs ...wire.Event) wire.Batch {
	evs = append([]wire.Event{{Kind: wire.EventHeartbeat, Version: running}}, evs...)
	for i := range evs {
		evs[i].Seq = seq + uint64(i)
		evs[i].Channel = 291
		if evs[i].ID == "" {
			evs[i].ID = fmt.Sprintf("%s-%d", f.name, evs[i].Seq)
		}
	}
	return wire.Batch{Format: wire.Format, HostID: f.id.HostID(), PublicKey: base64.StdEncoding.EncodeToString(f.id.PublicKey()),
		SentAt: time.Now().UTC(), HostInfo: wire.HostInfo{Versions: map[string]uint32{"291": running}}, Events: evs}
}

// postBatch signs b with its host's key and posts it to the server's
// telemetry endpoint; it returns the answer's status and body.
func postBatch(srv *server.Server, b wire.Batch) (int, string) {
	body, err := json.Marshal(b)
	if err != nil {
		return 0, err.Error()
	}
	var id *telemetry.Identity
	for _, name := range []string{"canary", "other"} {
		if f := fleetHost(name); f.id.HostID() == b.HostID {
			id = f.id
		}
	}
	req := httptest.NewRequest(http.MethodPost, wire.Path, bytes.NewReader(body))
	req.Header.Set(wire.SignatureHeader, wire.SignatureValue(id.Sign(body)))
	w := httptest.NewRecorder()
	srv.Handler().ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

// hostPlan refreshes the host's TUF client in dir against url and returns
// the signed plan of channel 291, as the daemon downloads it.
func hostPlan(dir string, trusted []byte, url string) ([]byte, error) {
	c, err := tuf.New(tuf.Options{Dir: filepath.Join(dir, "tuf"), DownloadDir: filepath.Join(dir, "downloads"), TrustedRoot: trusted,
		MetadataURL: url + "/metadata/", TargetsURL: url + "/targets/", Retries: -1})
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		return nil, err
	}
	return hostDownload(ctx, c, rollout.RolloutTarget(291))
}

func hostDownload(ctx context.Context, c *tuf.Client, name string) ([]byte, error) {
	path, err := c.Download(ctx, name)
	if err != nil {
		return nil, err
	}
	defer os.Remove(path)
	return os.ReadFile(path)
}

// repoChain follows the repository's metadata as a client does, from the
// timestamp: the version of each top-level and delegated role it names.
func repoChain(repoDir string) (map[string]int64, error) {
	meta := filepath.Join(repoDir, "metadata")
	root, err := readMeta[metadata.RootType](filepath.Join(meta, "root.json"))
	if err != nil {
		return nil, err
	}
	ts, err := readMeta[metadata.TimestampType](filepath.Join(meta, "timestamp.json"))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{tufrepo.RoleRoot: root.Signed.Version, tufrepo.RoleTimestamp: ts.Signed.Version}
	sm := ts.Signed.Meta["snapshot.json"]
	if sm == nil {
		return nil, errors.New("the timestamp names no snapshot")
	}
	snap, err := readMeta[metadata.SnapshotType](filepath.Join(meta, fmt.Sprintf("%d.snapshot.json", sm.Version)))
	if err != nil {
		return nil, err
	}
	out[tufrepo.RoleSnapshot] = snap.Signed.Version
	for _, role := range []string{tufrepo.RoleTargets, tufrepo.RoleContent, tufrepo.RoleRollout} {
		m := snap.Signed.Meta[role+".json"]
		if m == nil {
			return nil, fmt.Errorf("snapshot %d names no %s metadata", snap.Signed.Version, role)
		}
		if _, err := readMeta[metadata.TargetsType](filepath.Join(meta, fmt.Sprintf("%d.%s.json", m.Version, role))); err != nil {
			return nil, err
		}
		out[role] = m.Version
	}
	return out, nil
}

func readMeta[T metadata.Roles](path string) (*metadata.Metadata[T], error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	m, err := (&metadata.Metadata[T]{}).FromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return m, nil
}

// metaName is the name of a metadata file of the repository: N.role.json
// (consistent snapshots) or role.json.
var metaName = regexp.MustCompile(`^(?:([1-9][0-9]*)\.)?([a-z]+)\.json$`)

// checkMetadataFiles parses every metadata file of the repository (what
// any client may fetch by name) as its role's, and checks that a file
// named for a version holds that version.
func checkMetadataFiles(repoDir string, errs *powercut.Errors) {
	dir := filepath.Join(repoDir, "metadata")
	ents, err := os.ReadDir(dir)
	if err != nil {
		errs.Add("the repository's metadata: %v", err)
		return
	}
	for _, e := range ents {
		name := e.Name()
		if atomicfile.IsTemp(name) {
			continue // an interrupted write's leftover: no client asks for it
		}
		m := metaName.FindStringSubmatch(name)
		if m == nil {
			errs.Add("metadata/%s: not a metadata file name", name)
			continue
		}
		path := filepath.Join(dir, name)
		var v int64
		var err error
		switch m[2] {
		case tufrepo.RoleRoot:
			var md *metadata.Metadata[metadata.RootType]
			if md, err = readMeta[metadata.RootType](path); err == nil {
				v = md.Signed.Version
			}
		case tufrepo.RoleTimestamp:
			var md *metadata.Metadata[metadata.TimestampType]
			if md, err = readMeta[metadata.TimestampType](path); err == nil {
				v = md.Signed.Version
			}
		case tufrepo.RoleSnapshot:
			var md *metadata.Metadata[metadata.SnapshotType]
			if md, err = readMeta[metadata.SnapshotType](path); err == nil {
				v = md.Signed.Version
			}
		default:
			var md *metadata.Metadata[metadata.TargetsType]
			if md, err = readMeta[metadata.TargetsType](path); err == nil {
				v = md.Signed.Version
			}
		}
		if err != nil {
			errs.Add("metadata/%s does not parse: %v", name, err)
			continue
		}
		if m[1] != "" {
			if n, _ := strconv.ParseInt(m[1], 10, 64); n != v {
				errs.Add("metadata/%s holds version %d", name, v)
			}
		}
	}
}

// serverExpect is what must hold after a cut in a server scenario.
type serverExpect struct {
	// signs are the targets roles the operation re-signs (with snapshot
	// and timestamp): the chain after it is the one before with each of
	// them one version up.
	signs []string
	// done is the mark after which the operation had returned: from there
	// on the new chain must be the repository's.
	done string
	// plan checks the plan a host reads (before is the plan before the
	// operation; done: the operation had returned).
	plan func(before, p []byte, done bool) error
	// target, when set, is a target the new chain names, with its bytes.
	target string
	data   []byte
	// rollback: the operation rolls channel 291's rollout back (state and
	// plan go together).
	rollback bool
}

// checkServer checks the state a cut left of a server's directories.
func checkServer(c powercut.Cut, want serverExpect) error {
	var errs powercut.Errors
	var base serverBase
	if err := readBase(c.Root, &base); err != nil {
		return err
	}
	repoDir, keys, state := filepath.Join(c.Root, srvRepo), filepath.Join(c.Root, srvKeys), filepath.Join(c.Root, srvState)
	done := c.Passed(want.done)

	// The fleet database opens, and says where the rollout is.
	rolledBack := false
	db, err := fleetdb.Open(state, fleetdb.Options{Timeout: time.Second})
	if err != nil {
		errs.Add("server.db: %v", err)
	} else {
		st, err := db.Load()
		if err != nil {
			errs.Add("server.db: load: %v", err)
		}
		for _, r := range st.Rollouts {
			rolledBack = rolledBack || r.Channel == 291 && r.State == controller.StateRolledBack
		}
		if err := db.Close(); err != nil {
			errs.Add("server.db: close: %v", err)
		}
		if want.rollback && done && !rolledBack {
			errs.Add("the rollback was acknowledged, and server.db does not have it")
		}
	}

	// The repository opens, every metadata file parses, and go-tuf's own
	// updater, from the first root, refreshes it and downloads every
	// target it names with the right length and hashes.
	if _, err := tufrepo.Open(repoDir, keys, nil); err != nil {
		errs.Add("the repository does not open: %v", err)
	}
	checkMetadataFiles(repoDir, &errs)
	if _, err := tufrepo.Verify(context.Background(), repoDir, nil, time.Now()); err != nil {
		errs.Add("go-tuf's client on this repository: %v", err)
	}

	// What a host sees is the chain before the operation or the one after,
	// whole; never older than before; the new one once the operation
	// returned.
	after := map[string]int64{}
	for role, v := range base.Chain {
		after[role] = v
	}
	for _, role := range append([]string{tufrepo.RoleSnapshot, tufrepo.RoleTimestamp}, want.signs...) {
		after[role]++
	}
	chain, err := repoChain(repoDir)
	isNew := false
	switch {
	case err != nil:
		errs.Add("the repository's chain from its timestamp: %v", err)
	default:
		for role, v := range base.Chain {
			if chain[role] < v {
				errs.Add("the repository's %s metadata went back from version %d to %d", role, v, chain[role])
			}
		}
		isNew = eqVersions(chain, after)
		switch {
		case done && !isNew:
			errs.Add("the operation had returned, and the repository's chain is %v, not the new one %v", chain, after)
		case !isNew && !eqVersions(chain, base.Chain):
			errs.Add("the repository's chain is %v: neither the one before (%v) nor the one after (%v)", chain, base.Chain, after)
		}
	}

	// A host that trusted the repository before the operation refreshes
	// from this state with its real client and reads the plan, and the new
	// target once the new chain is there.
	trusted, err := os.ReadFile(filepath.Join(repoDir, "metadata", "1.root.json"))
	if err != nil {
		return err
	}
	hs := httptest.NewServer(http.FileServer(http.Dir(repoDir)))
	p, err := hostPlan(filepath.Join(c.Root, hostDir), trusted, hs.URL)
	hs.Close()
	switch {
	case err != nil:
		errs.Add("a host's refresh from this repository: %v", err)
	default:
		if err := want.plan(base.Plan, p, done); err != nil {
			errs.Add("the plan a host reads: %v", err)
		}
		if want.rollback && isRollback(p) && !rolledBack {
			errs.Add("the rollback plan is signed, and server.db does not record the rollback: a restart would sign the rollout again")
		}
	}
	if want.target != "" && isNew {
		if err := checkTarget(c.Root, trusted, want.target, want.data); err != nil {
			errs.Add("%v", err)
		}
	}

	// And the server starts on this state (re-signing a plan that lags
	// the state), and then the plan hosts read is the state's.
	if err := checkRestart(c.Root, trusted, rolledBack, want.rollback); err != nil {
		errs.Add("%v", err)
	}
	return errs.Err()
}

func eqVersions(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// checkTarget downloads the target through a host's client (from the
// state before the operation) and compares its bytes.
func checkTarget(root string, trusted []byte, name string, data []byte) error {
	hs := httptest.NewServer(http.FileServer(http.Dir(filepath.Join(root, srvRepo))))
	defer hs.Close()
	dir := filepath.Join(root, hostDir)
	c, err := tuf.New(tuf.Options{Dir: filepath.Join(dir, "tuf"), DownloadDir: filepath.Join(dir, "downloads"), TrustedRoot: trusted,
		MetadataURL: hs.URL + "/metadata/", TargetsURL: hs.URL + "/targets/", Retries: -1})
	if err != nil {
		return err
	}
	ctx := context.Background()
	if err := c.Refresh(ctx); err != nil {
		return fmt.Errorf("a host's refresh: %w", err)
	}
	got, err := hostDownload(ctx, c, name)
	if err != nil {
		return fmt.Errorf("the published %s: %w", name, err)
	}
	if !bytes.Equal(got, data) {
		return fmt.Errorf("the published %s is not the file published", name)
	}
	return nil
}

// checkRestart starts the server on the state, as after the power cut,
// and reads the plan a host then reads, through the server's own static
// repository.
func checkRestart(root string, trusted []byte, rolledBack, rollback bool) error {
	srv, err := server.New(serverOptions(root))
	if err != nil {
		return fmt.Errorf("the server does not start on this state: %w", err)
	}
	defer srv.Close()
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	p, err := hostPlan(filepath.Join(root, hostDir), trusted, hs.URL)
	if err != nil {
		return fmt.Errorf("after the server's restart, a host's refresh: %w", err)
	}
	if rollback && rolledBack != isRollback(p) {
		return fmt.Errorf("after the server's restart the signed plan (%s) is not the rollout's state (rolled back: %v)", p, rolledBack)
	}
	return nil
}

// isRollback reports whether the plan sends every host back to v1 and
// denies v2.
func isRollback(p []byte) bool {
	plan, err := rollout.Parse(p)
	if err != nil || !slices.Equal(plan.Deny, []uint32{v2}) || len(plan.Stages) != 1 {
		return false
	}
	s := plan.Stages[0]
	return s.Percent == 100 && s.Version == v1 && len(s.Hosts)+len(s.Tags)+len(s.Sensors) == 0
}

// checkRollbackPlan: the plan is the rollout's before the rollback (v2 to
// the canary, v1 to the rest) or the rollback; the rollback once it was
// acknowledged.
func checkRollbackPlan(before, p []byte, done bool) error {
	switch {
	case isRollback(p):
		return nil
	case done:
		return fmt.Errorf("the rollback was acknowledged, and hosts read %s", p)
	case !bytes.Equal(p, before):
		return fmt.Errorf("neither the plan before the rollback (%s) nor the rollback: %s", before, p)
	}
	return nil
}
