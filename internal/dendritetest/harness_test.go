package dendritetest

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/transition-matrix/transition-matrix/signing"
)

func TestKeyPEMIsDendritesFormat(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	out, err := KeyPEM(k)
	if err != nil {
		t.Fatal(err)
	}
	block, rest := pem.Decode(out)
	if block == nil || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("not one PEM block: %q", out)
	}
	if block.Type != "MATRIX PRIVATE KEY" || block.Headers["Key-ID"] != string(k.ID) || string(block.Bytes) != string(k.Seed) {
		t.Fatalf("block type %q, headers %v, %d-byte body; want MATRIX PRIVATE KEY, Key-ID %s, the 32-byte seed", block.Type, block.Headers, len(block.Bytes), k.ID)
	}
	if !strings.HasPrefix(string(k.ID), "ed25519:") {
		t.Fatalf("key ID %q", k.ID)
	}
	if _, err := KeyPEM(signing.Key{ID: "ed25519:x", Seed: []byte("short")}); err == nil {
		t.Fatal("a 5-byte seed was encoded")
	}
	if _, err := KeyPEM(signing.Key{ID: "rsa:x", Seed: k.Seed}); err == nil {
		t.Fatal("a non-ed25519 key ID was encoded")
	}
}

// generated is the part of generate-config's output EditConfig touches, in its layout.
const generated = `version: 2
global:
  server_name: 127.0.0.1:1
  key_id: ed25519:auto
  private_key: matrix_key.pem
  trusted_third_party_id_servers:
  - matrix.org
  jetstream:
    in_memory: false
  server_notices:
    enabled: true
  report_stats:
    enabled: false
client_api:
  registration_disabled: true
  registration_shared_secret: ""
  rate_limiting:
    enabled: true
    threshold: 5
federation_api:
  key_perspectives:
  - server_name: matrix.org
user_api:
  bcrypt_cost: 10
logging:
- type: file
  level: info
`

func TestEditConfig(t *testing.T) {
	out, err := EditConfig([]byte(generated), Settings{KeyPath: "/k.pem", KeyID: "ed25519:abc", SharedSecret: "s3"})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Version int `yaml:"version"`
		Global  struct {
			ServerName string   `yaml:"server_name"`
			KeyID      string   `yaml:"key_id"`
			PrivateKey string   `yaml:"private_key"`
			Trusted    []string `yaml:"trusted_third_party_id_servers"`
			JetStream  struct {
				InMemory bool `yaml:"in_memory"`
			} `yaml:"jetstream"`
			Notices struct {
				Enabled bool `yaml:"enabled"`
			} `yaml:"server_notices"`
		} `yaml:"global"`
		Client struct {
			RegistrationDisabled bool   `yaml:"registration_disabled"`
			Secret               string `yaml:"registration_shared_secret"`
			RateLimiting         struct {
				Enabled   bool `yaml:"enabled"`
				Threshold int  `yaml:"threshold"`
			} `yaml:"rate_limiting"`
		} `yaml:"client_api"`
		Federation struct {
			Perspectives []any `yaml:"key_perspectives"`
		} `yaml:"federation_api"`
		User struct {
			Bcrypt int `yaml:"bcrypt_cost"`
		} `yaml:"user_api"`
		Logging []map[string]any `yaml:"logging"`
	}
	if err := yaml.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	g := got.Global
	if got.Version != 2 || g.ServerName != "127.0.0.1:1" || g.KeyID != "ed25519:abc" || g.PrivateKey != "/k.pem" ||
		len(g.Trusted) != 0 || !g.JetStream.InMemory || g.Notices.Enabled {
		t.Errorf("global section not as set:\n%s", out)
	}
	c := got.Client
	if !c.RegistrationDisabled || c.Secret != "s3" || c.RateLimiting.Enabled || c.RateLimiting.Threshold != 5 {
		t.Errorf("client_api section not as set (open registration must stay off, untouched keys kept):\n%s", out)
	}
	if len(got.Federation.Perspectives) != 0 || got.User.Bcrypt != 4 || len(got.Logging) != 1 || got.Logging[0]["type"] != "std" {
		t.Errorf("federation_api, user_api or logging not as set:\n%s", out)
	}
}

