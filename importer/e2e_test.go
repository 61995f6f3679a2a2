package importer

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/transition-matrix/transition-matrix/conduit"
	"github.com/transition-matrix/transition-matrix/conduit/conduittest"
	"github.com/transition-matrix/transition-matrix/export"
	"github.com/transition-matrix/transition-matrix/internal/pgtest"
	"github.com/transition-matrix/transition-matrix/internal/synapsesim"
	"github.com/transition-matrix/transition-matrix/internal/world"
	"github.com/transition-matrix/transition-matrix/mediastore"
	"github.com/transition-matrix/transition-matrix/mediastore/mediastoretest"
	"github.com/transition-matrix/transition-matrix/synapseclient"
	"github.com/transition-matrix/transition-matrix/synapsedb"
	"github.com/transition-matrix/transition-matrix/synapsedb/synapsedbtest"
)

// e2eWorld is small but has every fixed user (admin, alice … erin, a bot, a deactivated and a
// password-less user), media with thumbnails and a quarantined upload, and rotated keys.
var e2eWorld = world.Options{Seed: 21, Users: 2, Rooms: 1, MessagesPerRoom: 5, OldKeyEvents: 2}

// exportWorld serves w from a simulated Synapse and exports it with export.Run.
func exportWorld(t *testing.T, w *world.World) (dir string, sim *synapsesim.Server) {
	t.Helper()
	sim = synapsesim.Start(t, synapsesim.Options{World: w})
	dir = filepath.Join(t.TempDir(), "export")
	s, err := export.Run(context.Background(), export.Config{Dir: dir, Synapse: synapseclient.Config{
		BaseURL: sim.URL, ServerName: w.ServerName, AdminToken: sim.AdminToken(), Identity: sim.Identity(),
		BaseBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Timeout: 10 * time.Second}})
	if err != nil || !s.Complete {
		t.Fatalf("export: %v", err)
	}
	return dir, sim
}

