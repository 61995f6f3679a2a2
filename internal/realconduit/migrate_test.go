//go:build conduit

package realconduit

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
)

// envRecord, when set to a directory, makes the tests write their recordings of real Conduit
// there (internal/realconduit/testdata/<conduit version> is what the conformance test reads).
const envRecord = "TM_CONDUIT_RECORD"

// TestMigrationIntoRealConduit runs the whole migration from a real Synapse into a real patched
// Conduit (SQLite backend), with Conduit restarted in the middle of warm, then checks every user's
// view on Conduit against what the same user saw on Synapse.
func TestMigrationIntoRealConduit(t *testing.T) {
	bin := Bin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	syn := synapsetest.Start(t, synapsetest.Options{})
	seeded, err := Seed(ctx, syn, SeedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	users := append([]User(nil), seeded.Users...)
	users = append(users, User{ID: syn.AdminUserID, AccessToken: syn.AdminToken})
	if err := fillDeviceIDs(ctx, syn.BaseURL, users); err != nil {
		t.Fatal(err)
	}
	snap, err := TakeSnapshot(ctx, syn.BaseURL, syn.ServerName, users)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(snap.Users[0].Rooms[seeded.LargeRoom]); n < 300 {
		t.Fatalf("the seeded large room has %d events on Synapse, want ≥ 300", n)
	}

	// TM_CONDUIT_BACKEND=rocksdb (with SHIM_ROCKSDB naming the import's helper) runs the same
	// migration on Conduit's RocksDB backend; the binary must be built with it.
	m := NewMigration(t, SourceOf(syn), Options{Bin: bin, Backend: os.Getenv("TM_CONDUIT_BACKEND")})
	m.Recorder = NewRecorder()
	defer m.Recorder.Close()
	m.Run(ctx, nil)
	t.Logf("steps:\n%s", m.StepSummary())
	snap.Check(ctx, t, m.Conduit)

	if dir := os.Getenv(envRecord); dir != "" {
		if err := m.Record(ctx, dir, seeded); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFreshDatabase records (with TM_CONDUIT_RECORD) and checks what Conduit's first start
// writes: the tables the repository's conduit package expects, and an admin room.
func TestFreshDatabase(t *testing.T) {
	bin := Bin(t)
	s := New(t, Options{Bin: bin, ServerName: "fresh.test"})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	version, err := ConduitVersion(context.Background(), s.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	shape, err := ReadDBShape(s.DatabasePath, s.ServerName)
	if err != nil {
		t.Fatal(err)
	}
	if len(shape["alias_roomid"]) != 1 || shape["alias_roomid"][0] != "admins" {
		t.Errorf("alias_roomid of a fresh database is %v, want [admins]", shape["alias_roomid"])
	}
	if got := shape["userid_password"]; len(got) != 1 || got[0] != "@conduit" {
		t.Errorf("userid_password of a fresh database is %v, want [@conduit]", got)
	}
	t.Logf("Conduit %s: %d tables", version, len(shape))
	if dir := os.Getenv(envRecord); dir != "" {
		out := filepath.Join(dir, versionDir(version))
		if err := os.MkdirAll(out, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := WriteJSON(filepath.Join(out, "fresh-db.json"), shape); err != nil {
			t.Fatal(err)
		}
	}
}

// fillDeviceIDs asks whoami for every user's device.
func fillDeviceIDs(ctx context.Context, baseURL string, users []User) error {
	c := NewClient(baseURL)
	for i := range users {
		var who struct {
			DeviceID string `json:"device_id"`
		}
		if err := c.Do(ctx, "GET", "/_matrix/client/v3/account/whoami", users[i].AccessToken, nil, &who); err != nil {
			return err
		}
		users[i].DeviceID = who.DeviceID
	}
	return nil
}

var _ = json.Marshal
var _ = url.Values{}