func TestEditConfigNamesEveryMissingKey(t *testing.T) {
	in := strings.Replace(generated, "  bcrypt_cost: 10\n", "  worker_count: 8\n", 1)
	in = strings.Replace(in, "  jetstream:\n    in_memory: false\n", "  jetstream: {}\n", 1)
	_, err := EditConfig([]byte(in), Settings{})
	if err == nil {
		t.Fatal("a config without user_api.bcrypt_cost and jetstream.in_memory was accepted")
	}
	for _, want := range []string{"user_api.bcrypt_cost", "global.jetstream.in_memory"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if _, err := EditConfig([]byte("- a list"), Settings{}); err == nil {
		t.Fatal("a YAML list was accepted as a config")
	}
}

// TestTimelineDropsRepeats pages a fake /messages that, like Dendrite 0.15.2, answers the oldest
// event again on the page after the one that reached it.
func TestTimelineDropsRepeats(t *testing.T) {
	pages := map[string]string{
		"":   `{"chunk":[{"event_id":"$3","type":"m.room.message"},{"event_id":"$2","type":"m.room.member","state_key":"@a:x"}],"end":"p2"}`,
		"p2": `{"chunk":[{"event_id":"$1","type":"m.room.create","state_key":""}],"end":"p3"}`,
		"p3": `{"chunk":[{"event_id":"$1","type":"m.room.create","state_key":""}]}`,
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Query().Get("dir") != "b" {
			http.Error(w, `{"errcode":"M_FORBIDDEN"}`, 403)
			return
		}
		body, ok := pages[r.URL.Query().Get("from")]
		if !ok {
			http.Error(w, `{"errcode":"M_INVALID_PARAM"}`, 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(body))
	}))
	defer hs.Close()
	u := &User{ID: "@a:x", Token: "tok", base: hs.URL}
	evs, repeats, err := u.Timeline(context.Background(), "!r:x")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range evs {
		ids = append(ids, e.EventID)
	}
	if strings.Join(ids, " ") != "$3 $2 $1" || repeats != 1 {
		t.Fatalf("timeline %v with %d repeats, want [$3 $2 $1] with 1", ids, repeats)
	}
	if evs[0].StateKey != nil || evs[2].StateKey == nil || *evs[2].StateKey != "" {
		t.Fatalf("state keys not kept: %s", mustJSON(evs))
	}
	bad := &User{Token: "wrong", base: hs.URL}
	if _, _, err := bad.Timeline(context.Background(), "!r:x"); err == nil || !strings.Contains(err.Error(), "403") || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("refused token: error %v, want a 403 that does not show the token", err)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestMergeTimelinesKeepsEveryEventInPlace: an event one read left out at a page boundary comes
// back from the other read, after the event that precedes it there; nothing is listed twice.
func TestMergeTimelinesKeepsEveryEventInPlace(t *testing.T) {
	evs := func(ids ...string) []ClientEvent {
		var out []ClientEvent
		for _, id := range ids {
			out = append(out, ClientEvent{EventID: id})
		}
		return out
	}
	got := mergeTimelines(evs("e", "d", "b", "a"), evs("e", "c", "b", "a", "z"))
	var ids []string
	for _, e := range got {
		ids = append(ids, e.EventID)
	}
	if want := "e c d b a z"; strings.Join(ids, " ") != want {
		t.Fatalf("merged %q, want %q", strings.Join(ids, " "), want)
	}
	if got := mergeTimelines(evs("b", "a"), evs("x", "b")); got[0].EventID != "x" || len(got) != 3 {
		t.Fatalf("an event newest in the second read: %v", got)
	}
}
