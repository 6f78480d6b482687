package monitoring_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/ringfence/ringfence/internal/clock"
	"github.com/ringfence/ringfence/internal/testfiles"
	"github.com/ringfence/ringfence/internal/testtmp"
	"github.com/ringfence/ringfence/server"
	"github.com/ringfence/ringfence/telemetry"
	"github.com/ringfence/ringfence/tufrepo"
	"github.com/ringfence/ringfence/validator"
	"github.com/ringfence/ringfence/wire"
)

const (
	rulesFile     = "ringfence-alerts.yml"
	rulesTestFile = "ringfence-alerts.test.yml"
	dashboardFile = "grafana-dashboard.json"
)

// prometheusOwn are the series Prometheus writes itself for every target;
// targetLabels the labels a scrape adds to every series.
var (
	prometheusOwn = map[string]map[string]bool{"up": {}}
	targetLabels  = []string{"job", "instance"}
)

// exposition starts a real ringfence-server over a fresh repository, gives
// it a rollout, an admitted host's batch and a refused batch (so that every
// labelled family has a series), scrapes /metrics through its handler and
// returns each family's name with its label names.
func exposition(t *testing.T) map[string]map[string]bool {
	t.Helper()
	repo, keys, state := testtmp.Dir(t), testtmp.Dir(t), testtmp.Dir(t)
	clk := clock.NewFake(time.Now().UTC())
	r, err := tufrepo.Init(repo, keys, tufrepo.InitOptions{Clock: clk})
	require.NoError(t, err)
	for _, name := range []string{"good-ipc-1001", "good-ipc-1002"} {
		data := testfiles.Channel(t, name)
		f, err := validator.Parse(data)
		require.NoError(t, err)
		_, err = r.Publish(291, f.ContentVersion, data)
		require.NoError(t, err)
	}
	srv, err := server.New(server.Options{Repo: repo, Keys: keys, State: state, Clock: clk})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Close() })

	_, k, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	id := telemetry.NewIdentity(k)
	who := server.ActionRequest{Who: "test", Why: "monitoring"}
	_, err = srv.Accept(id.HostID(), server.HostRequest{ActionRequest: who, Tags: []string{"canary"}})
	require.NoError(t, err)
	spec, err := server.StartRequest{ActionRequest: who, Channel: 291, Version: 1002, From: 1001,
		Stages: []server.StageRequest{{Name: "canary", Tags: []string{"canary"}}, {Name: "all", Percent: 100}}}.Spec()
	require.NoError(t, err)
	_, _, err = srv.Start(spec, who.Who, who.Why)
	require.NoError(t, err)

	h := srv.Handler()
	post := func(body []byte, sig string) int {
		req := httptest.NewRequest(http.MethodPost, wire.Path, bytes.NewReader(body))
		req.Header.Set(wire.SignatureHeader, sig)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code
	}
	b := wire.Batch{Format: wire.Format, HostID: id.HostID(), PublicKey: base64.StdEncoding.EncodeToString(id.PublicKey()),
		SentAt: clk.Now(), HostInfo: wire.HostInfo{Versions: map[string]uint32{"291": 1001}},
		Events: []wire.Event{{ID: "e1", Seq: 1, Channel: 291, Kind: wire.EventHeartbeat, Version: 1001}}}
	body, err := json.Marshal(b)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, post(body, wire.SignatureValue(id.Sign(body))))
	require.NotEqual(t, http.StatusOK, post([]byte("{"), ""))

	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusOK, w.Code)
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(w.Body)
	require.NoError(t, err)
	out := map[string]map[string]bool{}
	for name, mf := range mfs {
		out[name] = map[string]bool{}
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				out[name][lp.GetName()] = true
			}
		}
	}
	return out
}

// selector is a metric an expression selects and the label names its
// matchers use.
type selector struct {
	metric string
	labels []string
}

var (
	grouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	keywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true}
)

