package synapseclient

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/fixtures"
	"github.com/transition-matrix/transition-matrix/signing"
)

const (
	testServer     = "synapse.test"
	testAdminToken = "syt_YWRtaW4_secretadmintoken"
	testAdminID    = "@admin:synapse.test"
)

// seenRequest is what the fake saw of one request.
type seenRequest struct {
	Method, URI, Auth string
	Body              []byte
}

// route answers requests whose method and raw escaped path match, and whose query holds every
// parameter of query; the route with the most matching parameters wins.
type route struct {
	method, path string
	query        url.Values
	h            http.HandlerFunc
}

// fakeSynapse is an httptest server with per-route handler functions.
type fakeSynapse struct {
	t   *testing.T
	srv *httptest.Server
	id  *signing.Identity

	mu       sync.Mutex
	routes   []route
	requests []seenRequest
	// authFailures lists federation requests whose X-Matrix did not verify.
	authFailures []string
}

func newFake(t *testing.T) *fakeSynapse {
	f := &fakeSynapse{t: t, id: testIdentity()}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func testIdentity() *signing.Identity {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i*7 + 1)
	}
	return &signing.Identity{ServerName: testServer, Keys: []signing.Key{{ID: "ed25519:a_test", Seed: seed}}}
}

func (f *fakeSynapse) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	f.mu.Lock()
	f.requests = append(f.requests, seenRequest{Method: r.Method, URI: r.RequestURI, Auth: r.Header.Get("Authorization"), Body: body})
	path, _, _ := strings.Cut(r.RequestURI, "?")
	var best *route
	bestScore := -1
	for i := range f.routes {
		rt := &f.routes[i]
		if rt.method != r.Method || rt.path != path {
			continue
		}
		score, ok := 0, true
		for k, vs := range rt.query {
			got := r.URL.Query()[k]
			if strings.Join(got, "\x00") != strings.Join(vs, "\x00") {
				ok = false
				break
			}
			score++
		}
		if ok && score > bestScore {
			best, bestScore = rt, score
		}
	}
	f.mu.Unlock()
	if strings.HasPrefix(path, "/_matrix/federation/") {
		f.checkXMatrix(r)
	}
	if best == nil {
		f.t.Errorf("fake: no route for %s %s", r.Method, r.RequestURI)
		w.WriteHeader(404)
		io.WriteString(w, `{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}`)
		return
	}
	best.h(w, r)
}

// checkXMatrix verifies the federation request is signed by the server itself over its raw URI.
func (f *fakeSynapse) checkXMatrix(r *http.Request) {
	origin, err := signing.VerifyHTTPRequest(r, testServer, f.id.Lookup(), 1<<20)
	if err == nil {
		var x signing.XMatrix
		if x, err = signing.ParseXMatrix(r.Header.Get("Authorization")); err == nil && (origin != testServer || x.Destination != testServer) {
			err = &Error{Message: "origin " + origin + " destination " + x.Destination}
		}
	}
	if err != nil {
		f.mu.Lock()
		f.authFailures = append(f.authFailures, r.Method+" "+r.RequestURI+": "+err.Error())
		f.mu.Unlock()
	}
}

func (f *fakeSynapse) handle(method, pathAndQuery string, h http.HandlerFunc) {
	path, q, _ := strings.Cut(pathAndQuery, "?")
	query, err := url.ParseQuery(q)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.routes = append(f.routes, route{method: method, path: path, query: query, h: h})
	f.mu.Unlock()
}

// serveFixture registers the recording's request and answers it with the recorded status,
// content type and body bytes.
func (f *fakeSynapse) serveFixture(name string) *fixtures.Recording {
	f.t.Helper()
	rec := fixtures.Load(f.t, name)
	f.handle(rec.Request.Method, rec.Request.Path, respond(rec.Response.Status, rec.Response.Body))
	return rec
}

func respond(status int, body []byte) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write(body)
	}
}

func (f *fakeSynapse) seen() []seenRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seenRequest(nil), f.requests...)
}

// count returns how many requests had a URI starting with prefix.
func (f *fakeSynapse) count(prefix string) int {
	n := 0
	for _, r := range f.seen() {
		if strings.HasPrefix(r.URI, prefix) {
			n++
		}
	}
	return n
}

func (f *fakeSynapse) assertSigned() {
	f.t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.authFailures {
		f.t.Errorf("federation request not properly signed: %s", e)
	}
}

// sleepRecorder replaces real waits and records them.
type sleepRecorder struct {
	mu     sync.Mutex
	sleeps []time.Duration
}

func (s *sleepRecorder) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	s.sleeps = append(s.sleeps, d)
	s.mu.Unlock()
	return ctx.Err()
}

func (s *sleepRecorder) get() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.sleeps...)
}

// newTestClient builds a client for the fake; waits are recorded, never slept, and jitter is off.
func newTestClient(t *testing.T, f *fakeSynapse, mutate ...func(*Config)) (*Client, *sleepRecorder) {
	t.Helper()
	rec := &sleepRecorder{}
	cfg := Config{
		BaseURL:     f.srv.URL,
		AdminToken:  testAdminToken,
		AdminUserID: testAdminID,
		ServerName:  testServer,
		Identity:    f.id,
		Timeout:     30 * time.Second,
		Sleep:       rec.sleep,
		Jitter:      func(d time.Duration) time.Duration { return d },
	}
	for _, m := range mutate {
		m(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// fixtureQuery returns the query parameters of a recording's request.
func fixtureQuery(t *testing.T, rec *fixtures.Recording) url.Values {
	t.Helper()
	_, q, _ := strings.Cut(rec.Request.Path, "?")
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// rawList decodes the array at key of a fixture body into its elements' exact bytes.
func rawList(t *testing.T, body []byte, key string) []json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	if err := json.Unmarshal(m[key], &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	return t.Context()
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