// TestImportWorldEndToEnd: world → simulated Synapse → export → fresh Conduit database → import
// with Synapse's database (SQLite, and PostgreSQL when available) and media store → the conduit
// reader returns, for every user of the world, its profile, devices, keys, backup, account data,
// pushers, tokens, one-time keys and media (byte-identical); a second run changes nothing.
func TestImportWorldEndToEnd(t *testing.T) {
	w, err := world.Generate(e2eWorld)
	if err != nil {
		t.Fatal(err)
	}
	exportDir, sim := exportWorld(t, w)
	store := mediastoretest.Write(t, w)
	backends := map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string { return synapsedbtest.WriteSQLite(t, w) },
		"postgres": func(t *testing.T) string {
			if testing.Short() {
				t.Skip("PostgreSQL: not in -short")
			}
			dsn := pgtest.Start(t).CreateDatabase(t)
			synapsedbtest.WritePostgres(t, dsn, w)
			return dsn
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			dsn := backends[name](t)
			ctx := context.Background()
			sdb, err := synapsedb.Open(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer sdb.Close()
			ms, err := mediastore.Open(store)
			if err != nil {
				t.Fatal(err)
			}
			cli, err := synapseclient.New(synapseclient.Config{BaseURL: sim.URL, ServerName: w.ServerName, AdminToken: sim.AdminToken(), Identity: sim.Identity()})
			if err != nil {
				t.Fatal(err)
			}
			db := conduittest.FreshDB(t, w.ServerName, conduit.Version010)
			cfg := Config{ExportDir: exportDir, Identity: sim.Identity(), OpenTarget: ConduitTarget(db, "", w.ServerName),
				Sessions: SynapseSessions{sdb}, Media: SynapseMedia{Admin: cli.Admin(), Store: ms}}
			r, err := Run(ctx, cfg)
			if err != nil {
				t.Fatalf("import: %v (failed %+v)", err, r.Failed)
			}
			if r.Imported != len(w.Users) {
				t.Fatalf("imported %d of %d users", r.Imported, len(w.Users))
			}
			c, err := conduit.Open(db, conduit.Options{ServerName: w.ServerName, ReadOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			checkKeys(t, c, sim.Identity())
			now := time.Now().UnixMilli()
			tokens, media := 0, 0
			for _, u := range w.Users {
				tokens += checkWorldUser(t, c, w, u, now)
				media += checkWorldMedia(t, c, w, u)
			}
			c.Close()
			if tokens == 0 || media == 0 || r.Planned.AccessTokens != tokens || r.Media.Carried != media {
				t.Errorf("%d tokens and %d media checked; report: %d tokens, %d media", tokens, media, r.Planned.AccessTokens, r.Media.Carried)
			}
			if r.FallbackKeys == 0 {
				t.Error("no fallback keys reported as not carried")
			}

			again, err := Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if again.Rows.Total() != 0 {
				t.Errorf("second run changed %v", again.Rows)
			}
		})
	}
}

// checkWorldUser compares what Conduit reads for u with the world; it returns the number of
// tokens it checked.
func checkWorldUser(t *testing.T, c *conduit.DB, w *world.World, u *world.User, nowMS int64) int {
	t.Helper()
	got, ok, err := c.User(u.ID)
	if err != nil || !ok {
		t.Fatalf("%s: not in Conduit (%v)", u.ID, err)
	}
	switch {
	case u.Deactivated:
		if got.PasswordHash != "" {
			t.Errorf("%s: deactivated, hash %q", u.ID, got.PasswordHash)
		}
	case u.PasswordHash == "":
		if got.PasswordHash != UnusableHash {
			t.Errorf("%s: no password, hash %q", u.ID, got.PasswordHash)
		}
	case got.PasswordHash != u.PasswordHash:
		t.Errorf("%s: password hash not carried", u.ID)
	}
	if got.DisplayName != u.Profile.DisplayName || got.AvatarURL != u.Profile.AvatarURL {
		t.Errorf("%s: profile %q %q, want %q %q", u.ID, got.DisplayName, got.AvatarURL, u.Profile.DisplayName, u.Profile.AvatarURL)
	}
	devs, err := c.Devices(u.ID)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]conduit.Device{}
	for _, d := range devs {
		byID[d.ID] = d
	}
	if len(devs) != len(u.Devices) {
		t.Errorf("%s: %d devices, want %d", u.ID, len(devs), len(u.Devices))
	}
	keys, _ := c.DeviceKeys(u.ID)
	toks, _ := c.AccessTokens(u.ID)
	otks, _ := c.OneTimeKeys(u.ID)
	checked := 0
	for _, d := range u.Devices {
		g, ok := byID[d.ID]
		if !ok || g.DisplayName != d.DisplayName || g.LastSeenIP != d.LastSeenIP || g.LastSeenTS != d.LastSeenTS {
			t.Errorf("%s device %s = %+v", u.ID, d.ID, g)
		}
		if d.Keys != nil && !sameJSON(t, keys[d.ID], d.Keys) {
			t.Errorf("%s device %s: keys differ", u.ID, d.ID)
		}
		live := d.AccessTokenValidUntilMS == 0 || d.AccessTokenValidUntilMS > nowMS
		switch {
		case live && toks[d.ID] != d.AccessToken:
			t.Errorf("%s device %s: token not carried", u.ID, d.ID)
		case !live && toks[d.ID] != "":
			t.Errorf("%s device %s: expired token carried", u.ID, d.ID)
		case live:
			checked++
		}
		if len(otks[d.ID]) != len(d.OneTimeKeys) {
			t.Errorf("%s device %s: %d one-time keys, want %d", u.ID, d.ID, len(otks[d.ID]), len(d.OneTimeKeys))
		}
		for id, k := range d.OneTimeKeys {
			if !sameJSON(t, otks[d.ID][id], k) {
				t.Errorf("%s device %s: one-time key %s differs", u.ID, d.ID, id)
			}
		}
	}
	cs, err := c.CrossSigningKeys(u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if x := u.CrossSigning; x != nil {
		for usage, want := range map[string]json.RawMessage{"master": x.Master, "self_signing": x.SelfSigning, "user_signing": x.UserSigning} {
			if !sameJSON(t, cs[usage], want) {
				t.Errorf("%s: %s key differs", u.ID, usage)
			}
		}
	} else if len(cs) != 0 {
		t.Errorf("%s: cross-signing keys appeared", u.ID)
	}
	backups, err := c.Backups(u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if kb := u.KeyBackup; kb != nil {
		if len(backups) != 1 || backups[0].Version != kb.Version {
			t.Fatalf("%s: backups %+v", u.ID, backups)
		}
		for room, sessions := range kb.Rooms {
			for sid, s := range sessions {
				want, _ := json.Marshal(s)
				if !sameJSON(t, backups[0].Sessions[room][sid], want) {
					t.Errorf("%s: backup session %s differs", u.ID, sid)
				}
			}
		}
	} else if len(backups) != 0 {
		t.Errorf("%s: a backup appeared", u.ID)
	}
	ad, err := c.AccountData(u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Deactivated && !sameJSON(t, ad[""]["m.push_rules"], u.PushRules) {
		t.Errorf("%s: push rules differ", u.ID)
	}
	for typ, content := range u.AccountData.Global {
		if !sameJSON(t, ad[""][typ], content) {
			t.Errorf("%s: global account data %s differs", u.ID, typ)
		}
	}
	for room, m := range u.AccountData.Rooms {
		for typ, content := range m {
			if !sameJSON(t, ad[room][typ], content) {
				t.Errorf("%s: account data %s in %s differs", u.ID, typ, room)
			}
		}
	}
	for room, tags := range u.Tags {
		want, _ := json.Marshal(map[string]any{"tags": tags})
		if !sameJSON(t, ad[room]["m.tag"], want) {
			t.Errorf("%s: tags of %s = %s, want %s", u.ID, room, ad[room]["m.tag"], want)
		}
	}
	pushers, err := c.Pushers(u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(pushers) != len(u.Pushers) {
		t.Errorf("%s: %d pushers, want %d", u.ID, len(pushers), len(u.Pushers))
	}
	for _, p := range u.Pushers {
		var got struct {
			AppID string `json:"app_id"`
			Data  struct {
				URL string `json:"url"`
			} `json:"data"`
		}
		json.Unmarshal(pushers[p.Pushkey], &got)
		if got.AppID != p.AppID || got.Data.URL != p.Data.URL {
			t.Errorf("%s: pusher %s = %s", u.ID, p.Pushkey, pushers[p.Pushkey])
		}
	}
	return checked
}

// checkWorldMedia checks that every upload of u is in Conduit under the same media ID with the
// same bytes, except quarantined ones; it returns how many it found.
func checkWorldMedia(t *testing.T, c *conduit.DB, w *world.World, u *world.User) int {
	t.Helper()
	n := 0
	for _, m := range u.Media {
		mf, ok, err := c.Media(w.ServerName, m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if m.QuarantinedBy != "" {
			if ok {
				t.Errorf("%s: quarantined media %s carried", u.ID, m.ID)
			}
			continue
		}
		if !ok || !bytes.Equal(mf.Content, m.Bytes) || mf.ContentType != m.ContentType || mf.Filename != m.UploadName || mf.Uploader != u.ID {
			t.Errorf("%s: media %s: ok %v, %d bytes (want %d), %q %q %q", u.ID, m.ID, ok, len(mf.Content), len(m.Bytes), mf.ContentType, mf.Filename, mf.Uploader)
			continue
		}
		n++
	}
	return n
}