// scan reads a PromQL expression far enough to find the metrics it
// selects (with their matchers' label names) and the label names of its
// by, without, on, ignoring and group_ clauses. It is a lexer, not a
// parser: promtool checks the syntax.
func scan(expr string) (sels []selector, groups []string) {
	i, n := 0, len(expr)
	isStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isPart := func(c byte) bool { return isStart(c) || c >= '0' && c <= '9' }
	space := func() {
		for i < n && strings.ContainsRune(" \t\r\n", rune(expr[i])) {
			i++
		}
	}
	ident := func() string {
		s := i
		for i < n && isPart(expr[i]) {
			i++
		}
		return expr[s:i]
	}
	str := func() string { // at a quote: the literal's contents
		q := expr[i]
		i++
		var b strings.Builder
		for i < n && expr[i] != q {
			if expr[i] == '\\' && q != '`' && i+1 < n {
				i++
			}
			b.WriteByte(expr[i])
			i++
		}
		i++
		return b.String()
	}
	matchers := func() (labels []string, name string) { // at '{'
		i++
		for {
			space()
			if i >= n || expr[i] == '}' {
				i++
				return labels, name
			}
			if expr[i] == ',' {
				i++
				continue
			}
			l := ident()
			space()
			for i < n && strings.ContainsRune("=!~", rune(expr[i])) {
				i++
			}
			space()
			v := ""
			if i < n && strings.ContainsRune("\"'`", rune(expr[i])) {
				v = str()
			}
			if l == "" {
				i++ // not a matcher; let promtool say so
				continue
			}
			if l == "__name__" {
				name = v
				continue
			}
			labels = append(labels, l)
		}
	}
	for i < n {
		c := expr[i]
		switch {
		case strings.ContainsRune(" \t\r\n", rune(c)):
			i++
		case c == '#':
			for i < n && expr[i] != '\n' {
				i++
			}
		case strings.ContainsRune("\"'`", rune(c)):
			str()
		case c == '[':
			for i < n && expr[i] != ']' {
				i++
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < n && (isPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case c == '{':
			labels, name := matchers()
			sels = append(sels, selector{metric: name, labels: labels})
		case isStart(c):
			id := ident()
			space()
			next := byte(0)
			if i < n {
				next = expr[i]
			}
			if isStart(next) { // sum by (x) (...): an aggregation, not a metric
				at := i
				if w := strings.ToLower(ident()); w == "by" || w == "without" {
					next = '('
				}
				i = at
			}
			switch {
			case grouping[strings.ToLower(id)]:
				if next == '(' {
					i++
					for {
						space()
						if i >= n || expr[i] == ')' {
							i++
							break
						}
						if expr[i] == ',' {
							i++
							continue
						}
						if l := ident(); l != "" {
							groups = append(groups, l)
						} else {
							i++
						}
					}
				}
			case keywords[strings.ToLower(id)] || next == '(':
			default:
				sel := selector{metric: id}
				if next == '{' {
					sel.labels, _ = matchers()
				}
				sels = append(sels, sel)
			}
		default:
			i++
		}
	}
	return sels, groups
}

func TestScan(t *testing.T) {
	sels, groups := scan(`sum by (reason) (rate(ringfence_x_total{reason!~"a|b", instance=~"$i"}[5m])) / ignoring (reason) group_left () (up{job="x"} == 0) and on(job) {__name__="y", kind="z"} > 0.05 # ringfence_comment`)
	require.Equal(t, []selector{{"ringfence_x_total", []string{"reason", "instance"}}, {"up", []string{"job"}}, {"y", []string{"kind"}}}, sels)
	require.Equal(t, []string{"reason", "reason", "job"}, groups)
	sels, groups = scan(`ringfence_hosts > 0 and sum without (reason) (rate(ringfence_batches[15m])) == 0 offset 1h`)
	require.Equal(t, []selector{{metric: "ringfence_hosts"}, {metric: "ringfence_batches"}}, sels)
	require.Equal(t, []string{"reason"}, groups)
}

// checkExpr reports what in expr is not in the exposition: a metric the
// server does not export, a matcher on a label the metric does not have,
// a grouping label no metric has.
func checkExpr(t *testing.T, where, expr string, exp map[string]map[string]bool) []string {
	t.Helper()
	sels, groups := scan(expr)
	require.NotEmpty(t, sels, "%s: %s selects no metric", where, expr)
	all := map[string]bool{}
	for _, ls := range exp {
		maps.Copy(all, ls)
	}
	var refs []string
	for _, s := range sels {
		require.NotEmpty(t, s.metric, "%s: a selector without a metric name in %s", where, expr)
		labels, ok := exp[s.metric]
		if !ok {
			labels, ok = prometheusOwn[s.metric]
		}
		require.True(t, ok, "%s: %s is not a metric ringfence-server exports (%s)", where, s.metric, expr)
		for _, l := range s.labels {
			require.True(t, labels[l] || slices.Contains(targetLabels, l), "%s: %s has no label %q (%s)", where, s.metric, l, expr)
		}
		refs = append(refs, s.metric)
	}
	for _, g := range groups {
		require.True(t, all[g] || slices.Contains(targetLabels, g), "%s: no metric has the label %q it groups by (%s)", where, g, expr)
	}
	return refs
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert         string            `yaml:"alert"`
			Record        string            `yaml:"record"`
			Expr          string            `yaml:"expr"`
			For           string            `yaml:"for"`
			KeepFiringFor string            `yaml:"keep_firing_for"`
			Labels        map[string]string `yaml:"labels"`
			Annotations   map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// TestAlertRulesUseExportedMetrics: the rules parse (no unknown keys);
// every alert has a severity, a summary and a description; every metric
// and label its expression names is one the server exports.
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	exp := exposition(t)
	b, err := os.ReadFile(rulesFile)
	require.NoError(t, err)
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	require.NoError(t, dec.Decode(&rf))
	require.NotEmpty(t, rf.Groups)
	names := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			require.NotEmpty(t, r.Alert, "%s: only alerting rules here", g.Name)
			require.False(t, names[r.Alert], "%s twice", r.Alert)
			names[r.Alert] = true
			require.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"], r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], r.Alert)
			require.NotEmpty(t, r.Annotations["description"], r.Alert)
			checkExpr(t, r.Alert, r.Expr, exp)
		}
	}
	require.GreaterOrEqual(t, len(names), 8)
}

