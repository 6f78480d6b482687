package slo_test

import (
	"context"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ringfence/ringfence/slo"
)

// TestQueryAnswers: answers Prometheus 2.42 gave to real queries
// (testdata/, one file each, with the HTTP status it answered with) are
// read as a value, no data, a shape error or Prometheus's own error.
func TestQueryAnswers(t *testing.T) {
	for _, tc := range []struct {
		file   string
		status int
		value  float64
		err    error  // nil: a value
		says   string // in the error
	}{
		{"vector-one-sample", 200, 1, nil, ""},                                       // sum(up)
		{"vector-one-labelled", 200, 1, nil, ""},                                     // up, one target
		{"scalar", 200, 42, nil, ""},                                                 // 42
		{"scalar-inf", 200, math.Inf(1), nil, ""},                                    // 1/0
		{"vector-empty", 200, 0, slo.ErrNoData, ""},                                  // a series that does not exist
		{"vector-nan", 200, 0, slo.ErrNoData, ""},                                    // vector(0)/0: a ratio over nothing
		{"scalar-nan", 200, 0, slo.ErrNoData, ""},                                    // scalar() of an empty vector
		{"vector-many", 200, 0, slo.ErrShape, "returned 4 series"},                   // one series per handler
		{"matrix", 200, 0, slo.ErrShape, "range vector"},                             // up[3s]
		{"string", 200, 0, slo.ErrShape, "returned a string"},                        // "x"
		{"bad-data", 400, 0, &slo.APIError{}, "bad_data): invalid parameter"},        // sum(up
		{"execution", 422, 0, &slo.APIError{}, "same labelset"},                      // count_over_time({__name__=~".+"}[1h])
		{"timeout", 503, 0, &slo.APIError{}, "(HTTP 503, timeout): query timed out"}, // timeout=0.000001
	} {
		t.Run(tc.file, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("testdata", tc.file+".json"))
			require.NoError(t, err)
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				_, _ = w.Write(body)
			}))
			defer srv.Close()
			c, err := slo.NewClient(srv.URL, nil)
			require.NoError(t, err)
			v, err := c.Query(context.Background(), "q", time.Now())
			switch want := tc.err.(type) {
			case nil:
				require.NoError(t, err)
				require.Equal(t, tc.value, v)
			case *slo.APIError:
				var ae *slo.APIError
				require.ErrorAs(t, err, &ae)
				require.Equal(t, tc.status, ae.HTTPStatus)
				require.Equal(t, tc.file == "bad-data", ae.BadQuery())
				_ = want
			default:
				require.ErrorIs(t, err, tc.err)
			}
			if tc.says != "" {
				require.ErrorContains(t, err, tc.says)
			}
		})
	}
}

// TestQueryRequest: the client POSTs query, time and timeout as a form to
// /api/v1/query under the URL's path (a server run with a route prefix),
// with the URL's user as basic authentication.
func TestQueryRequest(t *testing.T) {
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.NoError(t, r.ParseForm())
		got = r
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"scalar","result":[1,"0.25"]}}`))
	}))
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://ops:s3cret@", 1) + "/prom"
	c, err := slo.NewClient(u, nil)
	require.NoError(t, err)
	require.NotContains(t, c.String(), "s3cret", "logs never show the password")
	at := time.Unix(1796208881, 500e6)
	v, err := c.Query(context.Background(), `sum(rate(x{a="b"}[5m]))`, at)
	require.NoError(t, err)
	require.Equal(t, 0.25, v)
	require.Equal(t, http.MethodPost, got.Method)
	require.Equal(t, "/prom/api/v1/query", got.URL.Path)
	require.Equal(t, `sum(rate(x{a="b"}[5m]))`, got.PostForm.Get("query"))
	require.Equal(t, "1796208881.500", got.PostForm.Get("time"))
	require.Equal(t, "5", got.PostForm.Get("timeout"), "seconds: a form Prometheus's duration parser takes")
	user, pass, ok := got.BasicAuth()
	require.True(t, ok)
	require.Equal(t, "ops", user)
	require.Equal(t, "s3cret", pass)
}

// TestQueryBounded: an answer over MaxResponse is refused, not read whole;
// an answer that is not Prometheus's says so; a query cut off by its
// context returns.
func TestQueryBounded(t *testing.T) {
	arrived := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.FormValue("query") {
		case "big":
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"vector","result":[`))
			_, _ = w.Write([]byte(strings.Repeat(" ", slo.MaxResponse)))
		case "html":
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte("<html>404 page not found</html>"))
		case "hang":
			close(arrived)
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	c, err := slo.NewClient(srv.URL, nil)
	require.NoError(t, err)
	_, err = c.Query(context.Background(), "big", time.Now())
	require.ErrorIs(t, err, slo.ErrShape)
	require.ErrorContains(t, err, "aggregate it")
	_, err = c.Query(context.Background(), "html", time.Now())
	require.ErrorContains(t, err, "HTTP 404")
	require.ErrorContains(t, err, "is the URL that of a Prometheus server?")

	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	_, err = c.Query(ctx, "hang", time.Now())
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, errors.Is(err, slo.ErrNoData))
}

func TestNewClientURL(t *testing.T) {
	for _, u := range []string{"http://prometheus:9090", "https://prom.example.com/prefix/"} {
		_, err := slo.NewClient(u, nil)
		require.NoError(t, err, u)
	}
	for _, u := range []string{"", "prometheus:9090", "ftp://x", "http://", "http://x/?a=b", "http://u:hunter2@x/#f"} {
		_, err := slo.NewClient(u, nil)
		require.ErrorContains(t, err, "want the server's base URL", u)
		require.NotContains(t, err.Error(), "hunter2")
	}
}
