// Package synapsesim is a simulated Synapse homeserver for tests: it serves the admin, client and
// federation APIs from a generated world (internal/world) with the quirks of a real Synapse,
// checked against the recorded Synapse 1.67 responses in the shared fixtures.
package synapsesim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/tb"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

// Options configure a simulated Synapse.
type Options struct {
	World *world.World
	// Version is the Synapse version reported and used to gate endpoints (admin room messages
	// need 1.68, fetch_event 1.140) and answer shapes: from 1.120 and 1.163 those the live
	// Synapse of that version gives (TestLiveConformance); default "1.67.0", the recordings'.
	Version string
	// RateLimit, when set, limits federation requests per origin (Synapse's rc_federation).
	RateLimit *RateLimit
	// Faults is the fault injector; nil gets a fresh one (Server.Faults returns it either way).
	Faults *Faults
	// Now is the clock for ages, timestamps and rate-limit windows (default time.Now).
	Now func() time.Time
	// Seed seeds login-as tokens and probabilistic faults (default 1).
	Seed uint64
	// FederationDomainWhitelist, when not nil, is Synapse's federation_domain_whitelist: federation
	// requests from any other origin (the server's own name included, unless listed) get
	// 403 "Federation denied with <origin>.".
	FederationDomainWhitelist []string
	// Latency, when set, delays every answer by this long, as a network and a busy Synapse would
	// (the requests wait side by side, not in turn).
	Latency time.Duration
}

// RateLimit allows Requests federation requests per origin in each Window; more get 429.
type RateLimit struct {
	Requests int
	Window   time.Duration
}

// Server is a simulated Synapse; serve it with Handler or Start.
type Server struct {
	// URL is the base URL when started with Start.
	URL string

	w        *world.World
	opts     Options
	version  [3]int
	identity *signing.Identity
	faults   *Faults
	now      func() time.Time
	routes   []route
	admin    *world.User

	mu         sync.Mutex
	tokens     map[string]tokenInfo // access token -> owner
	rng        *rand.Rand
	stats      map[string]int
	windows    map[string]*rateWindow
	refCache   map[string]string // v1 event ID -> reference hash
	pruneCache map[string][]byte // event ID -> pruned JSON

	relOnce sync.Once
	rels    map[string][]*world.Event // target event ID -> events relating to it
	stream  map[string]int            // event ID -> index in its room's Events
}

type tokenInfo struct {
	user   *world.User
	device string // "" for login-as (puppet) tokens
}

type rateWindow struct {
	start time.Time
	n     int
}

// New builds a simulated Synapse over opts.World.
func New(opts Options) *Server {
	if opts.World == nil {
		panic("synapsesim: Options.World is nil")
	}
	if opts.Version == "" {
		opts.Version = "1.67.0"
	}
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	s := &Server{
		w: opts.World, opts: opts, faults: opts.Faults, now: opts.Now,
		tokens: map[string]tokenInfo{}, stats: map[string]int{}, windows: map[string]*rateWindow{},
		refCache: map[string]string{}, pruneCache: map[string][]byte{},
		rng: rand.New(rand.NewPCG(opts.Seed, 0x73796e)),
	}
	if s.faults == nil {
		s.faults = NewFaults(opts.Seed)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.version = parseVersion(opts.Version)
	w := opts.World
	id := &signing.Identity{ServerName: w.ServerName, Keys: []signing.Key{{ID: signing.KeyID(w.SigningKey.KeyID), Seed: w.SigningKey.Private.Seed()}}}
	for _, k := range w.OldKeys {
		id.OldKeys = append(id.OldKeys, signing.OldKey{ID: signing.KeyID(k.KeyID), Public: k.Public, ExpiredTS: k.ExpiredTS})
	}
	s.identity = id
	for _, u := range w.Users {
		if u.Admin && s.admin == nil {
			s.admin = u
		}
		for _, d := range u.Devices {
			s.tokens[d.AccessToken] = tokenInfo{user: u, device: d.ID}
		}
	}
	if s.admin == nil || len(s.admin.Devices) == 0 {
		panic("synapsesim: the world has no admin user with a device")
	}
	s.routes = s.buildRoutes()
	return s
}

// Start serves a new simulated Synapse on an httptest server closed when the test ends.
func Start(t tb.TB, opts Options) *Server {
	t.Helper()
	s := New(opts)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	s.URL = ts.URL
	return s
}

// AdminToken is an access token of the server admin.
func (s *Server) AdminToken() string { return s.admin.Devices[0].AccessToken }

// Identity is the server's signing identity (its current key and old keys), for signing requests to it.
func (s *Server) Identity() *signing.Identity { return s.identity }

// World is the world the server serves.
func (s *Server) World() *world.World { return s.w }

// Faults is the server's fault injector; rules may be changed while it serves.
func (s *Server) Faults() *Faults { return s.faults }

// Stats returns a copy of the per-endpoint request counts, keyed by route name (e.g. "fed.backfill").
func (s *Server) Stats() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.stats))
	for k, v := range s.stats {
		out[k] = v
	}
	return out
}