// promtool returns promtool's path, or skips.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("SKIPPED the promtool checks of monitoring/ (no promtool on PATH); 'make deps' installs prometheus, which has it")
	}
	return p
}

func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
	t.Logf("promtool %s: %s", strings.Join(args, " "), strings.TrimSpace(string(out)))
}

// TestAlertRulesPromtool: `promtool check rules` accepts the rules and
// `promtool test rules` passes their unit tests.
func TestAlertRulesPromtool(t *testing.T) {
	runPromtool(t, "check", "rules", rulesFile)
	runPromtool(t, "test", "rules", rulesTestFile)
}

// grafanaVar is a dashboard variable in a query: $name, ${name} or
// ${name:format}.
var grafanaVar = regexp.MustCompile(`\$\{?(\w+)(?::\w+)?\}?`)

// promQL turns a dashboard query into PromQL: intervals become 5m, other
// variables (used only in regex matchers) match anything.
func promQL(q string) string {
	return grafanaVar.ReplaceAllStringFunc(q, func(v string) string {
		if name := grafanaVar.FindStringSubmatch(v)[1]; strings.HasPrefix(name, "__") {
			return "5m"
		}
		return ".*"
	})
}

var labelValues = regexp.MustCompile(`^\s*label_values\((.+),\s*(\w+)\s*\)\s*$`)

