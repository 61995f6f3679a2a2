package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/transition-matrix/transition-matrix/metrics"
	"github.com/transition-matrix/transition-matrix/signing"

	"github.com/transition-matrix/transition-matrix/matrixspec"
)

// observed is one ObserveRequest call.
type observed struct {
	endpoint string
	status   int
	took     time.Duration
}

// fakeObserver records ObserveRequest calls.
type fakeObserver struct {
	mu    sync.Mutex
	calls []observed
}

func (f *fakeObserver) ObserveRequest(endpoint string, status int, took time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, observed{endpoint, status, took})
}

// ticking is a clock that advances by step at every reading.
func ticking(step time.Duration) func() time.Time {
	var mu sync.Mutex
	t := time.UnixMilli(1700000000000)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		t = t.Add(step)
		return t
	}
}

func TestEveryRequestIsObserved(t *testing.T) {
	obs := &fakeObserver{}
	s := newTestShim(t, serving(), func(c *Config) { c.Metrics = obs; c.Now = ticking(time.Millisecond) })
	get := func(uri string) {
		rec := httptest.NewRecorder()
		s.srv.ServeHTTP(rec, httptest.NewRequest("GET", uri, nil))
	}
	s.do("GET", "/_matrix/federation/v1/event/%24a", nil)
	s.do("GET", "/_matrix/federation/v1/backfill/%21r%3Ahs.example?v=%24a&limit=10", nil)
	s.do("GET", "/_matrix/federation/v1/event/%24a", nil, func(r *http.Request) { r.Header.Del("Authorization") })
	s.do("GET", "/_matrix/federation/v1/event/%24a", nil, func(r *http.Request) { r.Header.Set("Authorization", "Bearer syt_x") })
	s.do("GET", "/_matrix/federation/v1/backfill/%21r%3Ahs.example?v=%24a&limit=1000000", nil)
	s.do("POST", "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example", []byte(`{"latest_events":["$a"],"pad":"`+strings.Repeat("a", 2<<20)+`"}`))
	s.do("GET", "/_matrix/federation/v1/publicRooms", nil)
	s.do("DELETE", "/_matrix/federation/v1/event/%24a", nil)
	get("/_matrix/key/v2/server")
	get("/_matrix/federation/v1/version")

	want := []observed{
		{"event", 200, 0}, {"backfill", 200, 0}, {"event", 401, 0}, {"event", 401, 0},
		{"backfill", 400, 0}, {"get_missing_events", 413, 0}, {"unknown", 404, 0}, {"unknown", 405, 0},
		{"key", 200, 0}, {"version", 200, 0},
	}
	if len(obs.calls) != len(want) {
		t.Fatalf("observed %d requests, want %d: %v", len(obs.calls), len(want), obs.calls)
	}
	for i, c := range obs.calls {
		// the clock ticks 1 ms per reading, and the handler may read it too
		if c.endpoint != want[i].endpoint || c.status != want[i].status || c.took < time.Millisecond {
			t.Errorf("call %d: %v, want %s %d and a duration of at least 1ms", i, c, want[i].endpoint, want[i].status)
		}
	}

	// A client outside the allow-list is refused before anything else, and still counted.
	obs2 := &fakeObserver{}
	s2 := newTestShim(t, serving(), func(c *Config) {
		c.Metrics = obs2
		c.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	s2.do("GET", "/_matrix/federation/v1/event/%24a", nil)
	if len(obs2.calls) != 1 || obs2.calls[0].endpoint != "event" || obs2.calls[0].status != 403 {
		t.Fatalf("refused by the allow-list: %v", obs2.calls)
	}
}

func TestRequestsReachPrometheusMetrics(t *testing.T) {
	m := metrics.New()
	s := newTestShim(t, serving(), func(c *Config) { c.Metrics = m })
	s.do("GET", "/_matrix/federation/v1/event/%24a", nil)
	s.do("GET", "/_matrix/federation/v1/event/%24b", nil)
	s.do("GET", "/_matrix/federation/v1/event/%24a", nil, func(r *http.Request) { r.Header.Del("Authorization") })
	s.do("GET", "/_matrix/federation/v1/state_ids/%21r%3Ahs.example", nil)
	const want = `
# HELP transition_matrix_federation_requests_total Federation requests answered, by endpoint (route name) and HTTP status.
# TYPE transition_matrix_federation_requests_total counter
transition_matrix_federation_requests_total{endpoint="event",status="200"} 2
transition_matrix_federation_requests_total{endpoint="event",status="401"} 1
transition_matrix_federation_requests_total{endpoint="state_ids",status="400"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "transition_matrix_federation_requests_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(m.Registry(), "transition_matrix_federation_request_duration_seconds"); n != 2 {
		t.Fatalf("%d duration series, want 2 (event, state_ids)", n)
	}
}

// TestAccessLogKeepsSecretsOut sends signed and hostile requests carrying secrets in the
// Authorization header, the query and the body, and checks that no logged field at any level
// holds them while every request gets one access line with what an operator needs.
func TestAccessLogKeepsSecretsOut(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	src := serving()
	src.event = func(context.Context, string) (PDU, error) {
		return nil, fmt.Errorf("synapse said no: %w", matrixspec.ErrUpstreamUnavailable) // logged as "request failed"
	}
	s := newTestShim(t, src, func(c *Config) { c.Logger = zap.New(core); c.Now = ticking(2 * time.Millisecond) })

	var headers []string
	capture := func(r *http.Request) { headers = append(headers, r.Header.Get("Authorization")) }
	const (
		queryToken = "syt_querytoken_5ecret"
		bodySecret = "BODY-5ECRET-MARKER"
		bearer     = "Bearer syt_bearer_5ecret"
	)
	type req struct {
		method, uri string
		body        []byte
		alter       []func(*http.Request)
		endpoint    string
		status      int
		origin      string
	}
	reqs := []req{
		{"GET", "/_matrix/federation/v1/backfill/%21r%3Ahs.example?v=%24a&limit=10&access_token=" + queryToken, nil,
			[]func(*http.Request){capture}, "backfill", 200, "hs.example"},
		{"POST", "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example?access_token=" + queryToken,
			[]byte(`{"latest_events":["$a"],"limit":5,"note":"` + bodySecret + `"}`), []func(*http.Request){capture}, "get_missing_events", 200, "hs.example"},
		{"POST", "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example",
			[]byte(`{"latest_events":"` + bodySecret + `"}`), []func(*http.Request){capture}, "get_missing_events", 400, "hs.example"},
		{"GET", "/_matrix/federation/v1/event/%24a?access_token=" + queryToken, nil,
			[]func(*http.Request){capture}, "event", 502, "hs.example"},
		{"GET", "/_matrix/federation/v1/event/%24a?access_token=" + queryToken, nil,
			[]func(*http.Request){func(r *http.Request) { r.Header.Set("Authorization", bearer) }}, "event", 401, ""},
		{"POST", "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example", []byte(`{"latest_events":["$a"],"x":"` + bodySecret + `"}`),
			// signed over another body: the signature is refused, the body must not be echoed
			[]func(*http.Request){capture, func(r *http.Request) {
				other := `{"latest_events":["$b"],"x":"` + bodySecret + `"}`
				r.Body, r.ContentLength = io.NopCloser(strings.NewReader(other)), int64(len(other))
			}}, "get_missing_events", 401, ""},
		{"GET", "/_matrix/federation/v1/publicRooms?access_token=" + queryToken, nil,
			[]func(*http.Request){capture}, "unknown", 404, ""},
	}
	for _, r := range reqs {
		if code, _, raw := s.do(r.method, r.uri, r.body, r.alter...); code != r.status {
			t.Fatalf("%s %s: %d %s, want %d", r.method, r.uri, code, raw, r.status)
		}
	}

	secrets := []string{queryToken, "access_token", bodySecret, "syt_bearer_5ecret", "latest_events"}
	for _, h := range headers {
		x := h[strings.Index(h, `sig="`)+5:]
		secrets = append(secrets, h, x[:strings.IndexByte(x, '"')])
	}
	for _, e := range logs.AllUntimed() {
		text := e.Message + " " + flatten(e.ContextMap())
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("log %q holds the secret %q: %s", e.Message, secret, text)
			}
		}
	}

	access := logs.FilterMessage("request").AllUntimed()
	if len(access) != len(reqs) {
		t.Fatalf("%d access lines for %d requests", len(access), len(reqs))
	}
	for i, e := range access {
		r, f := reqs[i], e.ContextMap()
		if e.Level != zapcore.InfoLevel || f["endpoint"] != r.endpoint || f["method"] != r.method ||
			f["status"] != int64(r.status) || f["origin"] != r.origin || f["took"].(time.Duration) < 2*time.Millisecond {
			t.Errorf("access line %d: %v, want endpoint %s method %s status %d origin %q took ≥ 2ms", i, f, r.endpoint, r.method, r.status, r.origin)
		}
		if path, _ := f["path"].(string); strings.Contains(path, "?") || !strings.HasPrefix(path, "/_matrix/federation/v1/") {
			t.Errorf("access line %d: path %q", i, path)
		}
	}
	if logs.FilterMessage("request failed").FilterFieldKey("error").Len() != 1 {
		t.Errorf("want one warning for the upstream failure, got %v", logs.FilterMessage("request failed").AllUntimed())
	}
}

