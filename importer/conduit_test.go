package importer

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
	"github.com/transition-matrix/transition-matrix/exportfmt"
	"github.com/transition-matrix/transition-matrix/internal/jsontest"
	"github.com/transition-matrix/transition-matrix/signing"
)

// synthSetup writes an export of n synthetic users (see fakeExport) with media for users 0 and 3,
// and a fresh Conduit database of the given version.
func synthSetup(t *testing.T, n, version int) (cfg Config, dbDir string, users []*exportfmt.UserFile, media *fakeMedia) {
	t.Helper()
	id := testIdentity()
	dir, devices := fakeExport(t, id, n)
	x, err := OpenExport(dir, testServer, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range x.Users {
		u, err := x.ReadUser(ref)
		if err != nil {
			t.Fatal(err)
		}
		users = append(users, u)
	}
	x.Close()
	media = &fakeMedia{files: map[string][]byte{}}
	for _, i := range []int{0, n - 1} {
		mid := fmt.Sprintf("avatar%d", i)
		body := bytes.Repeat([]byte{byte(i), 0xFF, 'x'}, 100+i)
		media.items = append(media.items, MediaItem{MediaID: mid, ContentType: "image/png", UploadName: "a b.png", UserID: users[i].UID, CreatedTS: 1700000000000, Size: int64(len(body))})
		media.files[mid] = body
	}
	media.items = append(media.items, MediaItem{MediaID: "quarantined", Quarantined: true})
	db := conduittest.FreshDB(t, testServer, version)
	cfg = Config{ExportDir: dir, Identity: id, OpenTarget: ConduitTarget(db, "", testServer), Sessions: &fakeSessions{devices}, Media: media, Jobs: 2}
	return cfg, db, users, media
}

func openReader(t *testing.T, dir string) *conduit.DB {
	t.Helper()
	db, err := conduit.Open(dir, conduit.Options{ServerName: testServer, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestImportIntoConduit imports synthetic users into fresh Conduit databases of every known
// version and reads every user back with the conduit reader.
func TestImportIntoConduit(t *testing.T) {
	for _, version := range []int{conduit.Version010, conduit.Version09} {
		t.Run(fmt.Sprint(version), func(t *testing.T) {
			cfg, dbDir, users, media := synthSetup(t, 5, version)
			r, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if r.Imported != 5 || r.Media.Carried != 2 || r.Rows.Total() == 0 {
				t.Fatalf("imported %d, media %+v, rows %v", r.Imported, r.Media, r.Rows)
			}
			db := openReader(t, dbDir)
			checkKeys(t, db, cfg.Identity)
			for i, u := range users {
				checkUser(t, db, u, &fakeSessions{map[string][]string{}}, i)
			}
			for _, it := range media.items {
				mf, ok, err := db.Media(testServer, it.MediaID)
				if err != nil {
					t.Fatal(err)
				}
				if it.Quarantined {
					if ok {
						t.Error("quarantined media was carried")
					}
					continue
				}
				if !ok || !bytes.Equal(mf.Content, media.files[it.MediaID]) || mf.ContentType != it.ContentType || mf.Filename != it.UploadName {
					t.Errorf("media %s: ok %v, %d bytes, %q %q", it.MediaID, ok, len(mf.Content), mf.ContentType, mf.Filename)
				}
				if version != conduit.Version09 && mf.Uploader != it.UserID {
					t.Errorf("media %s uploader %q", it.MediaID, mf.Uploader)
				}
			}
			c, err := db.Counter()
			if err != nil || c < 3 {
				t.Errorf("counter %d (%v), want ≥ 3, the highest backup version", c, err)
			}
			db.Close()

			again, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if again.Rows.Total() != 0 {
				t.Errorf("second run changed %v", again.Rows)
			}
		})
	}
}

// checkKeys checks the keypair and the server signing keys.
func checkKeys(t *testing.T, db *conduit.DB, id *signing.Identity) {
	t.Helper()
	v, seed, err := db.Keypair()
	if err != nil || v != id.SigningKey().ID.Version() || !bytes.Equal(seed, id.SigningKey().Seed) {
		t.Errorf("keypair %q (%v)", v, err)
	}
	doc, ok, err := db.ServerSigningKeys(id.ServerName)
	if err != nil || !ok {
		t.Fatalf("server signing keys: %v %v", ok, err)
	}
	if doc.VerifyKeys[string(id.SigningKey().ID)] != signing.EncodeBase64(id.SigningKey().PublicKey()) {
		t.Errorf("verify keys %v", doc.VerifyKeys)
	}
	for _, k := range id.OldKeys {
		if o := doc.OldVerifyKeys[string(k.ID)]; o.Key != signing.EncodeBase64(k.Public) || o.ExpiredTS != k.ExpiredTS {
			t.Errorf("old key %s = %+v", k.ID, o)
		}
	}
}

// checkUser compares what Conduit reads for u with the user file (and the synthetic sessions).
func checkUser(t *testing.T, db *conduit.DB, u *exportfmt.UserFile, _ *fakeSessions, _ int) {
	t.Helper()
	got, ok, err := db.User(u.UID)
	if err != nil || !ok {
		t.Fatalf("%s: %v %v", u.UID, ok, err)
	}
	switch {
	case u.Deactivated:
		if got.PasswordHash != "" {
			t.Errorf("%s deactivated but hash %q", u.UID, got.PasswordHash)
		}
	case u.PasswordHash == nil:
		if got.PasswordHash != UnusableHash {
			t.Errorf("%s password-less but hash %q", u.UID, got.PasswordHash)
		}
	case got.PasswordHash != *u.PasswordHash:
		t.Errorf("%s hash differs", u.UID)
	}
	var prof struct {
		DisplayName string `json:"displayname"`
		AvatarURL   string `json:"avatar_url"`
	}
	json.Unmarshal(u.Profile, &prof)
	if got.DisplayName != prof.DisplayName || got.AvatarURL != prof.AvatarURL {
		t.Errorf("%s profile %q %q, want %q %q", u.UID, got.DisplayName, got.AvatarURL, prof.DisplayName, prof.AvatarURL)
	}
	devs, err := db.Devices(u.UID)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != len(u.Devices) {
		t.Errorf("%s: %d devices, want %d", u.UID, len(devs), len(u.Devices))
	}
	tokens, _ := db.AccessTokens(u.UID)
	otks, _ := db.OneTimeKeys(u.UID)
	keys, _ := db.DeviceKeys(u.UID)
	for i, d := range devs {
		var want struct {
			DeviceID    string `json:"device_id"`
			DisplayName string `json:"display_name"`
			LastSeenIP  string `json:"last_seen_ip"`
			LastSeenTS  int64  `json:"last_seen_ts"`
		}
		json.Unmarshal(u.Devices[i], &want)
		if d.ID != want.DeviceID || d.DisplayName != want.DisplayName || d.LastSeenIP != want.LastSeenIP || d.LastSeenTS != want.LastSeenTS {
			t.Errorf("%s device %d = %+v, want %+v", u.UID, i, d, want)
		}
		switch {
		case u.Locked && tokens[d.ID] != "":
			t.Errorf("%s is locked, but device %s got a token", u.UID, d.ID)
		case !u.Locked && tokens[d.ID] != synthToken(u.UID, i):
			t.Errorf("%s device %s token not carried", u.UID, d.ID)
		}
		if len(otks[d.ID]) != 2 {
			t.Errorf("%s device %s: %d one-time keys", u.UID, d.ID, len(otks[d.ID]))
		}
		if !sameJSON(t, keys[d.ID], u.E2E.DeviceKeys[d.ID]) {
			t.Errorf("%s device %s keys differ", u.UID, d.ID)
		}
	}
	cs, err := db.CrossSigningKeys(u.UID)
	if err != nil {
		t.Fatal(err)
	}
	for usage, want := range map[string]json.RawMessage{"master": u.E2E.MasterKey, "self_signing": u.E2E.SelfSigningKey, "user_signing": u.E2E.UserSigningKey} {
		if !sameJSON(t, cs[usage], want) {
			t.Errorf("%s %s key differs", u.UID, usage)
		}
	}
	backups, err := db.Backups(u.UID)
	if err != nil {
		t.Fatal(err)
	}
	if kb := u.E2E.KeyBackup; kb != nil {
		if len(backups) != 1 || backups[0].Version != kb.Version || backups[0].Etag == 0 {
			t.Fatalf("%s backups %+v", u.UID, backups)
		}
		n := 0
		for room, sessions := range kb.Rooms {
			for sid, data := range sessions {
				n++
				if !sameJSON(t, backups[0].Sessions[room][sid], data) {
					t.Errorf("%s backup session %s differs", u.UID, sid)
				}
			}
		}
		if n == 0 {
			t.Fatal("test data has no backup sessions")
		}
	}
	ad, err := db.AccountData(u.UID)
	if err != nil {
		t.Fatal(err)
	}
	for typ, c := range u.AccountData.Global {
		if !sameJSON(t, ad[""][typ], c) {
			t.Errorf("%s global account data %s = %s, want %s", u.UID, typ, ad[""][typ], c)
		}
	}
	for room, m := range u.AccountData.Rooms {
		for typ, c := range m {
			if !sameJSON(t, ad[room][typ], c) {
				t.Errorf("%s account data %s in %s differs", u.UID, typ, room)
			}
		}
	}
	pushers, err := db.Pushers(u.UID)
	if err != nil {
		t.Fatal(err)
	}
	if len(pushers) != len(u.Pushers) {
		t.Errorf("%s: %d pushers, want %d", u.UID, len(pushers), len(u.Pushers))
	}
}

func TestImportDryRunWritesNothing(t *testing.T) {
	cfg, dbDir, _, _ := synthSetup(t, 3, conduit.Version010)
	cfg.DryRun = true
	before := snapshotDir(t, dbDir)
	r, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !r.DryRun || r.Rows.Total() == 0 || r.Rows["userid_password"] != 3 || r.Rows["userdeviceid_token"] != 4 {
		t.Errorf("dry run rows %v", r.Rows)
	}
	if after := snapshotDir(t, dbDir); !equalSnapshots(before, after) {
		t.Error("the dry run changed the database directory")
	}
}

// TestImportRefusesDatabase checks that a database of an unknown version, one in use, a missing
// one, and a truncated or tampered export are refused with a clear message, and that the
// database directory (rows, bytes, media) is byte-identical afterwards.
func TestImportRefusesDatabase(t *testing.T) {
	cases := []struct {
		name  string
		spoil func(t *testing.T, dir, exportDir string) func()
		want  []string
	}{
		{"unknown version", func(t *testing.T, dir, _ string) func() {
			conduittest.SetRaw(t, dir, "global", []byte("version"), binary.BigEndian.AppendUint64(nil, 19))
			return func() {}
		}, []string{"unknown Conduit database version", "19"}},
		{"in use", func(t *testing.T, dir, _ string) func() {
			return conduittest.HoldOpen(t, dir)
		}, []string{"in use", "stop Conduit"}},
		{"truncated export file", func(t *testing.T, _, exportDir string) func() {
			p := filepath.Join(exportDir, "users", exportfmt.Encode(synthUser(testServer, 1, 0, 0).UID)+".json")
			data, _ := os.ReadFile(p)
			os.WriteFile(p, data[:len(data)-100], 0o600)
			return func() {}
		}, []string{"users/%40user00001%3asynapse.test.json", "the manifest says", "truncated"}},
		{"tampered export file", func(t *testing.T, _, exportDir string) func() {
			p := filepath.Join(exportDir, "users", exportfmt.Encode(synthUser(testServer, 0, 0, 0).UID)+".json")
			data, _ := os.ReadFile(p)
			os.WriteFile(p, bytes.Replace(data, []byte("User 0"), []byte("User X"), 1), 0o600)
			return func() {}
		}, []string{"users/%40user00000%3asynapse.test.json", "sha256", "changed after the export"}},
		{"no database", func(t *testing.T, dir, _ string) func() {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
			return func() {}
		}, []string{"no Conduit database", "start Conduit once"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, dbDir, _, _ := synthSetup(t, 2, conduit.Version010)
			release := c.spoil(t, dbDir, cfg.ExportDir)
			defer release()
			before := snapshotDir(t, dbDir)
			r, err := Run(context.Background(), cfg)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrRefused) {
				t.Errorf("err %v is not a refusal", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if r.Imported != 0 || r.Rows.Total() != 0 {
				t.Errorf("report says %d imported, %v rows", r.Imported, r.Rows)
			}
			if after := snapshotDir(t, dbDir); !equalSnapshots(before, after) {
				t.Error("the refused database directory changed")
			}
		})
	}
}

// sameJSON reports whether a and b are the same JSON value (key order aside); nil equals nil.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	return jsontest.Canonical(t, a) == jsontest.Canonical(t, b)
}
