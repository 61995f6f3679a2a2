package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/signing"
)

func testIdentity() *signing.Identity {
	seed := make([]byte, 32)
	for i := range seed {
		seed[i] = byte(i + 1)
	}
	old := signing.Key{ID: "ed25519:a_old", Seed: make([]byte, 32)}
	return &signing.Identity{ServerName: testServer, Keys: []signing.Key{{ID: "ed25519:a_test", Seed: seed}},
		OldKeys: []signing.OldKey{{ID: old.ID, Public: old.PublicKey(), ExpiredTS: 1600000000000}}}
}

func publishedKeys(id *signing.Identity) map[string]exportfmt.PublicKey {
	keys := map[string]exportfmt.PublicKey{}
	for _, k := range id.Keys {
		keys[string(k.ID)] = exportfmt.PublicKey{Key: signing.EncodeBase64(k.PublicKey())}
	}
	for _, k := range id.OldKeys {
		ts := k.ExpiredTS
		keys[string(k.ID)] = exportfmt.PublicKey{Key: signing.EncodeBase64(k.Public), ExpiredTS: &ts}
	}
	return keys
}

// fakeExport writes an export of n synthetic users (user 1 has no password, user 2 is
// deactivated) and returns its directory and the users' devices.
func fakeExport(t *testing.T, id *signing.Identity, n int) (string, map[string][]string) {
	t.Helper()
	dir := t.TempDir()
	var users []*exportfmt.UserFile
	devices := map[string][]string{}
	for i := range n {
		u := synthUser(testServer, i, 2, 4)
		switch i {
		case 1:
			u.PasswordHash = nil
		case 2:
			u.Deactivated, u.PasswordHash, u.Devices, u.E2E.DeviceKeys = true, nil, nil, map[string]json.RawMessage{}
		case 4:
			u.Locked = true
		}
		for _, d := range u.Devices {
			var dev struct {
				DeviceID string `json:"device_id"`
			}
			json.Unmarshal(d, &dev)
			devices[u.UID] = append(devices[u.UID], dev.DeviceID)
		}
		users = append(users, u)
	}
	writeExport(t, dir, testServer, publishedKeys(id), users, nil, nil)
	return dir, devices
}

func TestRunWithFakeTarget(t *testing.T) {
	id := testIdentity()
	dir, devices := fakeExport(t, id, 5)
	target := newFakeTarget()
	media := &fakeMedia{
		items: []MediaItem{{MediaID: "abc", ContentType: "text/plain", Size: 3}, {MediaID: "bad", Quarantined: true}},
		files: map[string][]byte{"abc": []byte("abc"), "bad": []byte("x")},
	}
	cfg := Config{ExportDir: dir, Identity: id, OpenTarget: target.open, Sessions: &fakeSessions{devices}, Media: media, Jobs: 3}
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if r.Users != 5 || r.Imported != 5 || len(target.users) != 5 {
		t.Fatalf("users %d, imported %d, written %d", r.Users, r.Imported, len(target.users))
	}
	uid := func(i int) string { return synthUser(testServer, i, 0, 0).UID }
	if !slices.Equal(r.NoPassword, []string{uid(1)}) || !slices.Equal(r.Deactivated, []string{uid(2)}) {
		t.Errorf("no password %v, deactivated %v", r.NoPassword, r.Deactivated)
	}
	if want := []string{uid(0), uid(3), uid(4)}; !slices.Equal(r.PasswordReset, want) {
		t.Errorf("password reset %v, want %v", r.PasswordReset, want)
	}
	// The locked user 4 keeps no session: it must log in (and be locked on Conduit).
	if !slices.Equal(r.MustLogIn, []string{uid(4)}) || !r.SessionsCarried {
		t.Errorf("must log in %v with sessions", r.MustLogIn)
	}
	if len(r.Notes) != 1 || r.Notes[0].UserID != uid(4) || !strings.Contains(r.Notes[0].Text, "locked") {
		t.Errorf("notes %+v", r.Notes)
	}
	if r.Planned.AccessTokens != 6 || r.Planned.OneTimeKeys != 16 || r.FallbackKeys != 8 || r.Planned.BackupSessions != 20 {
		t.Errorf("planned %+v, fallback %d", r.Planned, r.FallbackKeys)
	}
	if got := target.users[uid(1)].PasswordHash; got != UnusableHash {
		t.Errorf("password-less user got hash %q", got)
	}
	if got := target.users[uid(2)]; got.PasswordHash != "" || got.PasswordKind != PasswordDeactivated {
		t.Errorf("deactivated user got hash %q", got.PasswordHash)
	}
	if got := target.users[uid(0)].Devices[1].AccessToken; got != synthToken(uid(0), 1) {
		t.Errorf("token of device 1 = %q", got)
	}
	if r.Media.Carried != 1 || len(r.Media.Skipped) != 1 || r.Media.Skipped[0].ID != "bad" {
		t.Errorf("media %+v", r.Media)
	}
	// Backup versions are 1 + i%3: the counter must end at least at 3.
	if target.counter != 3 {
		t.Errorf("counter raised to %d, want 3", target.counter)
	}
	if r.Rows.Total() == 0 || !target.closed {
		t.Errorf("rows %v, closed %v", r.Rows, target.closed)
	}

	again, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if again.Rows.Total() != 0 {
		t.Errorf("second run changed %v", again.Rows)
	}
}

