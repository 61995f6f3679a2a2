//go:build synapse

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	gmsl "github.com/matrix-org/gomatrixserverlib"
	"github.com/matrix-org/gomatrixserverlib/fclient"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/internal/conduitlike"
	"github.com/transition-matrix/transition-matrix/internal/conduitsim"
	"github.com/transition-matrix/transition-matrix/internal/synapsetest"
	"github.com/transition-matrix/transition-matrix/signing"
)

// realBed is a seeded real Synapse and a shim configuration pointing at it.
type realBed struct {
	s   *synapsetest.Server
	rec *synapsetest.Record
	cfg string // shim.yaml
	dir string
}

// newRealBed starts a real Synapse (TM_SYNAPSE_PYTHON), seeds it and writes a shim configuration
// that reads Synapse's own homeserver.yaml for the server name, the key and the old keys.
func newRealBed(t testing.TB, opts synapsetest.Options, seed synapsetest.SeedOptions) *realBed {
	t.Helper()
	s := synapsetest.Start(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	rec, err := synapsetest.Seed(ctx, s, seed)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Synapse %s seeded in %s: %d users, %d rooms; skipped: %v", rec.Version, time.Since(start).Round(time.Millisecond), len(rec.Users), len(rec.Rooms), rec.Skipped)
	var rooms struct {
		TotalRooms int `json:"total_rooms"`
	}
	if err := s.Do(ctx, "GET", "/_synapse/admin/v1/rooms?limit=1000", s.AdminToken, nil, &rooms); err != nil {
		t.Fatal(err)
	}
	if rooms.TotalRooms != len(rec.Rooms) || len(rec.KeyIDs) != 2 {
		t.Fatalf("Synapse holds %d rooms, the seeder's record %d; %d signing keys, want 2", rooms.TotalRooms, len(rec.Rooms), len(rec.KeyIDs))
	}
	if _, has12 := rec.Named["v12"]; has12 != s.SupportsRoomVersion("12") || has12 == (len(rec.Skipped) > 0) {
		t.Fatalf("v12 room seeded %v on Synapse %s; skipped %v", has12, s.Version, rec.Skipped)
	}
	b := &realBed{s: s, rec: rec, dir: t.TempDir()}
	if err := os.WriteFile(filepath.Join(b.dir, "admin_token"), []byte(s.AdminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.cfg = filepath.Join(b.dir, "shim.yaml")
	cfg := fmt.Sprintf("synapse_config: %s\nsynapse:\n  url: %s\n  admin_token_file: admin_token\nlisten: 127.0.0.1:0\ncache:\n  path: cache.db\nlog:\n  level: warn\n",
		s.ConfigPath, s.BaseURL)
	if err := os.WriteFile(b.cfg, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

// hostable are the seeded rooms Conduit can take over: a local member joined, version 3 or later.
func (b *realBed) hostable() []*synapsetest.Room {
	var out []*synapsetest.Room
	for _, r := range b.rec.Rooms {
		if r.LocalJoined > 0 && r.Version != "1" && r.Version != "2" {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RoomID < out[j].RoomID })
	return out
}

func (b *realBed) export(t *testing.T, parent string, j int) string {
	t.Helper()
	out := filepath.Join(parent, fmt.Sprintf("export-j%d", j))
	code, stdout, stderr := runShim(t, nil, "export", "-config", b.cfg, "-out", out, "-j", fmt.Sprint(j))
	if code != 0 {
		t.Fatalf("export: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, b.s.AdminToken) {
		t.Error("export printed the admin token")
	}
	return out
}

// TestRealSynapse runs every command against one seeded real Synapse (SQLite).
func TestRealSynapse(t *testing.T) {
	b := newRealBed(t, synapsetest.Options{}, synapsetest.SeedOptions{})
	var exportDir string
	parent := t.TempDir()
	t.Run("check", func(t *testing.T) { testRealCheck(t, b) })
	t.Run("export", func(t *testing.T) {
		exportDir = b.export(t, parent, 4)
		if diffs := compareExport(b.rec, exportDir); len(diffs) > 0 {
			t.Fatalf("the export differs from what was seeded:\n%s", strings.Join(diffs, "\n"))
		}
	})
	t.Run("export drops a fact", func(t *testing.T) {
		if exportDir == "" {
			t.Skip("no export")
		}
		testDroppedFactIsCaught(t, b, exportDir)
	})
	t.Run("import", func(t *testing.T) {
		if exportDir == "" {
			t.Skip("no export")
		}
		testRealImport(t, b, exportDir, b.s.DatabasePath)
	})
	t.Run("archive", func(t *testing.T) { testRealArchive(t, b) })
	t.Run("serve", func(t *testing.T) { testRealServe(t, b) })
	t.Run("cutover and verify -offline", func(t *testing.T) {
		if exportDir == "" {
			t.Skip("no export")
		}
		testRealCutover(t, b, exportDir)
	})
}

// testRealCutover imports the export, joins and warms every room on a simulated patched Conduit
// through shim serve, stops Synapse and runs shim verify -offline.
func testRealCutover(t *testing.T, b *realBed, exportDir string) {
	if err := b.s.Restart(); err != nil { // the serve test stopped it
		t.Fatal(err)
	}
	cfg := filepath.Join(b.dir, "cutover.yaml")
	data, err := os.ReadFile(b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	dbDir := conduittest.FreshDB(t, b.rec.ServerName, conduit.Version010)
	if code, stdout, stderr := runShim(t, nil, "import", "conduit", "-config", cfg, "-export", exportDir, "-db", dbDir, "-synapse-db", b.s.DatabasePath); code != 0 {
		t.Fatalf("import: exit %d\n%s\n%s", code, stdout, stderr)
	}
	shimURL, stopServe := startStoppableServe(t, cfg)
	db, err := conduit.Open(dbDir, conduit.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	id := b.s.Identity()
	keys := staticKeys(id)
	var users []string
	for _, u := range b.rec.Users {
		if !u.Deactivated {
			users = append(users, u.UserID)
		}
	}
	sort.Strings(users)
	target := conduitsim.Start(t, conduitsim.Options{Identity: id, Keys: keys, ShimURL: shimURL, ASToken: testASToken, UserData: db, Users: users})
	addTarget(t, cfg, target.URL)
	for _, args := range [][]string{{"rejoin", "-config", cfg}, {"warm", "-config", cfg}} {
		if code, stdout, stderr := runShim(t, nil, args...); code != 0 {
			t.Fatalf("%s: exit %d\n%s\n%s", args[0], code, stdout, stderr)
		}
	}
	for _, r := range b.hostable() {
		info, ok := target.Room(r.RoomID)
		if !ok || !info.ReachedCreate {
			t.Errorf("room %s (v%s): held %v, m.room.create reached %v", r.RoomID, r.Version, ok, ok && info.ReachedCreate)
		}
	}
	// Synapse shut down and the shim removed, as after the cutover.
	stopServe()
	if err := b.s.Stop(); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runShim(t, nil, "verify", "-config", cfg, "-export", exportDir, "-offline", "-out", filepath.Join(t.TempDir(), "report"))
	if code != 0 {
		t.Fatalf("verify -offline: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestRealSynapsePostgres seeds a smaller world into a Synapse on PostgreSQL and imports its
// sessions and one-time keys from that database.
func TestRealSynapsePostgres(t *testing.T) {
	b := newRealBed(t, synapsetest.Options{Postgres: true}, synapsetest.SeedOptions{Messages: 10})
	dir := b.export(t, t.TempDir(), 4)
	if diffs := compareExport(b.rec, dir); len(diffs) > 0 {
		t.Fatalf("the export differs from what was seeded:\n%s", strings.Join(diffs, "\n"))
	}
	testRealImport(t, b, dir, b.s.DatabaseDSN)
}

func testRealCheck(t *testing.T, b *realBed) {
	v1 := b.rec.Named["v1"]
	code, text, stderr := runShim(t, nil, "check", "-config", b.cfg, "-out", t.TempDir())
	if code != 1 || !strings.Contains(text, v1) || !strings.Contains(text, "room_version_unsupported") {
		t.Fatalf("check: exit %d, want 1 naming the v1 room %s\n%s\n%s", code, v1, text, stderr)
	}
	if !strings.Contains(text, "Synapse "+strings.Fields(b.rec.Version)[0]) {
		t.Errorf("check does not report Synapse %s:\n%s", b.rec.Version, text)
	}
	code, text, stderr = runShim(t, nil, "check", "-config", b.cfg, "-out", t.TempDir(), "-accept", v1)
	if code != 0 {
		t.Fatalf("check -accept %s: exit %d, want 0\n%s\n%s", v1, code, text, stderr)
	}
}

// readJSON decodes one export file.
func readJSON(dir, kind, id string, out any) error {
	data, err := os.ReadFile(filepath.Join(dir, kind, exportfmt.Encode(id)+".json"))
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

// compareExport lists every seeded fact the export lacks or holds differently.
func compareExport(rec *synapsetest.Record, dir string) []string {
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	for _, u := range rec.Users {
		var got exportfmt.UserFile
		if err := readJSON(dir, "users", u.UserID, &got); err != nil {
			add("user %s: %v", u.UserID, err)
			continue
		}
		if got.UID != u.UserID || got.Admin != u.Admin || got.Deactivated != u.Deactivated || got.Locked != u.Locked || got.ShadowBanned != u.ShadowBanned {
			add("user %s: uid %s admin %v deactivated %v locked %v shadow_banned %v; seeded admin %v deactivated %v locked %v shadow_banned %v",
				u.UserID, got.UID, got.Admin, got.Deactivated, got.Locked, got.ShadowBanned, u.Admin, u.Deactivated, u.Locked, u.ShadowBanned)
		}
		if hasPW := got.PasswordHash != nil && *got.PasswordHash != ""; hasPW != (u.Password != "" && !u.Deactivated) {
			add("user %s: password hash present %v, seeded with a password %v (deactivated %v)", u.UserID, hasPW, u.Password != "", u.Deactivated)
		}
		if !u.Deactivated {
			var p struct {
				DisplayName string `json:"displayname"`
				AvatarURL   string `json:"avatar_url"`
			}
			_ = json.Unmarshal(got.Profile, &p)
			if u.DisplayName != "" && p.DisplayName != u.DisplayName {
				add("user %s: displayname %q, seeded %q", u.UserID, p.DisplayName, u.DisplayName)
			}
			if p.AvatarURL != u.AvatarURL {
				add("user %s: avatar_url %q, seeded %q", u.UserID, p.AvatarURL, u.AvatarURL)
			}
		}
		devices := map[string]string{}
		for _, raw := range got.Devices {
			var d struct {
				DeviceID    string  `json:"device_id"`
				DisplayName *string `json:"display_name"`
			}
			_ = json.Unmarshal(raw, &d)
			if d.DisplayName != nil {
				devices[d.DeviceID] = *d.DisplayName
			} else {
				devices[d.DeviceID] = ""
			}
		}
		for id, d := range u.Devices {
			name, ok := devices[id]
			if !ok {
				add("user %s: device %s missing", u.UserID, id)
			} else if d.DisplayName != "" && name != d.DisplayName {
				add("user %s: device %s named %q, seeded %q", u.UserID, id, name, d.DisplayName)
			}
			if d.DeviceKeys != nil {
				compareSignedKey(add, fmt.Sprintf("user %s: device_keys of %s", u.UserID, id), d.DeviceKeys, got.E2E.DeviceKeys[id])
			}
		}
		for name, want := range u.CrossSigning {
			var gotKey json.RawMessage
			switch name {
			case "master":
				gotKey = got.E2E.MasterKey
			case "self_signing":
				gotKey = got.E2E.SelfSigningKey
			case "user_signing":
				gotKey = got.E2E.UserSigningKey
			}
			compareSignedKey(add, fmt.Sprintf("user %s: %s key", u.UserID, name), want, gotKey)
		}
		if u.BackupVersion != "" {
			kb := got.E2E.KeyBackup
			if kb == nil || kb.Version != u.BackupVersion || !sameJSON(kb.AuthData, u.BackupAuth) {
				add("user %s: key backup %+v, seeded version %s", u.UserID, kb, u.BackupVersion)
			} else {
				for room, sessions := range u.BackupKeys {
					for sid, data := range sessions {
						if !sameJSON(kb.Rooms[room][sid], data) {
							add("user %s: backup session %s/%s is %s, seeded %s", u.UserID, room, sid, kb.Rooms[room][sid], data)
						}
					}
				}
			}
		}
		for typ, content := range u.AccountData {
			if !sameJSON(got.AccountData.Global[typ], content) {
				add("user %s: global account data %s is %s, seeded %s", u.UserID, typ, got.AccountData.Global[typ], content)
			}
		}
		for room, byType := range u.RoomData {
			for typ, content := range byType {
				if !sameJSON(got.AccountData.Rooms[room][typ], content) {
					add("user %s: account data %s in %s is %s, seeded %s", u.UserID, typ, room, got.AccountData.Rooms[room][typ], content)
				}
			}
		}
		for room, tags := range u.Tags {
			var tag struct {
				Tags map[string]json.RawMessage `json:"tags"`
			}
			_ = json.Unmarshal(got.AccountData.Rooms[room]["m.tag"], &tag)
			for _, name := range tags {
				if _, ok := tag.Tags[name]; !ok {
					add("user %s: tag %s on %s missing (m.tag %s)", u.UserID, name, room, got.AccountData.Rooms[room]["m.tag"])
				}
			}
		}
		if u.PushRuleID != "" && !strings.Contains(string(got.AccountData.Global["m.push_rules"]), `"`+u.PushRuleID+`"`) {
			add("user %s: push rule %s missing from m.push_rules", u.UserID, u.PushRuleID)
		}
		if u.PusherKey != "" {
			found := false
			for _, p := range got.Pushers {
				var pp struct {
					PushKey string `json:"pushkey"`
					Kind    string `json:"kind"`
				}
				_ = json.Unmarshal(p, &pp)
				found = found || (pp.PushKey == u.PusherKey && pp.Kind == "http")
			}
			if !found {
				add("user %s: http pusher %s missing", u.UserID, u.PusherKey)
			}
		}
	}
	for _, r := range rec.Rooms {
		var got exportfmt.RoomFile
		if err := readJSON(dir, "rooms", r.RoomID, &got); err != nil {
			add("room %s: %v", r.RoomID, err)
			continue
		}
		if got.RoomVersion != r.Version {
			add("room %s: version %s, seeded %s", r.RoomID, got.RoomVersion, r.Version)
		}
		if r.LocalJoined == 0 {
			// No local member: Synapse's federation API answers 403 for the room, so the export
			// holds what the admin API still shows; its state is not compared.
			if got.JoinedLocalMembers != 0 {
				add("room %s: %d joined local members, seeded none", r.RoomID, got.JoinedLocalMembers)
			}
			continue
		}
		for user, m := range r.Members {
			if got.LocalMembers[user] != m {
				add("room %s: %s is %q, seeded %q", r.RoomID, user, got.LocalMembers[user], m)
			}
		}
		if got.JoinedLocalMembers != r.LocalJoined {
			add("room %s: %d joined local members, seeded %d", r.RoomID, got.JoinedLocalMembers, r.LocalJoined)
		}
		if r.Alias != "" && (got.CanonicalAlias == nil || *got.CanonicalAlias != r.Alias) {
			add("room %s: canonical alias %v, seeded %s", r.RoomID, got.CanonicalAlias, r.Alias)
		}
		if got.Published != r.Public {
			add("room %s: published %v, seeded %v", r.RoomID, got.Published, r.Public)
		}
		state := map[string]json.RawMessage{}
		for _, raw := range got.State {
			var e struct {
				Type     string          `json:"type"`
				StateKey string          `json:"state_key"`
				Content  json.RawMessage `json:"content"`
			}
			_ = json.Unmarshal(raw, &e)
			state[e.Type+"|"+e.StateKey] = e.Content
		}
		var content struct {
			Name, Topic, Algorithm string
			ReplacementRoom        string `json:"replacement_room"`
		}
		want := map[string]string{}
		if r.Name != "" {
			want["m.room.name|"] = r.Name
		}
		if r.Topic != "" {
			want["m.room.topic|"] = r.Topic
		}
		if r.Encrypted {
			want["m.room.encryption|"] = "m.megolm.v1.aes-sha2"
		}
		if r.Successor != "" {
			want["m.room.tombstone|"] = r.Successor
		}
		for key, value := range want {
			content = struct {
				Name, Topic, Algorithm string
				ReplacementRoom        string `json:"replacement_room"`
			}{}
			_ = json.Unmarshal(state[key], &content)
			if got := content.Name + content.Topic + content.Algorithm + content.ReplacementRoom; got != value {
				add("room %s: state %s holds %q, seeded %q", r.RoomID, key, got, value)
			}
		}
		if len(got.AuthChain) == 0 || len(got.ForwardExtremities) == 0 {
			add("room %s: auth chain of %d, %d forward extremities", r.RoomID, len(got.AuthChain), len(got.ForwardExtremities))
		}
	}
	sort.Strings(diffs)
	return diffs
}

// compareSignedKey checks the exported key object holds the seeded one's keys and every one of
// its signatures.
func compareSignedKey(add func(string, ...any), what string, want, got json.RawMessage) {
	var w, g struct {
		Keys       map[string]string            `json:"keys"`
		Signatures map[string]map[string]string `json:"signatures"`
	}
	if err := json.Unmarshal(got, &g); err != nil || len(got) == 0 {
		add("%s: missing from the export", what)
		return
	}
	_ = json.Unmarshal(want, &w)
	for id, k := range w.Keys {
		if g.Keys[id] != k {
			add("%s: key %s is %q, seeded %q", what, id, g.Keys[id], k)
		}
	}
	for entity, sigs := range w.Signatures {
		for id, sig := range sigs {
			if g.Signatures[entity][id] != sig {
				add("%s: signature %s/%s missing", what, entity, id)
			}
		}
	}
}

func sameJSON(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// testDroppedFactIsCaught removes seeded facts from a copy of the export, one at a time, and
// checks compareExport names each.
func testDroppedFactIsCaught(t *testing.T, b *realBed, dir string) {
	alice := "@alice:" + b.rec.ServerName
	cases := []struct {
		name, file, want string
		edit             func(m map[string]any)
	}{
		{"a device", "users/" + exportfmt.Encode(alice) + ".json", "device ALICEDEV2 missing", func(m map[string]any) {
			var kept []any
			for _, d := range m["devices"].([]any) {
				if d.(map[string]any)["device_id"] != "ALICEDEV2" {
					kept = append(kept, d)
				}
			}
			m["devices"] = kept
		}},
		{"the master key", "users/" + exportfmt.Encode(alice) + ".json", "master key: missing", func(m map[string]any) {
			delete(m["e2e"].(map[string]any), "master_key")
		}},
		{"a room's topic", "rooms/" + exportfmt.Encode(b.rec.Named["v10"]) + ".json", "m.room.topic", func(m map[string]any) {
			var kept []any
			for _, e := range m["state"].([]any) {
				if e.(map[string]any)["type"] != "m.room.topic" {
					kept = append(kept, e)
				}
			}
			m["state"] = kept
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cp := t.TempDir()
			for _, sub := range []string{"users", "rooms"} {
				if err := os.CopyFS(filepath.Join(cp, sub), os.DirFS(filepath.Join(dir, sub))); err != nil {
					t.Fatal(err)
				}
			}
			path := filepath.Join(cp, c.file)
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			c.edit(m)
			data, _ = json.Marshal(m)
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			diffs := compareExport(b.rec, cp)
			if len(diffs) != 1 || !strings.Contains(diffs[0], c.want) {
				t.Fatalf("dropping %s: the comparison reports %q, want one difference naming %q", c.name, diffs, c.want)
			}
		})
	}
}

// testRealImport imports the export and Synapse's database (a SQLite path or a PostgreSQL DSN)
// into a fresh Conduit database and checks every seeded session, device and one-time key arrived.
func testRealImport(t *testing.T, b *realBed, exportDir, synapseDB string) {
	db := conduittest.FreshDB(t, b.rec.ServerName, conduit.Version010)
	code, stdout, stderr := runShim(t, nil, "import", "conduit", "-config", b.cfg, "-export", exportDir, "-db", db, "-synapse-db", synapseDB, "-media-store", b.s.MediaStorePath)
	if code != 0 {
		t.Fatalf("import: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if strings.Contains(stdout+stderr, b.s.AdminToken) {
		t.Error("import printed the admin token")
	}
	c, err := conduit.Open(db, conduit.Options{ServerName: b.rec.ServerName, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tokens, otks := 0, 0
	for _, u := range b.rec.Users {
		got, err := c.AccessTokens(u.UserID)
		if err != nil {
			t.Fatal(err)
		}
		devs, err := c.Devices(u.UserID)
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, d := range devs {
			have[d.ID] = true
		}
		keys, err := c.OneTimeKeys(u.UserID)
		if err != nil {
			t.Fatal(err)
		}
		for id, d := range u.Devices {
			if !have[id] {
				t.Errorf("%s: device %s not imported", u.UserID, id)
			}
			if u.Locked {
				// Conduit has no locked accounts: the import carries no session of a locked user.
				if got[id] != "" {
					t.Errorf("%s is locked, yet device %s's token was carried", u.UserID, id)
				}
				continue
			}
			if d.AccessToken != "" && got[id] != d.AccessToken {
				t.Errorf("%s: device %s: access token not carried", u.UserID, id)
			} else if d.AccessToken != "" {
				tokens++
			}
			for kid := range d.OneTimeKeys {
				if _, ok := keys[id][kid]; !ok {
					t.Errorf("%s: device %s: one-time key %s not imported (have %d for it)", u.UserID, id, kid, len(keys[id]))
				} else {
					otks++
				}
			}
		}
	}
	for mxc, data := range b.rec.Media {
		mediaID := mxc[strings.LastIndex(mxc, "/")+1:]
		mf, ok, err := c.Media(b.rec.ServerName, mediaID)
		if err != nil {
			t.Fatal(err)
		}
		if !ok || string(mf.Content) != string(data) {
			t.Errorf("media %s not carried (found %v)", mxc, ok)
		}
	}
	if tokens == 0 || otks == 0 {
		t.Fatalf("%d tokens, %d one-time keys checked", tokens, otks)
	}
	t.Logf("import: %d access tokens, %d one-time keys, %d media checked", tokens, otks, len(b.rec.Media))
}

func testRealArchive(t *testing.T, b *realBed) {
	code, stdout, stderr := runShim(t, nil, "archive", "-config", b.cfg, "-j", "4")
	if code != 0 {
		t.Fatalf("archive: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, r := range b.hostable() {
		if !strings.Contains(stdout, r.RoomID) {
			t.Errorf("archive summary does not name %s:\n%s", r.RoomID, stdout)
		}
	}
}

// testRealServe runs shim serve and backfills every hostable room through it with the Conduit-like
// consumer, comparing with Synapse's database; then again with Synapse stopped, from the cache.
func testRealServe(t *testing.T, b *realBed) {
	shimURL := startServe(t, b.cfg)
	id := b.s.Identity()
	keys := staticKeys(id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	want := map[string]map[string]string{}
	heads := map[string][]string{}
	for _, r := range b.hostable() {
		ids, err := b.s.EventIDs(ctx, r.RoomID)
		if err != nil {
			t.Fatal(err)
		}
		want[r.RoomID] = ids
		var fx []struct {
			EventID string `json:"event_id"`
		}
		var resp struct {
			Results *[]struct {
				EventID string `json:"event_id"`
			} `json:"results"`
		}
		resp.Results = &fx
		if err := b.s.Do(ctx, "GET", "/_synapse/admin/v1/rooms/"+synapsetest.PathEscape(r.RoomID)+"/forward_extremities", b.s.AdminToken, nil, &resp); err != nil {
			t.Fatal(err)
		}
		for _, e := range fx {
			heads[r.RoomID] = append(heads[r.RoomID], e.EventID)
		}
	}
	backfill := func(t *testing.T) {
		for _, r := range b.hostable() {
			redacted := map[string]bool{}
			for _, e := range r.Redacted {
				redacted[e] = true
			}
			c := &conduitlike.Consumer{Identity: id, Destination: id.ServerName, BaseURL: shimURL, Keys: keys, HTTP: &http.Client{Timeout: time.Minute}}
			res, err := c.BackfillRoom(ctx, r.RoomID, r.Version, heads[r.RoomID])
			if err != nil {
				t.Fatalf("room %s (v%s): backfill through the shim: %v", r.RoomID, r.Version, err)
			}
			if !res.ReachedCreate {
				t.Errorf("room %s: m.room.create not reached after %d events", r.RoomID, len(res.Timeline))
			}
			got := map[string]bool{}
			for _, e := range res.Timeline {
				got[e.EventID] = true
				if e.Outcome == conduitlike.Redacted && redacted[e.EventID] {
					continue // redacted by the seeder: Synapse serves it pruned, its content hash fails
				}
				if e.Outcome != conduitlike.Verified {
					t.Errorf("room %s: event %s (%s) %s: %s", r.RoomID, e.EventID, e.Type, e.Outcome, e.Reason)
				}
				if _, ok := want[r.RoomID][e.EventID]; !ok {
					t.Errorf("room %s: event %s (%s) is not in Synapse's database", r.RoomID, e.EventID, e.Type)
				}
			}
			for e, typ := range want[r.RoomID] {
				if !got[e] {
					t.Errorf("room %s: Synapse's event %s (%s) was not backfilled", r.RoomID, e, typ)
				}
			}
			for _, e := range b.rec.Rotation[r.RoomID] {
				if !got[e] {
					t.Errorf("room %s: event %s, signed with the new key, not backfilled", r.RoomID, e)
				}
			}
		}
	}
	t.Run("Synapse up", backfill)
	t.Run("joins", func(t *testing.T) { testRealJoins(t, b, shimURL, keys) })
	t.Run("Synapse stopped, from the cache", func(t *testing.T) {
		if err := b.s.Stop(); err != nil {
			t.Fatal(err)
		}
		backfill(t)
	})
}

// testRealJoins asks the shim for make_join and send_join in the v10, v11 and (where Synapse has
// it) v12 rooms as Conduit does, and checks the answers with gomatrixserverlib and against
// Synapse's current state.
func testRealJoins(t *testing.T, b *realBed, shimURL string, keys conduitlike.StaticKeys) {
	id := b.s.Identity()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := &conduitlike.Consumer{Identity: id, Destination: id.ServerName, BaseURL: shimURL, Keys: keys, HTTP: &http.Client{Timeout: time.Minute}}
	versions := []string{"6", "7", "8", "9", "10", "11", "12", "3", "4", "5"}
	joined := 0
	for _, role := range []string{"v10", "v11", "v12"} {
		roomID, ok := b.rec.Named[role]
		if !ok {
			if b.s.SupportsRoomVersion(strings.TrimPrefix(role, "v")) {
				t.Errorf("no %s room seeded on Synapse %s", role, b.rec.Version)
			}
			continue
		}
		r := b.rec.Rooms[roomID]
		user := r.Creator // as Conduit's rejoin does: a local member joins again, at Synapse's state
		q := url.Values{"ver": versions}
		var mj struct {
			RoomVersion string          `json:"room_version"`
			Event       json.RawMessage `json:"event"`
		}
		if err := c.Request(ctx, "GET", "/_matrix/federation/v1/make_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(user)+"?"+q.Encode(), nil, &mj); err != nil {
			t.Fatalf("%s: make_join: %v", role, err)
		}
		if mj.RoomVersion != r.Version {
			t.Fatalf("%s: make_join room_version %q", role, mj.RoomVersion)
		}
		// The join as the joining server makes it from the template: content and timestamp set,
		// hashed and signed with the server's current key.
		var tmpl map[string]any
		if err := json.Unmarshal(mj.Event, &tmpl); err != nil {
			t.Fatal(err)
		}
		tmpl["content"] = map[string]any{"membership": "join", "displayname": "Joiner"}
		tmpl["origin_server_ts"] = time.Now().UnixMilli()
		unsignedJoin, _ := json.Marshal(tmpl)
		signedJoin, err := signing.SignEvent(r.Version, id.ServerName, id.SigningKey(), unsignedJoin)
		if err != nil {
			t.Fatalf("%s: signing the join: %v", role, err)
		}
		ver := gmsl.MustGetRoomVersion(gmsl.RoomVersion(r.Version))
		join, err := ver.NewEventFromTrustedJSON(signedJoin, false)
		if err != nil {
			t.Fatalf("%s: the signed join does not parse: %v", role, err)
		}
		var raw json.RawMessage
		if err := c.Request(ctx, "PUT", "/_matrix/federation/v2/send_join/"+url.PathEscape(roomID)+"/"+url.PathEscape(join.EventID()), join.JSON(), &raw); err != nil {
			t.Fatalf("%s: send_join: %v", role, err)
		}
		var resp fclient.RespSendJoin
		if err := json.Unmarshal(raw, &resp); err != nil {
			t.Fatal(err)
		}
		missingAuth := func(gmsl.RoomVersion, []string) ([]gmsl.PDU, error) {
			return nil, fmt.Errorf("an auth event is missing from the answer")
		}
		checked, err := gmsl.CheckSendJoinResponse(ctx, gmsl.RoomVersion(r.Version), &resp, conduitlike.Verifier{Keys: keys}, join, missingAuth, conduitlike.UserIDForSender)
		if err != nil {
			t.Fatalf("%s: gomatrixserverlib's send_join check: %v", role, err)
		}
		if len(checked.GetStateEvents()) != len(resp.StateEvents) || len(checked.GetAuthEvents()) != len(resp.AuthEvents) {
			t.Fatalf("%s: gomatrixserverlib dropped events: state %d of %d, auth chain %d of %d", role,
				len(checked.GetStateEvents()), len(resp.StateEvents), len(checked.GetAuthEvents()), len(resp.AuthEvents))
		}
		var state struct {
			State []struct {
				EventID string `json:"event_id"`
			} `json:"state"`
		}
		if err := b.s.Do(ctx, "GET", "/_synapse/admin/v1/rooms/"+url.PathEscape(roomID)+"/state", b.s.AdminToken, nil, &state); err != nil {
			t.Fatal(err)
		}
		want := map[string]bool{}
		for _, e := range state.State {
			want[e.EventID] = true
		}
		got := map[string]bool{}
		for _, raw := range resp.StateEvents {
			eid, err := signing.EventID(r.Version, raw)
			if err != nil {
				t.Fatal(err)
			}
			got[eid] = true
			if !want[eid] {
				t.Errorf("%s: send_join state holds %s, not in Synapse's current state", role, eid)
			}
		}
		if len(got) != len(want) {
			t.Errorf("%s: send_join answered %d state events, Synapse's current state has %d", role, len(got), len(want))
		}
		joined++
	}
	if joined < 2 {
		t.Fatalf("joined %d rooms", joined)
	}
}

// staticKeys are Synapse's keys as the Conduit-like consumer trusts them: the old ones valid for
// another hour, so that events they signed still verify.
func staticKeys(id *signing.Identity) conduitlike.StaticKeys {
	keys := conduitlike.StaticKeys{}
	for i, k := range id.Keys {
		var expired int64
		if i > 0 {
			expired = time.Now().Add(time.Hour).UnixMilli()
		}
		keys.Add(id.ServerName, string(k.ID), k.PublicKey(), expired)
	}
	return keys
}
