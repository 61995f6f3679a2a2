package federation

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/signing"

	"github.com/transition-matrix/transition-matrix/matrixspec"
)

// fakeSource is an EventSource whose answers the test sets with function fields.
type fakeSource struct {
	event         func(ctx context.Context, id string) (PDU, error)
	backfill      func(ctx context.Context, room string, seeds []string, limit int) ([]PDU, error)
	missingEvents func(ctx context.Context, room string, earliest, latest []string, limit int, minDepth int64) ([]PDU, error)
	stateIDs      func(ctx context.Context, room, event string) ([]string, []string, error)
	state         func(ctx context.Context, room, event string) ([]PDU, []PDU, error)
	eventAuth     func(ctx context.Context, room, event string) ([]PDU, error)
	calls         int
}

func (f *fakeSource) Event(ctx context.Context, id string) (PDU, error) {
	f.calls++
	return f.event(ctx, id)
}
func (f *fakeSource) Backfill(ctx context.Context, room string, seeds []string, limit int) ([]PDU, error) {
	f.calls++
	return f.backfill(ctx, room, seeds, limit)
}
func (f *fakeSource) MissingEvents(ctx context.Context, room string, earliest, latest []string, limit int, minDepth int64) ([]PDU, error) {
	f.calls++
	return f.missingEvents(ctx, room, earliest, latest, limit, minDepth)
}
func (f *fakeSource) StateIDs(ctx context.Context, room, event string) ([]string, []string, error) {
	f.calls++
	return f.stateIDs(ctx, room, event)
}
func (f *fakeSource) State(ctx context.Context, room, event string) ([]PDU, []PDU, error) {
	f.calls++
	return f.state(ctx, room, event)
}
func (f *fakeSource) EventAuth(ctx context.Context, room, event string) ([]PDU, error) {
	f.calls++
	return f.eventAuth(ctx, room, event)
}

// secretPDU is what the fake serves; a hostile request must never see it.
const secretPDU = `{"type":"m.room.message","content":{"body":"SECRET-HISTORY"},"room_id":"!r:hs.example"}`

func serving() *fakeSource {
	one := []PDU{PDU(secretPDU)}
	return &fakeSource{
		event:    func(context.Context, string) (PDU, error) { return PDU(secretPDU), nil },
		backfill: func(context.Context, string, []string, int) ([]PDU, error) { return one, nil },
		missingEvents: func(context.Context, string, []string, []string, int, int64) ([]PDU, error) {
			return one, nil
		},
		stateIDs: func(context.Context, string, string) ([]string, []string, error) {
			return []string{"$s"}, []string{"$a"}, nil
		},
		state:     func(context.Context, string, string) ([]PDU, []PDU, error) { return one, one, nil },
		eventAuth: func(context.Context, string, string) ([]PDU, error) { return one, nil },
	}
}

type testShim struct {
	t      *testing.T
	id     *signing.Identity
	source *fakeSource
	srv    *Server
}