// flatten renders logged fields as JSON, the way a JSON log line would carry them.
func flatten(fields map[string]any) string {
	out, err := json.Marshal(fields)
	if err != nil {
		return fmt.Sprint(fields)
	}
	return string(out)
}

// BenchmarkRequestMetricsOverhead answers /version (the cheapest route) and a signed /event
// without and with Prometheus metrics, to show what observing a request adds.
func BenchmarkRequestMetricsOverhead(b *testing.B) {
	for _, withMetrics := range []bool{false, true} {
		name := "none"
		if withMetrics {
			name = "prometheus"
		}
		t := &testing.T{}
		s := newTestShim(t, serving(), func(c *Config) {
			if withMetrics {
				c.Metrics = metrics.New()
			}
		})
		b.Run("version/"+name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/_matrix/federation/v1/version", nil)
			b.ReportAllocs()
			for b.Loop() {
				s.srv.ServeHTTP(httptest.NewRecorder(), req)
			}
		})
		b.Run("signed_event/"+name, func(b *testing.B) {
			const uri = "/_matrix/federation/v1/event/%24a"
			x, err := signing.SignRequest(s.id, "GET", "hs.example", uri, nil)
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest("GET", uri, nil)
			req.Header.Set("Authorization", x.String())
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				s.srv.ServeHTTP(rec, req)
				if rec.Code != 200 {
					b.Fatalf("%d %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