func TestRunWithoutSessionsListsWhoMustLogIn(t *testing.T) {
	id := testIdentity()
	dir, _ := fakeExport(t, id, 4)
	target := newFakeTarget()
	r, err := Run(context.Background(), Config{ExportDir: dir, Identity: id, OpenTarget: target.open})
	if err != nil {
		t.Fatal(err)
	}
	// Everyone with a device (all but the deactivated user 2) must log in again.
	if len(r.MustLogIn) != 3 || slices.Contains(r.MustLogIn, synthUser(testServer, 2, 0, 0).UID) || r.SessionsCarried {
		t.Errorf("must log in = %v", r.MustLogIn)
	}
	if r.Planned.AccessTokens != 0 || !r.Media.NoSource {
		t.Errorf("planned %+v media %+v", r.Planned, r.Media)
	}
}

func TestRunDryRunWritesNothing(t *testing.T) {
	id := testIdentity()
	dir, devices := fakeExport(t, id, 3)
	target := newFakeTarget()
	r, err := Run(context.Background(), Config{ExportDir: dir, Identity: id, OpenTarget: target.open, Sessions: &fakeSessions{devices}, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !r.DryRun || r.Rows.Total() == 0 || r.Planned.AccessTokens != 4 {
		t.Errorf("dry run report: rows %v planned %+v", r.Rows, r.Planned)
	}
	if len(target.rows) != 0 || target.counter != 0 {
		t.Errorf("dry run wrote %d rows", len(target.rows))
	}
}

// TestRunRefusesBeforeWriting damages the export and the keys and checks that the target is
// never opened.
func TestRunRefusesBeforeWriting(t *testing.T) {
	id := testIdentity()
	cases := []struct {
		name   string
		damage func(t *testing.T, dir string, cfg *Config)
		want   string
	}{
		{"tampered user file", func(t *testing.T, dir string, cfg *Config) {
			p := filepath.Join(dir, "users", exportfmt.Encode(synthUser(testServer, 3, 0, 0).UID)+".json")
			data, _ := os.ReadFile(p)
			data[len(data)-5] ^= 0x20
			os.WriteFile(p, data, 0o600)
		}, "sha256"},
		{"unparsable device in a consistent file", func(t *testing.T, dir string, cfg *Config) {
			u := synthUser(testServer, 0, 1, 0)
			u.Devices = []json.RawMessage{json.RawMessage(`{"display_name":"no id"}`)}
			m := readManifestFile(t, dir)
			writeExport(t, dir, testServer, m.PublicKeys, []*exportfmt.UserFile{u}, nil, nil)
			// writeExport rewrote the manifest with only user 0: drop the other files.
			for i := 1; i < 4; i++ {
				os.Remove(filepath.Join(dir, "users", exportfmt.Encode(synthUser(testServer, i, 0, 0).UID)+".json"))
			}
		}, "has no device_id"},
		{"another signing key", func(t *testing.T, dir string, cfg *Config) {
			other := *id
			other.Keys = []signing.Key{{ID: "ed25519:a_other", Seed: make([]byte, 32)}}
			cfg.Identity = &other
		}, "not among the keys Synapse published"},
		{"a key with another public key", func(t *testing.T, dir string, cfg *Config) {
			other := *id
			other.Keys = []signing.Key{{ID: "ed25519:a_test", Seed: make([]byte, 32)}}
			cfg.Identity = &other
		}, "another public key"},
		{"an old key as signing key", func(t *testing.T, dir string, cfg *Config) {
			other := *id
			other.Keys = []signing.Key{{ID: "ed25519:a_old", Seed: make([]byte, 32)}}
			cfg.Identity = &other
		}, "an old key"},
		{"Conduit's server user", func(t *testing.T, dir string, cfg *Config) {
			u := synthUser(testServer, 0, 1, 0)
			u.UID = "@conduit:" + testServer
			m := readManifestFile(t, dir)
			for p := range m.Files {
				os.Remove(filepath.Join(dir, p))
			}
			writeExport(t, dir, testServer, m.PublicKeys, []*exportfmt.UserFile{u}, nil, nil)
		}, "Conduit's own server user"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, _ := fakeExport(t, id, 4)
			target := newFakeTarget()
			opened := false
			cfg := Config{ExportDir: dir, Identity: id, OpenTarget: func(dry bool) (Target, error) { opened = true; return target.open(dry) }}
			c.damage(t, dir, &cfg)
			r, err := Run(context.Background(), cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want a refusal mentioning %q", err, c.want)
			}
			if opened || target.calls != 0 {
				t.Errorf("the target was opened (%v) or written (%d calls)", opened, target.calls)
			}
			if r == nil || r.Imported != 0 {
				t.Errorf("report %+v", r)
			}
		})
	}
}

func TestRunNamesAFailedUser(t *testing.T) {
	id := testIdentity()
	dir, _ := fakeExport(t, id, 4)
	target := newFakeTarget()
	target.failUser = synthUser(testServer, 3, 0, 0).UID
	r, err := Run(context.Background(), Config{ExportDir: dir, Identity: id, OpenTarget: target.open})
	if err == nil || !strings.Contains(err.Error(), target.failUser) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("err = %v", err)
	}
	if r.Imported != 3 || len(r.Failed) != 1 || r.Failed[0].ID != target.failUser {
		t.Errorf("imported %d, failed %+v", r.Imported, r.Failed)
	}
}

func TestPlanKeysCarriesOldKeys(t *testing.T) {
	id := testIdentity()
	dir, _ := fakeExport(t, id, 1)
	m := readManifestFile(t, dir)
	p, err := planKeys(id, m)
	if err != nil {
		t.Fatal(err)
	}
	if p.ServerName != testServer || len(p.VerifyKeys) != 1 || p.VerifyKeys["ed25519:a_test"] != signing.EncodeBase64(id.Keys[0].PublicKey()) {
		t.Errorf("verify keys %v", p.VerifyKeys)
	}
	if old, ok := p.OldVerifyKeys["ed25519:a_old"]; !ok || old.ExpiredTS != 1600000000000 || old.Key != signing.EncodeBase64(id.OldKeys[0].Public) {
		t.Errorf("old keys %v", p.OldVerifyKeys)
	}
	if p.ValidUntilTS != m.FinishedAt.Add(KeyValidity).UnixMilli() || p.Version() != "a_test" {
		t.Errorf("valid until %d, version %q", p.ValidUntilTS, p.Version())
	}
	if !bytes.Equal(p.Seed, id.SigningKey().Seed) {
		t.Error("seed differs from the signing key's")
	}
}