// Count is the number of requests served so far by one route.
func (s *Server) Count(route string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats[route]
}

// ResetStats clears the request counts.
func (s *Server) ResetStats() {
	s.mu.Lock()
	s.stats = map[string]int{}
	s.mu.Unlock()
}

func parseVersion(v string) [3]int {
	var out [3]int
	for i, p := range strings.SplitN(v, ".", 3) {
		n, _ := strconv.Atoi(strings.TrimLeftFunc(p, func(r rune) bool { return r < '0' || r > '9' }))
		out[i] = n
	}
	return out
}

// atLeast reports whether the configured version is at least major.minor.
func (s *Server) atLeast(major, minor int) bool {
	return s.version[0] > major || (s.version[0] == major && s.version[1] >= minor)
}

// route is one endpoint: method, path pattern ("{x}" segments are variables), handler.
type route struct {
	name    string
	method  string
	parts   []string
	handler func(w http.ResponseWriter, r *http.Request, v []string)
	minVer  [2]int
}

// Handler is the HTTP handler serving every endpoint.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

func (s *Server) match(r *http.Request) (*route, []string, bool) {
	segs := strings.Split(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	methodMismatch := false
	for i := range s.routes {
		rt := &s.routes[i]
		if len(rt.parts) != len(segs) {
			continue
		}
		var vars []string
		ok := true
		for k, p := range rt.parts {
			if strings.HasPrefix(p, "{") {
				v, err := url.PathUnescape(segs[k])
				if err != nil {
					ok = false
					break
				}
				vars = append(vars, v)
			} else if p != segs[k] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		if rt.method != r.Method {
			methodMismatch = true
			continue
		}
		return rt, vars, false
	}
	return nil, nil, methodMismatch
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	rt, vars, badMethod := s.match(r)
	if rt == nil || (rt.minVer != [2]int{} && !s.atLeast(rt.minVer[0], rt.minVer[1])) {
		status := http.StatusNotFound
		if badMethod {
			status = http.StatusMethodNotAllowed
		}
		s.count("unrecognized")
		writeError(w, status, "M_UNRECOGNIZED", "Unrecognized request")
		return
	}
	s.count(rt.name)
	if s.opts.Latency > 0 {
		t := time.NewTimer(s.opts.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	s.faults.serve(rt.name, w, r, func(w http.ResponseWriter) { rt.handler(w, r, vars) })
}

func (s *Server) count(name string) {
	s.mu.Lock()
	s.stats[name]++
	s.mu.Unlock()
}

// writeJSON writes v (or raw bytes, for json.RawMessage/[]byte) with Synapse's headers.
func writeJSON(w http.ResponseWriter, status int, v any) {
	var body []byte
	switch b := v.(type) {
	case json.RawMessage:
		body = b
	case []byte:
		body = b
	default:
		var buf bytes.Buffer
		if err := writeValue(&buf, v); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		body = buf.Bytes()
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Server", "Synapse/simulated")
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeError writes a Matrix error object {"errcode","error"}.
func writeError(w http.ResponseWriter, status int, errcode, msg string) {
	writeJSON(w, status, map[string]any{"errcode": errcode, "error": msg})
}

// obj is an ordered JSON object: keys are written in the order given, like Synapse's dicts.
type obj []kv

type kv struct {
	k string
	v any
}

// MarshalJSON writes the pairs in order.
func (o obj) MarshalJSON() ([]byte, error) {
	var buf bytes.Buffer
	if err := o.writeTo(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// writeTo writes o to buf, nested objects (and lists of them) directly: encoding/json would
// re-validate a nested object's bytes once per level above it.
func (o obj) writeTo(buf *bytes.Buffer) error {
	buf.WriteByte('{')
	for i, p := range o {
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(p.k)
		buf.Write(k)
		buf.WriteByte(':')
		if err := writeValue(buf, p.v); err != nil {
			return fmt.Errorf("key %s: %w", p.k, err)
		}
	}
	buf.WriteByte('}')
	return nil
}

func writeValue(buf *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case obj:
		return v.writeTo(buf) // nil too: encoding/json calls MarshalJSON on a nil obj, giving {}
	case []obj:
		if v == nil {
			buf.WriteString("null")
			return nil
		}
		buf.WriteByte('[')
		for i, o := range v {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeValue(buf, o); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
		return nil
	}
	var vb bytes.Buffer
	enc := json.NewEncoder(&vb)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return err
	}
	buf.Write(bytes.TrimRight(vb.Bytes(), "\n"))
	return nil
}

// nullable returns nil for "" so that it encodes as JSON null.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *Server) nowMS() int64 { return s.now().UnixMilli() }

func (s *Server) isLocal(userID string) bool {
	_, server, ok := strings.Cut(userID, ":")
	return ok && server == s.w.ServerName
}