func newTestShim(t *testing.T, src *fakeSource, mutate ...func(*Config)) *testShim {
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	id := &signing.Identity{ServerName: "hs.example", Keys: []signing.Key{{ID: "ed25519:a_Shim", Seed: seed}}}
	cfg := Config{Identity: id, Source: src, Now: func() time.Time { return time.UnixMilli(1700000000000) }}
	for _, m := range mutate {
		m(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testShim{t: t, id: id, source: src, srv: srv}
}

// do sends a request signed as the server itself (what Conduit sends), optionally altered.
func (s *testShim) do(method, uri string, body []byte, alter ...func(*http.Request)) (int, map[string]any, string) {
	s.t.Helper()
	x, err := signing.SignRequest(s.id, method, s.id.ServerName, uri, body)
	if err != nil {
		s.t.Fatal(err)
	}
	req := httptest.NewRequest(method, uri, bytes.NewReader(body))
	req.RemoteAddr = "127.0.0.1:50000"
	req.Header.Set("Authorization", x.String())
	for _, a := range alter {
		a(req)
	}
	rec := httptest.NewRecorder()
	s.srv.ServeHTTP(rec, req)
	raw := rec.Body.String()
	var m map[string]any
	json.Unmarshal([]byte(raw), &m)
	return rec.Code, m, raw
}

func TestEndpointsAnswerSignedRequests(t *testing.T) {
	var gotSeeds []string
	var gotLimit int
	src := serving()
	src.backfill = func(_ context.Context, room string, seeds []string, limit int) ([]PDU, error) {
		gotSeeds, gotLimit = seeds, limit
		if room != "!r:hs.example" {
			t.Errorf("room %q", room)
		}
		return []PDU{PDU(secretPDU), PDU(`{"b" : 1}`)}, nil
	}
	s := newTestShim(t, src)

	code, m, raw := s.do("GET", "/_matrix/federation/v1/backfill/%21r%3Ahs.example?v=%24a%2Fb%2Bc&v=%24d&limit=500", nil)
	if code != 200 || m["origin"] != "hs.example" || !strings.Contains(raw, `"pdus":[`+secretPDU+`,{"b" : 1}]`) {
		t.Fatalf("backfill: %d %s", code, raw)
	}
	if fmt.Sprint(gotSeeds) != "[$a/b+c $d]" || gotLimit != matrixspec.MaxBackfill {
		t.Fatalf("seeds %v limit %d: v must be unescaped and the limit capped at 100", gotSeeds, gotLimit)
	}
	if code, _, raw := s.do("GET", "/_matrix/federation/v1/event/%24abc%2Fdef", nil); code != 200 || !strings.Contains(raw, secretPDU) {
		t.Fatalf("event: %d %s", code, raw)
	}
	body := []byte(`{"earliest_events":["$e"],"latest_events":["$l"],"limit":50,"min_depth":3}`)
	src.missingEvents = func(_ context.Context, _ string, earliest, latest []string, limit int, minDepth int64) ([]PDU, error) {
		if limit != 50 || minDepth != 3 || earliest[0] != "$e" || latest[0] != "$l" {
			t.Errorf("get_missing_events got %v %v %d %d", earliest, latest, limit, minDepth)
		}
		return []PDU{PDU(secretPDU)}, nil
	}
	if code, _, raw := s.do("POST", "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example", body); code != 200 || raw != `{"events":[`+secretPDU+`]}` {
		t.Fatalf("get_missing_events: %d %s", code, raw)
	}
	if code, _, raw := s.do("GET", "/_matrix/federation/v1/state_ids/%21r%3Ahs.example?event_id=%24x", nil); code != 200 || raw != `{"auth_chain_ids":["$a"],"pdu_ids":["$s"]}` {
		t.Fatalf("state_ids: %d %s", code, raw)
	}
	if code, _, raw := s.do("GET", "/_matrix/federation/v1/state/%21r%3Ahs.example?event_id=%24x", nil); code != 200 || raw != `{"pdus":[`+secretPDU+`],"auth_chain":[`+secretPDU+`]}` {
		t.Fatalf("state: %d %s", code, raw)
	}
	if code, _, raw := s.do("GET", "/_matrix/federation/v1/event_auth/%21r%3Ahs.example/%24x", nil); code != 200 || raw != `{"auth_chain":[`+secretPDU+`]}` {
		t.Fatalf("event_auth: %d %s", code, raw)
	}
}

func TestUnauthenticatedEndpoints(t *testing.T) {
	s := newTestShim(t, serving())
	rec := httptest.NewRecorder()
	s.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/_matrix/key/v2/server", nil))
	if rec.Code != 200 {
		t.Fatalf("key: %d", rec.Code)
	}
	k := s.id.SigningKey()
	if err := signing.VerifyJSON("hs.example", k.ID, k.PublicKey(), rec.Body.Bytes()); err != nil {
		t.Fatalf("key document: %v", err)
	}
	rec = httptest.NewRecorder()
	s.srv.ServeHTTP(rec, httptest.NewRequest("GET", "/_matrix/federation/v1/version", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"server"`) {
		t.Fatalf("version: %d %s", rec.Code, rec.Body)
	}
}

func TestHostileRequestsGetNoData(t *testing.T) {
	other := make([]byte, ed25519.SeedSize)
	rand.Read(other)
	foreign := &signing.Identity{ServerName: "evil.example", Keys: []signing.Key{{ID: "ed25519:a_Shim", Seed: other}}}
	forger := &signing.Identity{ServerName: "hs.example", Keys: []signing.Key{{ID: "ed25519:a_Shim", Seed: other}}}
	const bf = "/_matrix/federation/v1/backfill/%21r%3Ahs.example?v=%24a&limit=10"
	setHeader := func(h string) func(*http.Request) { return func(r *http.Request) { r.Header.Set("Authorization", h) } }
	signedBy := func(id *signing.Identity, method, dest, uri string, body []byte) func(*http.Request) {
		x, _ := signing.SignRequest(id, method, dest, uri, body)
		return setHeader(x.String())
	}
	cases := []struct {
		name, method, uri string
		body              []byte
		alter             func(*http.Request)
		status            int
		errcode           string
	}{
		{"no header", "GET", bf, nil, func(r *http.Request) { r.Header.Del("Authorization") }, 401, "M_UNAUTHORIZED"},
		{"bearer token", "GET", bf, nil, setHeader("Bearer syt_abc"), 401, "M_UNAUTHORIZED"},
		{"wrong origin", "GET", bf, nil, signedBy(foreign, "GET", "hs.example", bf, nil), 401, "M_UNAUTHORIZED"},
		{"wrong destination", "GET", bf, nil, signedBy(s0(t).id, "GET", "other.example", bf, nil), 401, "M_UNAUTHORIZED"},
		{"forged signature", "GET", bf, nil, signedBy(forger, "GET", "hs.example", bf, nil), 401, "M_UNAUTHORIZED"},
		{"signature over another URI", "GET", bf, nil, nil, 401, "M_UNAUTHORIZED"}, // set below
		{"replayed header on another path", "GET", "/_matrix/federation/v1/event/%24a", nil, nil, 401, "M_UNAUTHORIZED"},
		{"malformed header", "GET", bf, nil, setHeader(`X-Matrix origin="hs.example",key="ed25519:a_Shim"`), 401, "M_UNAUTHORIZED"},
		{"duplicated origin", "GET", bf, nil, nil, 401, "M_UNAUTHORIZED"},
		{"oversized body", "POST", "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example", []byte(`{"latest_events":["$a"],"pad":"` + strings.Repeat("a", 2<<20) + `"}`), nil, 413, "M_TOO_LARGE"},
		{"limit=1000000", "GET", "/_matrix/federation/v1/backfill/%21r%3Ahs.example?v=%24a&limit=1000000", nil, nil, 400, "M_INVALID_PARAM"},
		{"limit=-1", "GET", "/_matrix/federation/v1/backfill/%21r%3Ahs.example?v=%24a&limit=-1", nil, nil, 400, "M_INVALID_PARAM"},
		{"no limit", "GET", "/_matrix/federation/v1/backfill/%21r%3Ahs.example?v=%24a", nil, nil, 400, "M_MISSING_PARAM"},
		{"no v", "GET", "/_matrix/federation/v1/backfill/%21r%3Ahs.example?limit=10", nil, nil, 400, "M_MISSING_PARAM"},
		{"malformed room ID", "GET", "/_matrix/federation/v1/backfill/room?v=%24a&limit=10", nil, nil, 400, "M_INVALID_PARAM"},
		{"malformed event ID", "GET", "/_matrix/federation/v1/event/abc", nil, nil, 400, "M_INVALID_PARAM"},
		{"NUL in event ID", "GET", "/_matrix/federation/v1/event/%24a%00b", nil, nil, 400, "M_INVALID_PARAM"},
		{"unknown room", "GET", "/_matrix/federation/v1/backfill/%21unknown%3Ahs.example?v=%24a&limit=10", nil, nil, 404, "M_NOT_FOUND"},
		{"state_ids without event_id", "GET", "/_matrix/federation/v1/state_ids/%21r%3Ahs.example", nil, nil, 400, "M_MISSING_PARAM"},
		{"body not JSON", "POST", "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example", []byte(`{"latest_events":["$a"]}`),
			func(r *http.Request) { r.Body = io.NopCloser(strings.NewReader("{nope")); r.ContentLength = 5 }, 400, "M_NOT_JSON"},
		{"body wrong shape", "POST", "/_matrix/federation/v1/get_missing_events/%21r%3Ahs.example", []byte(`{"latest_events":"x"}`), nil, 400, "M_BAD_JSON"},
		{"unknown endpoint", "GET", "/_matrix/federation/v1/publicRooms", nil, nil, 404, "M_UNRECOGNIZED"},
		{"wrong method", "DELETE", "/_matrix/federation/v1/event/%24a", nil, nil, 405, "M_UNRECOGNIZED"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := serving()
			src.backfill = func(_ context.Context, room string, _ []string, _ int) ([]PDU, error) {
				if room != "!r:hs.example" {
					return nil, matrixspec.ErrNotFound
				}
				return []PDU{PDU(secretPDU)}, nil
			}
			s := newTestShim(t, src)
			alter := c.alter
			switch c.name {
			case "wrong destination":
				alter = signedBy(s.id, "GET", "other.example", bf, nil)
			case "signature over another URI":
				alter = signedBy(s.id, "GET", "hs.example", bf+"0", nil)
			case "replayed header on another path":
				alter = signedBy(s.id, "GET", "hs.example", bf, nil)
			case "duplicated origin":
				x, _ := signing.SignRequest(s.id, "GET", "hs.example", bf, nil)
				alter = setHeader(x.String() + `,origin="evil.example"`)
			}
			var alters []func(*http.Request)
			if alter != nil {
				alters = append(alters, alter)
			}
			code, m, raw := s.do(c.method, c.uri, c.body, alters...)
			if code != c.status || m["errcode"] != c.errcode || m["error"] == "" {
				t.Fatalf("got %d %s, want %d %s", code, raw, c.status, c.errcode)
			}
			if strings.Contains(raw, "SECRET-HISTORY") {
				t.Fatal("event data leaked")
			}
		})
	}
}

// s0 builds a throw-away shim for cases whose request is made before the test's own shim exists.
func s0(t *testing.T) *testShim { return newTestShim(t, serving()) }

func TestAllowCIDRs(t *testing.T) {
	s := newTestShim(t, serving(), func(c *Config) { c.AllowCIDRs = []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")} })
	code, m, _ := s.do("GET", "/_matrix/federation/v1/event/%24a", nil)
	if code != 403 || m["errcode"] != "M_FORBIDDEN" || s.source.calls != 0 {
		t.Fatalf("outside the allow-list: %d %v", code, m)
	}
	code, _, _ = s.do("GET", "/_matrix/federation/v1/event/%24a", nil, func(r *http.Request) { r.RemoteAddr = "10.1.2.3:4000" })
	if code != 200 {
		t.Fatalf("inside the allow-list: %d", code)
	}
}

func TestSourceErrorsBecomeMatrixErrors(t *testing.T) {
	cases := []struct {
		err     error
		status  int
		errcode string
	}{
		{matrixspec.ErrNotFound, 404, "M_NOT_FOUND"},
		{matrixspec.ErrHostNotInRoom, 403, "M_FORBIDDEN"},
		{fmt.Errorf("synapse: %w", matrixspec.ErrUpstreamUnavailable), 502, "M_UNKNOWN"},
		{fmt.Errorf("hash mismatch: %w", matrixspec.ErrNotVerified), 502, "M_UNKNOWN"},
		{context.DeadlineExceeded, 504, "M_UNKNOWN"},
		{io.ErrUnexpectedEOF, 500, "M_UNKNOWN"},
	}
	for _, c := range cases {
		src := serving()
		src.event = func(context.Context, string) (PDU, error) { return nil, c.err }
		s := newTestShim(t, src)
		code, m, raw := s.do("GET", "/_matrix/federation/v1/event/%24a", nil)
		if code != c.status || m["errcode"] != c.errcode {
			t.Errorf("%v: got %d %s", c.err, code, raw)
		}
		if strings.Contains(raw, "hash mismatch") || strings.Contains(raw, "synapse:") {
			t.Errorf("%v: internal detail leaked: %s", c.err, raw)
		}
	}
}

func TestSlowSourceHitsTheDeadline(t *testing.T) {
	src := serving()
	src.event = func(ctx context.Context, _ string) (PDU, error) {
		<-ctx.Done() // a Synapse that never answers
		return nil, ctx.Err()
	}
	s := newTestShim(t, src, func(c *Config) { c.RequestTimeout = time.Millisecond })
	code, m, _ := s.do("GET", "/_matrix/federation/v1/event/%24a", nil)
	if code != 504 || m["errcode"] != "M_UNKNOWN" {
		t.Fatalf("got %d %v", code, m)
	}
}

func FuzzRouteParameters(f *testing.F) {
	f.Add("backfill/%21r%3Ahs.example", "v=%24a&limit=10")
	f.Add("event/%24abc%2F", "")
	f.Add("state_ids/%21r", "event_id=%24%00")
	f.Add("event_auth/%21r/%24e", "x=%zz")
	f.Fuzz(func(t *testing.T, path, query string) {
		src := serving()
		s := newTestShim(t, src)
		uri := "/_matrix/federation/v1/" + path
		if query != "" {
			uri += "?" + query
		}
		if _, err := url.ParseRequestURI(uri); err != nil || strings.ContainsAny(uri, " \t\r\n#") {
			return
		}
		x, _ := signing.SignRequest(s.id, "GET", "hs.example", uri, nil)
		req := httptest.NewRequest("GET", uri, nil)
		req.Header.Set("Authorization", x.String())
		rec := httptest.NewRecorder()
		s.srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			var m map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m["errcode"] == nil {
				t.Fatalf("%s: %d answer is not Matrix error JSON: %q", uri, rec.Code, rec.Body)
			}
		}
	})
}
