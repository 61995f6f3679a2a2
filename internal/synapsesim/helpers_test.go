package synapsesim

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/signing"
)

var (
	worldOnce sync.Once
	testWorld *world.World
	worldErr  error
)

// sharedWorld is the small world most tests use (generated once; the simulator never mutates it).
func sharedWorld(t testing.TB) *world.World {
	t.Helper()
	worldOnce.Do(func() {
		testWorld, worldErr = world.Generate(world.Options{Seed: 7, MessagesPerRoom: 40, V12Rooms: 1})
	})
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	return testWorld
}

// response is a buffered HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends a request with an optional bearer token.
func do(t testing.TB, s *Server, method, uri, token string, body []byte) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+uri, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return send(t, req)
}

func send(t testing.TB, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// fedRequest builds a federation request signed by the server's own key (origin = destination).
func fedRequest(t testing.TB, s *Server, method, uri string, body []byte) *http.Request {
	t.Helper()
	x, err := signing.SignRequest(s.Identity(), method, s.w.ServerName, uri, body)
	if err != nil {
		t.Fatal(err)
	}
	return rawFedRequest(t, s, method, uri, body, x.String())
}

func rawFedRequest(t testing.TB, s *Server, method, uri string, body []byte, auth string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, s.URL+uri, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return req
}

// fed sends a self-signed federation request.
func fed(t testing.TB, s *Server, method, uri string, body []byte) response {
	t.Helper()
	return send(t, fedRequest(t, s, method, uri, body))
}

// esc escapes a path segment or query value the way Python's quote(safe="") does.
func esc(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
		} else {
			b.WriteString("%")
			b.WriteString(strings.ToUpper(string("0123456789abcdef"[c>>4]) + string("0123456789abcdef"[c&15])))
		}
	}
	return b.String()
}

// loginAs returns a puppet token for user.
func loginAs(t testing.TB, s *Server, user string) string {
	t.Helper()
	r := do(t, s, "POST", "/_synapse/admin/v1/users/"+esc(user)+"/login", s.AdminToken(), []byte(`{}`))
	if r.status != 200 {
		t.Fatalf("login as %s: %d %s", user, r.status, r.body)
	}
	return r.json(t)["access_token"].(string)
}

// pdusOf decodes the PDUs of a transaction-shaped or {"events"} answer.
func pdusOf(t testing.TB, r response, key string) []map[string]any {
	t.Helper()
	var m map[string][]map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("decoding %s: %v: %.300s", key, err, r.body)
	}
	return m[key]
}

func rawPDUs(t testing.TB, r response, key string) []json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatal(err)
	}
	var out []json.RawMessage
	if err := json.Unmarshal(m[key], &out); err != nil {
		t.Fatal(err)
	}
	return out
}
