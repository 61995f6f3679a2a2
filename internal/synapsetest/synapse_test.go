//go:build synapse

package synapsetest

import (
	"context"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/signing"
)

// TestStartRotateRestart starts a real Synapse, checks it publishes the harness's key, rotates the
// key and checks the old one is then listed as old, and the admin token still works. PostgreSQL
// runs only with -long (cmd/shim's TestRealSynapsePostgres starts Synapse on it in CI).
func TestStartRotateRestart(t *testing.T) {
	kinds := []bool{false}
	if *long {
		kinds = append(kinds, true)
	}
	for _, pg := range kinds {
		name := "sqlite"
		if pg {
			name = "postgres"
		}
		t.Run(name, func(t *testing.T) {
			s := Start(t, Options{Postgres: pg})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if s.Version == "" || s.AdminToken == "" {
				t.Fatalf("version %q, admin token set %v", s.Version, s.AdminToken != "")
			}
			first := s.Keys()[0]
			doc := keyDoc(ctx, t, s)
			if got := doc.VerifyKeys[string(first.ID)].Key; got != signing.EncodeBase64(first.PublicKey()) {
				t.Fatalf("published key %s = %q, want the harness's %s", first.ID, got, first)
			}
			var who struct {
				UserID string `json:"user_id"`
			}
			if err := s.Do(ctx, "GET", "/_matrix/client/v3/account/whoami", s.AdminToken, nil, &who); err != nil || who.UserID != s.AdminUserID {
				t.Fatalf("whoami = %q, %v; want %s", who.UserID, err, s.AdminUserID)
			}
			second, err := s.RotateKey()
			if err != nil {
				t.Fatal(err)
			}
			doc = keyDoc(ctx, t, s)
			if _, ok := doc.VerifyKeys[string(second.ID)]; !ok {
				t.Fatalf("after rotation %s is not in verify_keys: %+v", second.ID, doc)
			}
			if got := doc.OldVerifyKeys[string(first.ID)].Key; got != signing.EncodeBase64(first.PublicKey()) {
				t.Fatalf("after rotation old_verify_keys[%s] = %q, want %s", first.ID, got, first)
			}
			if err := s.Restart(); err != nil {
				t.Fatal(err)
			}
			if err := s.Do(ctx, "GET", "/_matrix/client/v3/account/whoami", s.AdminToken, nil, &who); err != nil {
				t.Fatalf("whoami after restart: %v", err)
			}
			if pg != (s.DatabaseDSN != "") || pg == (s.DatabasePath != "") {
				t.Fatalf("database: DSN %v path %q", s.DatabaseDSN != "", s.DatabasePath)
			}
			if !strings.HasPrefix(s.BaseURL, "http://127.0.0.1:") {
				t.Fatalf("BaseURL %s", s.BaseURL)
			}
		})
	}
}

var long = flag.Bool("long", false, "also start Synapse on PostgreSQL")

type keyDocument struct {
	VerifyKeys    map[string]struct{ Key string } `json:"verify_keys"`
	OldVerifyKeys map[string]struct{ Key string } `json:"old_verify_keys"`
}

func keyDoc(ctx context.Context, t *testing.T, s *Server) keyDocument {
	t.Helper()
	var d keyDocument
	if err := s.Do(ctx, "GET", "/_matrix/key/v2/server", "", nil, &d); err != nil {
		t.Fatal(err)
	}
	return d
}
