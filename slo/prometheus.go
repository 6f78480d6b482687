package slo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ringfence/ringfence/internal/boundedio"
)

// Limits of a query.
const (
	// MaxResponse bounds an answer read from Prometheus: an instant query
	// that returns one number is a few hundred bytes; one that returns
	// thousands of series is a mistake, and is refused rather than read.
	MaxResponse = 1 << 20
	// DefaultTimeout bounds one query, the answer read included; it is
	// also sent to Prometheus as the query's own evaluation timeout.
	DefaultTimeout = 5 * time.Second
)

// Client runs instant queries against a Prometheus server's HTTP API
// (POST /api/v1/query). It is hand-written rather than
// github.com/prometheus/client_golang/api/prometheus/v1: that package
// brings json-iterator and its unsafe decoders into the build on this Go
// version, and reads answers without a bound; one endpoint, one envelope
// and three result types are all the checks need.
type Client struct {
	base    *url.URL
	http    *http.Client
	timeout time.Duration
}

// NewClient returns a client of the Prometheus server at rawURL
// ("http://prometheus:9090", or with the path prefix of a server run with
// --web.route-prefix). User and password in the URL are sent as basic
// authentication. hc nil is a client of its own with DefaultTimeout.
func NewClient(rawURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("slo: Prometheus URL %q: want the server's base URL, such as http://prometheus:9090", redact(rawURL, u, err))
	}
	if hc == nil {
		hc = &http.Client{Timeout: DefaultTimeout}
	}
	return &Client{base: u, http: hc, timeout: DefaultTimeout}, nil
}

func redact(raw string, u *url.URL, err error) string {
	if err != nil {
		return "(unparsable)" // it may hold a password: not quoted
	}
	if u.User != nil {
		return u.Redacted()
	}
	return raw
}

// String is the server's URL without its password, for logs.
func (c *Client) String() string { return c.base.Redacted() }

// apiResponse is Prometheus's envelope: status "success" with data, or
// "error" with errorType and error.
type apiResponse struct {
	Status    string          `json:"status"`
	Data      json.RawMessage `json:"data"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
}

type queryData struct {
	ResultType string          `json:"resultType"`
	Result     json.RawMessage `json:"result"`
}

// sample is one element of an instant vector; a native histogram has
// Histogram in place of Value.
type sample struct {
	Metric    map[string]string `json:"metric"`
	Value     json.RawMessage   `json:"value"`
	Histogram json.RawMessage   `json:"histogram"`
}

// Query runs query at time at and returns its one number. An empty vector
// or NaN is ErrNoData; more than one series, a range vector, a string or
// a histogram is ErrShape; an answer Prometheus gives as an error is an
// *APIError.
func (c *Client) Query(ctx context.Context, query string, at time.Time) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	form := url.Values{}
	form.Set("query", query)
	form.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1e3, 'f', 3, 64))
	form.Set("timeout", strconv.FormatFloat(c.timeout.Seconds(), 'f', -1, 64))
	u := c.base.JoinPath("api", "v1", "query")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), strings.NewReader(form.Encode()))
	if err != nil {
		return 0, fmt.Errorf("slo: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("slo: query Prometheus at %s: %w", c, err)
	}
	defer resp.Body.Close()
	body, err := boundedio.ReadAll(resp.Body, MaxResponse)
	if errors.Is(err, boundedio.ErrTooLarge) {
		return 0, fmt.Errorf("%w: the answer is %v; an instant query that returns one number is a few hundred bytes: aggregate it (sum, max, avg)", ErrShape, err)
	}
	if err != nil {
		return 0, fmt.Errorf("slo: read Prometheus's answer: %w", err)
	}
	return parse(resp.StatusCode, body)
}

// parse reads an answer of /api/v1/query.
func parse(status int, body []byte) (float64, error) {
	var r apiResponse
	if err := json.Unmarshal(body, &r); err != nil || r.Status == "" {
		return 0, fmt.Errorf("slo: Prometheus answered HTTP %d with %.120q, not an API answer; is the URL that of a Prometheus server?", status, bytes.TrimSpace(body))
	}
	if r.Status != "success" {
		return 0, &APIError{HTTPStatus: status, Type: r.ErrorType, Message: r.Error}
	}
	var d queryData
	if err := json.Unmarshal(r.Data, &d); err != nil {
		return 0, fmt.Errorf("slo: Prometheus's answer: %w", err)
	}
	switch d.ResultType {
	case "scalar":
		return value(d.Result)
	case "vector":
		var v []sample
		if err := json.Unmarshal(d.Result, &v); err != nil {
			return 0, fmt.Errorf("slo: Prometheus's vector: %w", err)
		}
		switch {
		case len(v) == 0:
			return 0, ErrNoData
		case len(v) > 1:
			return 0, fmt.Errorf("%w: it returned %d series (%s, ...); aggregate it to one, e.g. with sum(...) or max(...)", ErrShape, len(v), labels(v[0].Metric))
		case v[0].Value == nil:
			return 0, fmt.Errorf("%w: it returned a histogram; take a number of it, e.g. with histogram_quantile(0.99, ...)", ErrShape)
		}
		return value(v[0].Value)
	case "matrix":
		return 0, fmt.Errorf("%w: it returned a range vector; an instant query gives one value, e.g. avg_over_time(x[5m]) rather than x[5m]", ErrShape)
	default:
		return 0, fmt.Errorf("%w: it returned a %s", ErrShape, d.ResultType)
	}
}

// value reads a [time, "number"] pair; NaN is no data.
func value(raw json.RawMessage) (float64, error) {
	var pair []json.RawMessage
	var s string
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 || json.Unmarshal(pair[1], &s) != nil {
		return 0, fmt.Errorf("slo: Prometheus's value %.60q is not [time, \"number\"]", raw)
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("slo: Prometheus's value %.40q is not a number", s)
	}
	if math.IsNaN(v) {
		return 0, ErrNoData // 0/0: a ratio over no requests is no evidence either way
	}
	return v, nil
}

// labels writes a series' labels as PromQL does, in order, bounded.
func labels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, m[k])
		if b.Len() > 200 {
			b.WriteString(", ...")
			break
		}
	}
	b.WriteByte('}')
	return b.String()
}