// dashboardQueries returns the dashboard's PromQL: panel targets and
// annotations ("expr"), and its variables' queries (label_values(SELECTOR,
// LABEL) as the selector and the label), each with where it is.
func dashboardQueries(t *testing.T, d map[string]any) (exprs map[string]string, varLabels map[string][2]string) {
	t.Helper()
	exprs, varLabels = map[string]string{}, map[string][2]string{}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			if e, ok := v["expr"].(string); ok {
				exprs[path] = promQL(e)
			}
			for k, x := range v {
				walk(path+"."+k, x)
			}
		case []any:
			for i, x := range v {
				title := ""
				if m, ok := x.(map[string]any); ok {
					title, _ = m["title"].(string)
					if title == "" {
						title, _ = m["name"].(string)
					}
				}
				walk(fmt.Sprintf("%s[%d %s]", path, i, title), x)
			}
		}
	}
	walk("dashboard", d)
	tpl, _ := d["templating"].(map[string]any)
	list, _ := tpl["list"].([]any)
	for _, x := range list {
		v := x.(map[string]any)
		if v["type"] != "query" {
			continue
		}
		q, ok := v["query"].(string)
		if m, isMap := v["query"].(map[string]any); isMap {
			q, ok = m["query"].(string)
		}
		require.True(t, ok, "variable %v has no query", v["name"])
		m := labelValues.FindStringSubmatch(q)
		require.NotNil(t, m, "variable %v: %q is not label_values(SELECTOR, LABEL)", v["name"], q)
		varLabels[fmt.Sprint("variable ", v["name"])] = [2]string{promQL(m[1]), m[2]}
	}
	return exprs, varLabels
}

// TestDashboardUsesExportedMetrics: the dashboard is JSON Grafana can
// import (a title, a uid, panels with unique ids, each a Prometheus query
// at least); every metric and label its queries name is one the server
// exports, and it shows every ringfence_ metric. With promtool, every
// query is also checked as PromQL (as recording rules).
func TestDashboardUsesExportedMetrics(t *testing.T) {
	exp := exposition(t)
	b, err := os.ReadFile(dashboardFile)
	require.NoError(t, err)
	var d map[string]any
	require.NoError(t, json.Unmarshal(b, &d))
	require.NotEmpty(t, d["title"])
	require.NotEmpty(t, d["uid"])
	panels, _ := d["panels"].([]any)
	require.NotEmpty(t, panels)
	ids := map[float64]bool{}
	for _, p := range panels {
		p := p.(map[string]any)
		id, _ := p["id"].(float64)
		require.False(t, ids[id], "panel id %v twice", id)
		ids[id] = true
		if p["type"] == "row" {
			continue
		}
		targets, _ := p["targets"].([]any)
		require.NotEmpty(t, targets, "panel %q has no query", p["title"])
		require.NotNil(t, p["gridPos"], "panel %q has no place", p["title"])
	}

	exprs, vars := dashboardQueries(t, d)
	require.GreaterOrEqual(t, len(exprs), len(panels)-5)
	shown := map[string]bool{}
	for where, e := range exprs {
		for _, m := range checkExpr(t, where, e, exp) {
			shown[m] = true
		}
	}
	for where, v := range vars {
		refs := checkExpr(t, where, v[0], exp)
		require.Len(t, refs, 1, where)
		require.True(t, exp[refs[0]][v[1]] || slices.Contains(targetLabels, v[1]), "%s: %s has no label %q", where, refs[0], v[1])
	}
	for name := range exp {
		if strings.HasPrefix(name, "ringfence_") {
			require.True(t, shown[name], "the dashboard shows no panel of %s", name)
		}
	}

	if _, err := exec.LookPath("promtool"); err != nil {
		t.Log("SKIPPED the dashboard's queries through promtool (no promtool on PATH); 'make deps' installs prometheus, which has it")
		return
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for _, where := range slices.Sorted(maps.Keys(exprs)) {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d", len(rules)), Expr: exprs[where]})
	}
	for _, where := range slices.Sorted(maps.Keys(vars)) {
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:variable_%d", len(rules)), Expr: vars[where][0]})
	}
	out, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	require.NoError(t, err)
	f := filepath.Join(testtmp.Dir(t), "dashboard-queries.yml")
	require.NoError(t, os.WriteFile(f, out, 0o600))
	runPromtool(t, "check", "rules", f)
}
